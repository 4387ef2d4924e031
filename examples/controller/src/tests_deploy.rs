//! Deployment through the API and the ephemeral environment's endpoints: addresses from IPAM,
//! the plan and the files the environment fetches, the deployed system's seed (its own
//! secret), the local boot afterwards, failure and timeout, and release.

use std::path::Path;

use axum::http::StatusCode;
use base64::Engine as _;
use maas_net::{Mac, Timestamp};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::app::App;
use crate::tests::{ADMIN, OPERATOR, Scratch, VIEWER, app_from};
use crate::tests_lifecycle::{built_resource, json_of, request, runtime, send, token_in};
use crate::tests_network::commission;
use crate::{boot, region};

const CONFIG: &str = r##"
[controller]
state_dir = "state"
deployment_timeout_secs = 900
dns_servers = ["10.77.93.53"]

[[zones]]
name = "default"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.93.0/24"
gateway_ip = "10.77.93.1"

[[subnets]]
cidr = "fd77:93::/64"
gateway_ip = "fd77:93::1"

[[ip_ranges]]
subnet = "10.77.93.0/24"
start = "10.77.93.100"
end = "10.77.93.199"
kind = "dynamic"

[[machines]]
mac = "52:54:00:77:93:10"
hostname = "node1"

[[machines]]
mac = "52:54:00:77:93:20"
hostname = "node2"
power = { power_type = "webhook", power_on_uri = "http://127.0.0.1:9/on", power_off_uri = "http://127.0.0.1:9/off" }
"##;

const NODE1: &str = "52:54:00:77:93:10";

