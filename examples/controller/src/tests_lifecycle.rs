//! The life cycle past enlistment: boot files by status, commissioning through the API and
//! the ephemeral environment's reports (with its own credential, once), the timeout, boot
//! resources served.

use std::net::SocketAddr;
use std::path::Path;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use sha2::Digest as _;
use tower::ServiceExt as _;

use crate::app::App;
use crate::tests::{ADMIN, OPERATOR, Scratch, app_from};
use crate::{boot, region};

const CONFIG: &str = r##"
[controller]
state_dir = "state"
commissioning_timeout_secs = 600

[[zones]]
name = "default"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.91.0/24"

[[ip_ranges]]
subnet = "10.77.91.0/24"
start = "10.77.91.100"
end = "10.77.91.199"
kind = "dynamic"

[[machines]]
mac = "52:54:00:77:91:10"
hostname = "node1"
"##;

const NODE1: &str = "52:54:00:77:91:10";

/// A built resource in `dir`: a kernel and an initrd of a few bytes, and their manifest.
pub(crate) fn built_resource(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let sha = |b: &[u8]| -> String {
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    std::fs::write(dir.join("vmlinuz"), b"KERNEL").unwrap();
    std::fs::write(dir.join("initrd.img"), b"INITRD").unwrap();
    let manifest = json!({
        "name": "ephemeral", "arch": "amd64", "release": "bookworm",
        "kernel": { "file": "vmlinuz", "sha256": sha(b"KERNEL"), "size": 6 },
        "initrd": { "file": "initrd.img", "sha256": sha(b"INITRD"), "size": 6 },
        "kernel_version": "6.1.0-test",
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

pub(crate) fn request(
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "10.77.91.1:5248");
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let mut r = b.body(body).unwrap();
    let from: SocketAddr = "10.77.91.150:40000".parse().unwrap();
    r.extensions_mut().insert(ConnectInfo(from));
    r
}

pub(crate) async fn send(router: &axum::Router, r: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(r).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The `maas_token=` of a boot file.
pub(crate) fn token_in(file: &str) -> String {
    file.split("maas_token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

fn report() -> Value {
    json!({
        "status": "ok", "architecture": "amd64", "firmware": "bios",
        "cpu": { "count": 2, "model": "QEMU Virtual CPU" },
        "memory_bytes": 536_870_912u64,
        "interfaces": [{ "name": "eth0", "mac": NODE1, "link": true, "speed_mbps": null }],
        "disks": [{ "name": "vda", "size_bytes": 1_073_741_824u64, "model": null, "serial": "disk-1" }],
        "dmi": { "system_vendor": "QEMU", "system_uuid": "77777777-0000-4000-8000-000000000010" },
    })
}

fn imported(app: &App, scratch: &Scratch) {
    let dir = scratch.0.join("built");
    built_resource(&dir);
    let resource =
        crate::state::resources::import(&app.config.controller.state_dir, &dir, crate::now())
            .unwrap();
    let ticket = app.state.put_resource(resource).unwrap();
    app.state.durable_blocking(ticket).unwrap();
}

#[test]
fn a_machine_is_commissioned_through_the_ephemeral_environment() {
    let scratch = Scratch::new("commission");
    let app = app_from(CONFIG, &scratch.0);
    let api = region::router(app.clone());
    let boot = boot::router(app.clone());
    runtime().block_on(async {
        // Without a boot resource: the fallback script.
        let (status, script) = send(
            &boot,
            request("GET", &format!("/ipxe.cfg-{NODE1}"), None, None),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            script.contains("is ready") && script.contains("exit"),
            "{script}"
        );
        imported(&app, &scratch);
        // Ready: the ephemeral environment, told to power off.
        let (_, script) = send(
            &boot,
            request("GET", &format!("/ipxe.cfg-{NODE1}"), None, None),
        )
        .await;
        assert!(
            script.contains(
                "kernel http://10.77.91.1:5248/resources/ephemeral/amd64/bookworm/vmlinuz"
            ),
            "{script}"
        );
        assert!(
            script.contains(
                "initrd http://10.77.91.1:5248/resources/ephemeral/amd64/bookworm/initrd.img"
            ),
            "{script}"
        );
        assert!(script.contains("maas_action=poweroff"), "{script}");
        assert!(
            script.contains("maas_url=http://10.77.91.1:5248/metadata/v1/"),
            "{script}"
        );
        // The resource itself is served.
        let (status, kernel) = send(
            &boot,
            request(
                "GET",
                "/resources/ephemeral/amd64/bookworm/vmlinuz",
                None,
                None,
            ),
        )
        .await;
        assert_eq!((status, kernel.as_str()), (StatusCode::OK, "KERNEL"));
        let (status, _) = send(
            &boot,
            request("GET", "/resources/../state/ipam.redb", None, None),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Commissioning: a viewer may not, an operator may.
        let uri = format!("/api/v1/machines/{NODE1}/commission");
        let (status, body) = send(&api, request("POST", &uri, Some(OPERATOR), None)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(json_of(&body)["status"], "commissioning", "{body}");
        let (status, _) = send(&api, request("POST", &uri, Some(OPERATOR), None)).await;
        assert_eq!(status, StatusCode::CONFLICT, "commissioning already");
        let (_, script) = send(
            &boot,
            request("GET", &format!("/ipxe.cfg-{NODE1}"), None, None),
        )
        .await;
        assert!(script.contains("maas_action=commission"), "{script}");
        let token = token_in(&script);
        assert!(token.starts_with("maas_"), "{script}");

        // The agent reports over boot HTTP with the credential it was given.
        let (status, body) = send(
            &boot,
            request(
                "POST",
                "/metadata/v1/events",
                Some(&token),
                Some(json!({ "kind": "commissioning_started" })),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = send(
            &boot,
            request(
                "POST",
                "/metadata/v1/commissioning",
                Some("maas_0000000000000001_0000000000000000000000000000000000000001"),
                Some(report()),
            ),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a wrong credential: {body}"
        );
        let (status, body) = send(
            &boot,
            request(
                "POST",
                "/metadata/v1/commissioning",
                Some(&token),
                Some(report()),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let machine = json_of(&body);
        assert_eq!(machine["status"], "ready", "{body}");
        assert_eq!(machine["hardware"]["cpu_count"], 2, "{body}");
        assert_eq!(
            machine["hardware"]["memory_bytes"], 536_870_912u64,
            "{body}"
        );
        assert_eq!(
            machine["hardware"]["disks"][0]["size_bytes"], 1_073_741_824u64,
            "{body}"
        );
        assert_eq!(machine["architecture"], "amd64/generic", "{body}");
        // Replayed: refused, and nothing changes.
        let mut changed = report();
        changed["cpu"]["count"] = json!(64);
        let (status, _) = send(
            &boot,
            request(
                "POST",
                "/metadata/v1/commissioning",
                Some(&token),
                Some(changed),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (_, body) = send(
            &api,
            request(
                "GET",
                &format!("/api/v1/machines/{NODE1}"),
                Some(ADMIN),
                None,
            ),
        )
        .await;
        assert_eq!(json_of(&body)["hardware"]["cpu_count"], 2, "{body}");
        // A report from a machine that is not commissioning (its current credential) is refused.
        let current = app
            .state
            .machine_token(NODE1.parse().unwrap())
            .unwrap()
            .to_string();
        let (status, _) = send(
            &boot,
            request(
                "POST",
                "/metadata/v1/commissioning",
                Some(&current),
                Some(report()),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (_, body) = send(
            &api,
            request(
                "GET",
                &format!("/api/v1/machines/{NODE1}/events"),
                Some(ADMIN),
                None,
            ),
        )
        .await;
        let kinds: Vec<String> = json_of(&body)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "commissioning",
                "machine_commissioning_started",
                "commissioned"
            ],
            "{body}"
        );

        // Re-commissioning replaces what was found; a failure report ends it as failed.
        let (status, _) = send(&api, request("POST", &uri, Some(OPERATOR), None)).await;
        assert_eq!(status, StatusCode::OK);
        let token = app
            .state
            .machine_token(NODE1.parse().unwrap())
            .unwrap()
            .to_string();
        let (status, body) = send(
            &boot,
            request(
                "POST",
                "/metadata/v1/commissioning",
                Some(&token),
                Some(json!({ "status": "failed", "error": "no disk found" })),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(json_of(&body)["status"], "failed_commissioning", "{body}");
    });
}

#[test]
fn a_commissioning_that_never_reports_fails_after_its_timeout() {
    let scratch = Scratch::new("commission-timeout");
    let app = app_from(CONFIG, &scratch.0);
    let mac = NODE1.parse().unwrap();
    let now = crate::now();
    let (_, ticket) = app
        .state
        .commission(mac, maas_net::Timestamp(now.0 + 600), now)
        .unwrap();
    app.state.durable_blocking(ticket).unwrap();
    let (failed, _) = app.state.commissioning_overdue(now).unwrap();
    assert!(failed.is_empty(), "not yet");
    let token = app.state.machine_token(mac).unwrap();
    let later = maas_net::Timestamp(now.0 + 601);
    let (failed, ticket) = app.state.commissioning_overdue(later).unwrap();
    app.state.durable_blocking(ticket.unwrap()).unwrap();
    assert_eq!(failed.len(), 1);
    let machine = app.state.machine(mac).unwrap();
    assert_eq!(machine.status, crate::state::Status::FailedCommissioning);
    assert_ne!(
        app.state.machine_token(mac),
        Some(token),
        "the credential is revoked"
    );
    let events = app.state.events(mac);
    assert_eq!(events.last().unwrap().kind, "commissioning_failed");
}

#[test]
fn pxelinux_and_grub_boot_the_ephemeral_environment_and_enlisted_machines_commission_at_once() {
    let scratch = Scratch::new("commission-files");
    let text = CONFIG.replace(
        "commissioning_timeout_secs = 600",
        "commissioning_timeout_secs = 600\ncommission_enlisted = true",
    );
    let app = app_from(&text, &scratch.0);
    imported(&app, &scratch);
    let boot = boot::router(app.clone());
    runtime().block_on(async {
        let (status, file) = send(
            &boot,
            request("GET", "/pxelinux.cfg/01-52-54-00-77-91-44", None, None),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            file.contains("KERNEL /resources/ephemeral/amd64/bookworm/vmlinuz"),
            "{file}"
        );
        assert!(
            file.contains("INITRD /resources/ephemeral/amd64/bookworm/initrd.img"),
            "{file}"
        );
        assert!(
            file.contains("maas_action=commission"),
            "enlisted and commissioning: {file}"
        );
        let machine = app
            .state
            .machine("52:54:00:77:91:44".parse().unwrap())
            .unwrap();
        assert_eq!(machine.status, crate::state::Status::Commissioning);
        let (_, file) = send(
            &boot,
            request("GET", &format!("/grub/grub.cfg-{NODE1}"), None, None),
        )
        .await;
        assert!(
            file.contains("linux /resources/ephemeral/amd64/bookworm/vmlinuz"),
            "{file}"
        );
        assert!(file.contains("maas_action=poweroff"), "{file}");
        assert!(
            file.contains("initrd /resources/ephemeral/amd64/bookworm/initrd.img"),
            "{file}"
        );
    });
}

#[test]
fn boot_resources_are_imported_through_the_api_by_admins() {
    let scratch = Scratch::new("resources-api");
    let app = app_from(CONFIG, &scratch.0);
    let api = region::router(app.clone());
    let dir = scratch.0.join("built");
    built_resource(&dir);
    runtime().block_on(async {
        let body = json!({ "dir": dir });
        let (status, _) = send(
            &api,
            request(
                "POST",
                "/api/v1/boot-resources",
                Some(OPERATOR),
                Some(body.clone()),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, text) = send(
            &api,
            request("POST", "/api/v1/boot-resources", Some(ADMIN), Some(body)),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        std::fs::write(dir.join("initrd.img"), b"TAMPERED").unwrap();
        let (status, text) = send(
            &api,
            request(
                "POST",
                "/api/v1/boot-resources",
                Some(ADMIN),
                Some(json!({ "dir": dir })),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("SHA-256") || text.contains("size"), "{text}");
        let (_, text) = send(
            &api,
            request("GET", "/api/v1/boot-resources", Some(OPERATOR), None),
        )
        .await;
        let list = json_of(&text);
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{text}");
        assert_eq!(list[0]["kernel_version"], "6.1.0-test", "{text}");
    });
    // Kept across a restart.
    drop(api);
    let state = std::sync::Arc::clone(&app.state);
    drop(app);
    state.close().unwrap();
    drop(state);
    let again = app_from(CONFIG, &scratch.0);
    assert_eq!(again.state.resources().len(), 1);
}
