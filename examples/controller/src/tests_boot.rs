//! The boot-URL walk, the enlistment limits, the proxy's deny list following the machines,
//! and the store keeping discoveries per VLAN across a reopen.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt as _;

use crate::app::App;
use crate::boot::EnlistLimits;
use crate::tests::Scratch;
use crate::{boot, now, region};

const CONFIG: &str = r##"
[controller]
state_dir = "state"
boot_assets = "assets"
boot_http = "10.77.91.1:8080"
advertise = "10.77.91.1"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.91.0/24"
gateway_ip = "10.77.91.1"

[[ip_ranges]]
subnet = "10.77.91.0/24"
start = "10.77.91.100"
end = "10.77.91.199"
kind = "dynamic"
"##;

fn app_with(dir: &std::path::Path, text: &str) -> App {
    crate::tests::app_from(text, dir)
}

async fn get(router: &axum::Router, path: &str) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .uri(path)
        .header("host", "10.77.91.1:8080")
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every HTTP URL the DHCP boot table hands out (as the controller rewrites it for its own
/// port and advertised address), and every file lpxelinux fetches beside its HTTP path
/// prefix, is served from the boot assets.
#[test]
fn every_boot_url_of_the_table_is_served() {
    let scratch = Scratch::new("boot-walk");
    let assets = scratch.0.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    let app = app_with(&scratch.0, CONFIG);
    let mut table = maas_pxe::dhcp::BootConfig::default();
    table.set_http_base(8080, Some("10.77.91.1".parse().unwrap()));
    let mut urls = Vec::new();
    for method in table.methods.values() {
        if let Some(path) = method.file.strip_prefix("http://10.77.91.1:8080/") {
            urls.push(path.to_string());
        }
        if let Some(prefix) = method
            .path_prefix
            .as_deref()
            .and_then(|p| p.strip_prefix("http://10.77.91.1:8080/"))
        {
            for file in ["ldlinux.c32", "libutil.c32", "menu.c32"] {
                urls.push(format!("{prefix}{file}"));
            }
        }
    }
    assert!(
        urls.iter().any(|u| u.ends_with("bootx64.efi")),
        "the table has an HTTP-boot URL: {urls:?}"
    );
    assert!(urls.iter().any(|u| u == "ldlinux.c32"), "{urls:?}");
    // The loaders at the root of the assets directory, as they are shipped.
    for url in &urls {
        let name = url.rsplit('/').next().unwrap();
        std::fs::write(assets.join(name), format!("contents of {name}")).unwrap();
    }
    let router = boot::router(app);
    runtime().block_on(async {
        for url in &urls {
            let (status, body) = get(&router, &format!("/{url}")).await;
            if url == "ipxe.cfg" {
                assert_eq!(status, StatusCode::OK, "/{url}");
                continue;
            }
            let name = url.rsplit('/').next().unwrap();
            assert_eq!(status, StatusCode::OK, "/{url}");
            assert_eq!(body, format!("contents of {name}").into_bytes(), "/{url}");
        }
        // Ranges and validators come with the file service.
        let request = Request::builder()
            .uri("/images/bootx64.efi")
            .header("range", "bytes=0-7")
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert!(response.headers().contains_key("last-modified"));
        // Still nothing outside the directory.
        for escape in ["/images/../state/ipam.redb", "/images//etc/passwd"] {
            let (status, _) = get(&router, escape).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{escape}");
        }
    });
}

/// At most `enlist_max_new` machines wait as new, and at most `enlist_per_minute` are
/// enlisted a minute; a known machine is never refused.
#[test]
fn enlistment_is_bounded_by_count_and_rate() {
    let limits = EnlistLimits::new(3, 2);
    assert!(limits.admit_for_test(0).is_ok());
    assert!(limits.admit_for_test(1).is_ok());
    let rate = limits.admit_for_test(2).unwrap_err();
    assert!(rate.contains("enlist_per_minute"), "{rate}");
    let count = limits.admit_for_test(3).unwrap_err();
    assert!(count.contains("enlist_max_new"), "{count}");

    let scratch = Scratch::new("enlist-limit");
    let text = CONFIG.replace(
        "advertise = \"10.77.91.1\"",
        "advertise = \"10.77.91.1\"\nenlist_max_new = 2",
    );
    let app = app_with(&scratch.0, &text);
    let router = boot::router(app.clone());
    runtime().block_on(async {
        for (n, want) in [
            (1, StatusCode::OK),
            (2, StatusCode::OK),
            (3, StatusCode::TOO_MANY_REQUESTS),
            (1, StatusCode::OK),
        ] {
            let (status, _) = get(&router, &format!("/ipxe.cfg-52-54-00-77-91-0{n}")).await;
            assert_eq!(status, want, "machine {n}");
        }
    });
    assert_eq!(app.state.machine_count(), 2);
    assert_eq!(app.metrics.enlistments_refused.get(), 1);
}

/// A machine added through the API with a BMC address makes that address a refused
/// destination of the proxy at once; deleting it lets the address go again.
#[test]
fn the_proxy_refuses_a_new_machines_bmc_at_once() {
    let scratch = Scratch::new("proxy-deny");
    let text = format!(
        "{CONFIG}\n[proxy]\nlisten = \"127.0.0.1:0\"\ncache_dir = \"{}\"\n",
        scratch.0.join("cache").display()
    );
    let app = app_with(&scratch.0, &text);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let section = app.config.proxy.clone().unwrap();
        crate::proxy::serve(&app, &section, &mut tasks)
            .await
            .unwrap();
        let proxy = app.proxy.get().unwrap().clone();
        let bmc: std::net::IpAddr = "10.77.91.250".parse().unwrap();
        assert!(proxy.acl().check_destination(bmc).is_ok());
        let body = json!({
            "mac": "52:54:00:77:91:55",
            "power": { "power_type": "ipmi", "power_address": "10.77.91.250",
                       "power_user": "admin", "power_pass": "secret" },
        });
        let request = Request::builder()
            .method("POST")
            .uri("/api/v1/machines")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", crate::tests::ADMIN))
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = api.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(proxy.acl().check_destination(bmc).is_err());
        let request = Request::builder()
            .method("DELETE")
            .uri("/api/v1/machines/52:54:00:77:91:55")
            .header("authorization", format!("Bearer {}", crate::tests::ADMIN))
            .body(Body::empty())
            .unwrap();
        let response = api.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(proxy.acl().check_destination(bmc).is_ok());
        tasks.abort_all();
    });
}