fn sha(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An OS image resource of a few bytes, as scripts/build-deploy-image.sh describes one.
fn built_image(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("disk.img.gz"), b"IMAGE").unwrap();
    let manifest = json!({
        "name": "debian/bookworm", "arch": "amd64", "format": "raw.gz",
        "image": { "file": "disk.img.gz", "sha256": sha(b"IMAGE"), "size": 5 },
        "raw_size": 1_048_576, "root_partition": 2, "root_label": "root",
        "firmware": ["bios"],
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

fn import(app: &App, dir: &Path) {
    let resource =
        crate::state::resources::import(&app.config.controller.state_dir, dir, crate::now())
            .unwrap();
    let ticket = app.state.put_resource(resource).unwrap();
    app.state.durable_blocking(ticket).unwrap();
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let (status, text) = send(router, request(method, uri, Some(token), body)).await;
    (status, json_of(&text), text)
}

fn auto_records(app: &App, mac: Mac) -> Vec<std::net::IpAddr> {
    app.state.ipam.read(|i| {
        i.records()
            .filter(|r| r.kind == maas_ipam::AddressKind::Auto && r.mac == Some(mac))
            .map(|r| r.ip)
            .collect()
    })
}

#[test]
fn a_machine_is_deployed_boots_its_disk_and_is_released() {
    let scratch = Scratch::new("deploy");
    let app = app_from(CONFIG, &scratch.0);
    let api = region::router(app.clone());
    let boot = boot::router(app.clone());
    let mac: Mac = NODE1.parse().unwrap();
    built_resource(&scratch.0.join("ephemeral"));
    import(&app, &scratch.0.join("ephemeral"));
    commission(&app, NODE1, "10.77.93.150", &[("ens3", NODE1)]);
    runtime().block_on(async {
        let deploy = format!("/api/v1/machines/{NODE1}/deploy");
        // Not allocated yet; then allocated, but no OS image imported.
        let (status, _, body) = call(&api, "POST", &deploy, OPERATOR, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "no image: {body}");
        built_image(&scratch.0.join("image"));
        import(&app, &scratch.0.join("image"));
        let (status, _, body) = call(&api, "POST", &deploy, OPERATOR, None).await;
        assert_eq!(status, StatusCode::CONFLICT, "not allocated: {body}");
        let (status, v, body) =
            call(&api, "POST", "/api/v1/machines/allocate", OPERATOR, Some(json!({ "hostname": "node1" }))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(v["owner"], "operator");
        let (status, _, _) = call(&api, "POST", &deploy, VIEWER, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, body) = call(
            &api,
            "POST",
            &deploy,
            OPERATOR,
            Some(json!({ "osystem": "debian", "distro_series": "trixie" })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "no such release: {body}");
        let (status, _, body) =
            call(&api, "POST", &deploy, OPERATOR, Some(json!({ "user_data": "not base64!" }))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let user_data = "#cloud-config\nruncmd: [[touch, /tmp/deployed]]\n";
        let (status, v, body) = call(
            &api,
            "POST",
            &deploy,
            OPERATOR,
            Some(json!({
                "osystem": "debian",
                "user_data": base64::engine::general_purpose::STANDARD.encode(user_data),
            })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(v["status"], "deploying", "{body}");
        // The auto links got an IPv4 and an IPv6 address, held as AUTO for the machine.
        let links = &v["network"]["interfaces"][0]["links"];
        let v4: std::net::IpAddr = links[0]["ip"].as_str().unwrap().parse().unwrap();
        let v6: std::net::IpAddr = links[1]["ip"].as_str().unwrap().parse().unwrap();
        assert!(v4.to_string().starts_with("10.77.93.") && v6.to_string().starts_with("fd77:93::"), "{body}");
        let mut held = auto_records(&app, mac);
        held.sort();
        assert_eq!(held, vec![v4, v6]);

        // The ephemeral environment is told to deploy, with a fresh credential.
        let (_, script) = send(&boot, request("GET", &format!("/ipxe.cfg-{NODE1}"), None, None)).await;
        assert!(script.contains("maas_action=deploy"), "{script}");
        let token = token_in(&script);
        let (status, plan) = send(&boot, request("GET", "/metadata/v1/deploy", Some(&token), None)).await;
        assert_eq!(status, StatusCode::OK, "{plan}");
        assert!(plan.contains("image_url=http://10.77.91.1:5248/resources/debian/amd64/bookworm/disk.img.gz\n"), "{plan}");
        assert!(plan.contains(&format!("image_sha256={}\n", sha(b"IMAGE"))), "{plan}");
        assert!(plan.contains("image_format=raw.gz\nimage_raw_size=1048576\nroot_partition=2\n"), "{plan}");
        let (status, _) = send(&boot, request("GET", "/metadata/v1/deploy", Some(ADMIN), None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a user's token is not a machine's");
        let (status, net) = send(&boot, request("GET", "/metadata/v1/deploy/networking.cfg", Some(&token), None)).await;
        assert_eq!(status, StatusCode::OK, "{net}");
        assert!(net.contains(&format!("- {v4}/24\n")) && net.contains(&format!("- \"{v6}/64\"\n")), "{net}");
        assert!(net.contains("via: 10.77.93.1\n") && net.contains("via: \"fd77:93::1\"\n"), "{net}");
        assert!(net.contains("- 10.77.93.53\n"), "the controller's name servers: {net}");
        let (status, ds) = send(&boot, request("GET", "/metadata/v1/deploy/datasource.cfg", Some(&token), None)).await;
        assert_eq!(status, StatusCode::OK, "{ds}");
        let seed = ds
            .split("seedfrom: http://10.77.91.1:5248")
            .nth(1)
            .and_then(|r| r.lines().next())
            .unwrap_or_else(|| panic!("{ds}"))
            .to_owned();
        assert!(seed.starts_with("/metadata/v1/seed/maas_") && seed.ends_with('/'), "{ds}");

        // The seed answers cloud-init without any header; a made-up one does not.
        let (status, meta) = send(&boot, request("GET", &format!("{seed}meta-data"), None, None)).await;
        assert_eq!(status, StatusCode::OK, "{meta}");
        assert!(meta.contains("local-hostname: node1\n") && meta.contains("instance-id: node1-"), "{meta}");
        let (_, ud) = send(&boot, request("GET", &format!("{seed}user-data"), None, None)).await;
        assert_eq!(ud, user_data);
        let (status, vd) = send(&boot, request("GET", &format!("{seed}vendor-data"), None, None)).await;
        assert_eq!((status, vd.as_str()), (StatusCode::OK, "#cloud-config\n{}\n"));
        let (_, nc) = send(&boot, request("GET", &format!("{seed}network-config"), None, None)).await;
        assert!(nc.starts_with("network:\n  version: 2\n"), "{nc}");
        let forged = "/metadata/v1/seed/maas_0000000000000001_0000000000000000000000000000000000000001/meta-data";
        let (status, _) = send(&boot, request("GET", forged, None, None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Deployed: the boot files send it to its disk, and the seed still answers.
        let (status, body) = send(&boot, request("POST", "/metadata/v1/deployment", Some(&token), Some(json!({ "status": "ok" })))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(json_of(&body)["status"], "deployed");
        assert_eq!(app.state.status(mac), Some(crate::state::Status::Deployed));
        let (_, script) = send(&boot, request("GET", &format!("/ipxe.cfg-{NODE1}"), None, None)).await;
        assert!(script.contains("is deployed") && script.contains("exit") && !script.contains("kernel"), "{script}");
        let (status, _) = send(&boot, request("GET", "/metadata/v1/deploy", Some(&token), None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the deploy credential is spent");
        let (status, _) = send(&boot, request("GET", &format!("{seed}meta-data"), None, None)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, body) = call(&api, "GET", &format!("/api/v1/machines/{NODE1}/interfaces"), VIEWER, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _, _) = call(&api, "PUT", &format!("/api/v1/machines/{NODE1}/interfaces"), OPERATOR, Some(json_of(&body))).await;
        assert_eq!(status, StatusCode::CONFLICT, "no interface changes while deployed");

        // Release: Ready, the AUTO addresses back in the pool, the seed gone.
        let (status, v, body) = call(&api, "POST", &format!("/api/v1/machines/{NODE1}/release"), OPERATOR, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(v["status"], "ready");
        assert!(v["owner"].is_null() && v["deployment"].is_null(), "{body}");
        assert!(auto_records(&app, mac).is_empty());
        assert!(v["network"]["interfaces"][0]["links"][0].get("ip").is_none(), "{body}");
        let (status, _) = send(&boot, request("GET", &format!("{seed}meta-data"), None, None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let events: Vec<String> = app.state.events(mac).iter().map(|e| e.kind.clone()).collect();
        for kind in ["allocated", "deploying", "deployed", "releasing", "released"] {
            assert!(events.iter().any(|k| k == kind), "{kind} in {events:?}");
        }
    });
}

#[test]
fn a_failed_or_silent_deployment_ends_failed_and_can_be_released() {
    let scratch = Scratch::new("deploy-fail");
    let app = app_from(CONFIG, &scratch.0);
    let api = region::router(app.clone());
    let boot = boot::router(app.clone());
    let mac: Mac = NODE1.parse().unwrap();
    built_resource(&scratch.0.join("ephemeral"));
    import(&app, &scratch.0.join("ephemeral"));
    built_image(&scratch.0.join("image"));
    import(&app, &scratch.0.join("image"));
    commission(&app, NODE1, "10.77.93.150", &[("ens3", NODE1)]);
    runtime().block_on(async {
        let deploy = format!("/api/v1/machines/{NODE1}/deploy");
        call(
            &api,
            "POST",
            "/api/v1/machines/allocate",
            OPERATOR,
            Some(json!({ "hostname": "node1" })),
        )
        .await;
        let (status, _, body) = call(&api, "POST", &deploy, OPERATOR, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, script) = send(
            &boot,
            request("GET", &format!("/ipxe.cfg-{NODE1}"), None, None),
        )
        .await;
        let token = token_in(&script);
        // The environment's report of a bad image.
        let why = "the image's SHA-256 is 00, the controller's is 11: the disk was wiped";
        let (status, body) = send(
            &boot,
            request(
                "POST",
                "/metadata/v1/deployment",
                Some(&token),
                Some(json!({ "status": "failed", "error": why })),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(json_of(&body)["status"], "failed_deployment");
        assert!(
            app.state
                .events(mac)
                .iter()
                .any(|e| e.detail.as_deref() == Some(why))
        );
        // A retry that never reports fails at its deadline; a second report is refused.
        let (status, _, body) = call(&api, "POST", &deploy, OPERATOR, None).await;
        assert_eq!(status, StatusCode::OK, "retry: {body}");
        let (failed, ticket) = app.state.deployment_overdue(Timestamp(u64::MAX)).unwrap();
        app.state.durable(ticket.unwrap()).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(
            app.state.status(mac),
            Some(crate::state::Status::FailedDeployment)
        );
        let (_, script) = send(
            &boot,
            request("GET", &format!("/ipxe.cfg-{NODE1}"), None, None),
        )
        .await;
        assert!(script.contains("maas_action=poweroff"), "{script}");
        let (status, _) = send(
            &boot,
            request(
                "POST",
                "/metadata/v1/deployment",
                Some(&token_in(&script)),
                Some(json!({ "status": "ok" })),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, v, body) = call(
            &api,
            "POST",
            &format!("/api/v1/machines/{NODE1}/release"),
            OPERATOR,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(v["status"], "ready");
        assert!(auto_records(&app, mac).is_empty());
    });
}

#[test]
fn a_power_on_that_fails_fails_the_deployment_at_once() {
    let scratch = Scratch::new("deploy-power");
    let app = app_from(CONFIG, &scratch.0);
    let api = region::router(app.clone());
    built_image(&scratch.0.join("image"));
    import(&app, &scratch.0.join("image"));
    commission(
        &app,
        "52:54:00:77:93:20",
        "10.77.93.151",
        &[("ens3", "52:54:00:77:93:20")],
    );
    runtime().block_on(async {
        let (status, v, body) = call(
            &api,
            "POST",
            "/api/v1/machines/allocate",
            OPERATOR,
            Some(json!({ "hostname": "node2" })),
        )
        .await;
        assert_eq!(
            (status, &v["hostname"]),
            (StatusCode::OK, &json!("node2")),
            "{body}"
        );
        // Nothing listens where its webhook BMC is: the power-on is refused.
        let (status, v, body) = call(
            &api,
            "POST",
            "/api/v1/machines/52:54:00:77:93:20/deploy",
            OPERATOR,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("powering on failed"),
            "{body}"
        );
        let mac: Mac = "52:54:00:77:93:20".parse().unwrap();
        assert_eq!(
            app.state.status(mac),
            Some(crate::state::Status::FailedDeployment)
        );
        assert!(app.state.events(mac).iter().any(|e| {
            e.kind == "deployment_failed"
                && e.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with("powering on failed"))
        }));
    });
}