/// Discoveries are keyed as the observer keys them, by (VLAN, address): one address seen
/// on two VLANs is two discoveries, and both, with machines, events and power states,
/// survive a reopen of the store.
#[test]
fn discoveries_per_vlan_and_every_record_survive_a_reopen() {
    let scratch = Scratch::new("store-reopen");
    let event = |vid: u16, mac: &str| maas_discovery::Event {
        event: maas_discovery::EventKind::New,
        ip: "10.77.91.40".parse().unwrap(),
        mac: mac.parse().unwrap(),
        previous_mac: None,
        vid,
        hostname: None,
        interface: "br0".into(),
        first_seen: now(),
        last_seen: now(),
    };
    {
        let app = app_with(&scratch.0, CONFIG);
        runtime().block_on(async {
            for (vid, mac) in [(0, "52:54:00:77:91:41"), (12, "52:54:00:77:91:42")] {
                let (_, ticket) = app.state.discovered(&event(vid, mac), now()).unwrap();
                app.state.durable(ticket).await.unwrap();
            }
            let machine = app
                .seen_booting("52:54:00:77:91:43".parse().unwrap(), None, None, None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(machine.status, crate::state::Status::New);
        });
        assert_eq!(app.state.discoveries().len(), 2);
        app.state.close().unwrap();
    }
    let app = app_with(&scratch.0, CONFIG);
    let found = app.state.discoveries();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found
            .iter()
            .map(|d| (d.vid, d.mac.to_string()))
            .collect::<Vec<_>>(),
        [
            (0, "52:54:00:77:91:41".to_string()),
            (12, "52:54:00:77:91:42".to_string())
        ]
    );
    let mac = "52:54:00:77:91:43".parse().unwrap();
    assert!(app.state.machine(mac).is_some());
    let events = app.state.events(mac);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "enlisted");
}

/// An acknowledgement through the DHCP lease store waits for the enlistments recorded before
/// it, so a new machine's first lease is never acknowledged before its enlistment is durable.
#[test]
fn a_lease_acknowledgement_waits_for_the_enlistment_before_it() {
    use maas_pxe::dhcp::server::Leases;
    let scratch = Scratch::new("enlist-ack");
    let app = app_with(&scratch.0, CONFIG);
    let leases = boot::BootLeases(std::sync::Arc::clone(&app.state));
    let client = maas_net::ClientKey::Mac("52:54:00:77:91:60".parse().unwrap());
    let subnet = app
        .state
        .ipam
        .read(|ipam| ipam.topology().subnets().next().unwrap().0);
    let ip = leases.offer(subnet, &client, now(), 30).unwrap();
    let bound = leases.bind(ip, &client, None, now(), 600).unwrap();
    // The service reports the lease (enlisting the machine) before it waits for the ticket.
    assert!(app.state.latest_enlistment().is_none());
    let machine = app.seen_booting_now_blocking("52:54:00:77:91:60".parse().unwrap());
    assert_eq!(machine.status, crate::state::Status::New);
    let enlisted = app.state.latest_enlistment().expect("an enlistment ticket");
    leases.wait(bound.ticket.unwrap()).unwrap();
    assert!(app.state.ipam.is_durable(enlisted).unwrap());
}
