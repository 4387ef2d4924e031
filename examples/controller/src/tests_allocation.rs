//! Allocation, release, zones and tags through the API: every constraint, the smallest match,
//! refusals (unknown zone, nothing matching, another user's machine, a viewer), concurrent
//! allocations, and allocations surviving a reopen of the state.

use std::path::Path;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::app::App;
use crate::region;
use crate::state::auth::UserRole;
use crate::state::{Dmi, Hardware, Machine, Outcome, Status, TagChange};
use crate::tests::{ADMIN, OPERATOR, Scratch, VIEWER, app_from, call_as as call};

const CONFIG: &str = r##"
[controller]
state_dir = "state"

[[zones]]
name = "default"

[[zones]]
name = "rack-b"

[[fabrics]]
name = "fabric-1"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[vlans]]
fabric = "fabric-1"
vid = 100
name = "storage"

[[subnets]]
cidr = "10.77.91.0/24"

[[subnets]]
cidr = "10.77.92.0/24"
fabric = "fabric-1"
vid = 100

[[machines]]
mac = "52:54:00:77:a0:01"
hostname = "small"

[[machines]]
mac = "52:54:00:77:a0:02"
hostname = "medium"

[[machines]]
mac = "52:54:00:77:a0:03"
hostname = "big"
zone = "rack-b"

[[machines]]
mac = "52:54:00:77:a0:04"
hostname = "bare"
"##;

/// Another operator's token.
const OTHER: &str = "maas_00000000000000d0_00000000000000000000000000000000000000d0";

const SMALL: &str = "52:54:00:77:a0:01";
const MEDIUM: &str = "52:54:00:77:a0:02";
const BIG: &str = "52:54:00:77:a0:03";

/// What commissioning found of a machine: architecture, CPUs, memory in MiB.
fn hardware(arch: &str, cpus: u32, mib: u64) -> Hardware {
    Hardware {
        architecture: arch.into(),
        firmware: "uefi".into(),
        cpu_count: cpus,
        cpu_model: None,
        memory_bytes: mib * 1024 * 1024,
        interfaces: Vec::new(),
        disks: Vec::new(),
        dmi: Dmi::default(),
        at: maas_net::Timestamp(0),
    }
}

/// Commissions `mac` with `hw`, gives it an address and tags.
fn describe(app: &App, mac: &str, hw: Hardware, ip: &str, tags: &[&str]) {
    let state = &app.state;
    let mac = mac.parse().unwrap();
    let now = crate::now();
    let (_, t) = state.commission(mac, now, now).unwrap();
    state.durable_blocking(t).unwrap();
    let (_, t) = state
        .commissioning_reported(mac, Outcome::Found(Box::new(hw)), now)
        .unwrap();
    state.durable_blocking(t).unwrap();
    let _ = state
        .seen_booting(mac, Some(ip.parse().unwrap()), None, now, None, |_| true)
        .unwrap();
    let tags = tags.iter().map(|t| (*t).to_string()).collect();
    let (_, t) = state.change_tags(mac, TagChange::Set(tags)).unwrap();
    state.durable_blocking(t).unwrap();
}

/// Four Ready machines: small (2 CPUs, 2 GiB, amd64), medium (4, 8 GiB, amd64, gpu), big
/// (16, 64 GiB, arm64, gpu and ssd, in rack-b on the storage VLAN), and bare (never
/// commissioned: no CPUs known, no address).
fn fixture(dir: &Path) -> App {
    let app = app_from(CONFIG, dir);
    app.state
        .add_token_for_tests("other", UserRole::Operator, OTHER);
    describe(&app, SMALL, hardware("amd64", 2, 2048), "10.77.91.11", &[]);
    describe(
        &app,
        MEDIUM,
        hardware("amd64", 4, 8192),
        "10.77.91.12",
        &["gpu"],
    );
    describe(
        &app,
        BIG,
        hardware("arm64", 16, 65536),
        "10.77.92.13",
        &["ssd", "gpu", "ssd"],
    );
    app
}

async fn allocate(router: &axum::Router, token: &str, constraints: Value) -> (StatusCode, Value) {
    call(
        router,
        Method::POST,
        "/api/v1/machines/allocate",
        token,
        Some(constraints),
    )
    .await
}

async fn release(router: &axum::Router, token: &str, mac: &str) -> (StatusCode, Value) {
    call(
        router,
        Method::POST,
        &format!("/api/v1/machines/{mac}/release"),
        token,
        None,
    )
    .await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn each_constraint_narrows_the_choice_and_the_smallest_match_wins() {
    let scratch = Scratch::new("alloc-constraints");
    let app = fixture(&scratch.0);
    let api = region::router(app);
    let cases = [
        // Nothing asked: the smallest, the machine never commissioned (no CPUs known).
        (json!({}), "bare"),
        (json!({ "cpu_count": 1 }), "small"),
        (json!({ "cpu_count": 3 }), "medium"),
        (json!({ "cpu_count": 16 }), "big"),
        (json!({ "mem": 2048 }), "small"),
        (json!({ "mem": 2049 }), "medium"),
        (json!({ "mem": 8193 }), "big"),
        (json!({ "arch": "arm64" }), "big"),
        (json!({ "arch": "amd64" }), "small"),
        (json!({ "arch": "amd64/generic", "cpu_count": 3 }), "medium"),
        (json!({ "zone": "rack-b" }), "big"),
        (json!({ "not_in_zone": ["default"] }), "big"),
        (json!({ "zone": "default", "cpu_count": 3 }), "medium"),
        (json!({ "tags": ["gpu"] }), "medium"),
        (json!({ "tags": ["gpu", "ssd"] }), "big"),
        (json!({ "not_tags": ["gpu"], "cpu_count": 1 }), "small"),
        (json!({ "not_tags": ["ssd"], "tags": ["gpu"] }), "medium"),
        (json!({ "hostname": "big" }), "big"),
        (json!({ "subnets": ["10.77.92.0/24"] }), "big"),
        (json!({ "subnets": ["10.77.91.0/24"] }), "small"),
        (json!({ "vlans": ["vid:100"] }), "big"),
        (json!({ "vlans": ["storage"] }), "big"),
        (json!({ "fabrics": ["fabric-0"] }), "small"),
        (json!({ "fabrics": ["fabric-1"], "tags": ["gpu"] }), "big"),
    ];
    runtime().block_on(async {
        for (constraints, want) in cases {
            let (s, v) = allocate(&api, OPERATOR, constraints.clone()).await;
            assert_eq!(s, StatusCode::OK, "{constraints} -> {v}");
            assert_eq!(v["hostname"], want, "{constraints} -> {v}");
            assert_eq!(v["status"], "allocated", "{v}");
            let mac = v["mac"].as_str().unwrap().to_string();
            let (s, v) = release(&api, OPERATOR, &mac).await;
            assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ready")));
        }
        // Only Ready machines are candidates: with small taken, the next one up.
        let (_, v) = allocate(&api, OPERATOR, json!({ "cpu_count": 1 })).await;
        assert_eq!(v["hostname"], "small");
        let (_, v) = allocate(&api, OPERATOR, json!({ "cpu_count": 1 })).await;
        assert_eq!(v["hostname"], "medium");
    });
}

#[test]
fn unknown_zones_and_networks_are_refused_by_name() {
    let scratch = Scratch::new("alloc-unknown");
    let api = region::router(fixture(&scratch.0));
    runtime().block_on(async {
        for (constraints, name) in [
            (json!({ "zone": "nowhere" }), "nowhere"),
            (
                json!({ "not_in_zone": ["default", "elsewhere"] }),
                "elsewhere",
            ),
            (json!({ "subnets": ["10.9.9.0/24"] }), "10.9.9.0/24"),
            (json!({ "subnets": ["id:99"] }), "id:99"),
            (json!({ "vlans": ["vid:4000"] }), "vid:4000"),
            (json!({ "fabrics": ["fabric-9"] }), "fabric-9"),
            (json!({ "colour": "red" }), "colour"),
            (json!({ "cpu_count": "many" }), "cpu_count"),
        ] {
            let (s, v) = allocate(&api, OPERATOR, constraints.clone()).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{constraints} -> {v}");
            let message = v["error"].as_str().unwrap();
            assert!(message.contains(name), "{constraints} -> {message}");
        }
    });
}

#[test]
fn nothing_matching_is_a_conflict_saying_what_was_asked() {
    let scratch = Scratch::new("alloc-none");
    let api = region::router(fixture(&scratch.0));
    runtime().block_on(async {
        let (s, v) = allocate(&api, OPERATOR, json!({ "cpu_count": 64, "tags": ["gpu"] })).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        let message = v["error"].as_str().unwrap();
        assert!(message.contains("cpu_count>=64"), "{message}");
        assert!(message.contains("tags=gpu"), "{message}");
        let (s, _) = allocate(&api, OPERATOR, json!({ "hostname": "absent" })).await;
        assert_eq!(s, StatusCode::CONFLICT);
    });
}

#[test]
fn allocation_records_owner_event_and_audit_entry() {
    let scratch = Scratch::new("alloc-owner");
    let app = fixture(&scratch.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let (s, v) = allocate(&api, OPERATOR, json!({ "hostname": "medium" })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["owner"], "operator", "{v}");
        let (_, v) = call(
            &api,
            Method::GET,
            &format!("/api/v1/machines/{MEDIUM}/events"),
            VIEWER,
            None,
        )
        .await;
        let last = v.as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            (last["kind"].as_str(), last["detail"].as_str()),
            (Some("allocated"), Some("to operator")),
            "{v}"
        );
        let (_, v) = call(
            &api,
            Method::GET,
            &format!("/api/v1/audit?machine={MEDIUM}"),
            ADMIN,
            None,
        )
        .await;
        let entries: Vec<(&str, &str, u64)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["who"].as_str().unwrap(),
                    e["action"].as_str().unwrap(),
                    e["status"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [("user:operator", "POST /api/v1/machines/allocate", 200)],
            "{v}"
        );
    });
}

#[test]
fn only_the_owner_or_an_admin_releases_and_viewers_do_neither() {
    let scratch = Scratch::new("alloc-release");
    let app = fixture(&scratch.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let (s, v) = allocate(&api, VIEWER, json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = allocate(&api, OPERATOR, json!({ "hostname": "small" })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = release(&api, VIEWER, SMALL).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = release(&api, OTHER, SMALL).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(v["error"].as_str().unwrap().contains("operator"), "{v}");
        assert_eq!(
            app.state.machine(SMALL.parse().unwrap()).unwrap().status,
            Status::Allocated
        );
        let (s, v) = release(&api, OPERATOR, SMALL).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            (v["status"].as_str(), &v["owner"]),
            (Some("ready"), &Value::Null)
        );
        let (s, v) = release(&api, OPERATOR, SMALL).await;
        assert_eq!(s, StatusCode::CONFLICT, "not allocated: {v}");
        // An admin releases anyone's machine.
        let (_, _) = allocate(&api, OTHER, json!({ "hostname": "small" })).await;
        let (s, v) = release(&api, ADMIN, SMALL).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _) = release(&api, ADMIN, "52:54:00:77:a0:99").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        // A deployed machine goes back through Releasing: Ready, its owner cleared.
        let mut machines: Vec<Machine> = app.state.machines();
        for m in &mut machines {
            if m.mac.to_string() == BIG {
                m.status = Status::Deployed;
                m.owner = Some("operator".into());
            }
        }
        let _ = app.state.replace_machines(machines).unwrap();
        let (s, v) = release(&api, OPERATOR, BIG).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "ready", "{v}");
        assert!(v["owner"].is_null(), "{v}");
    });
}

/// Eight Ready machines, thirty-two allocations at once on a multi-threaded runtime: eight
/// get eight different machines, the others are told nothing matches.
#[test]
fn concurrent_allocations_never_share_a_machine() {
    let scratch = Scratch::new("alloc-race");
    let mut config = String::from(
        "[controller]\nstate_dir = \"state\"\n\n[[zones]]\nname = \"default\"\n\n\
         [[vlans]]\nfabric = \"fabric-0\"\nvid = 0\n\n[[subnets]]\ncidr = \"10.77.91.0/24\"\n",
    );
    for i in 0..8 {
        config.push_str(&format!(
            "\n[[machines]]\nmac = \"52:54:00:77:b0:{i:02x}\"\nhostname = \"race{i}\"\n"
        ));
    }
    let app = app_from(&config, &scratch.0);
    let api = region::router(app.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let api = api.clone();
                tokio::spawn(async move { allocate(&api, OPERATOR, json!({})).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let mut won: Vec<String> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, v)| v["mac"].as_str().unwrap().to_string())
        .collect();
    let refused = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won.len(), refused), (8, 24), "{results:?}");
    won.sort();
    won.dedup();
    assert_eq!(won.len(), 8, "a machine was allocated twice: {won:?}");
    assert!(
        app.state
            .machines()
            .iter()
            .all(|m| m.status == Status::Allocated && m.owner.as_deref() == Some("operator"))
    );
}

#[test]
fn allocations_zones_and_tags_survive_a_reopen() {
    let scratch = Scratch::new("alloc-restart");
    let app = fixture(&scratch.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let (s, _) = allocate(&api, OPERATOR, json!({ "hostname": "small" })).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = call(
            &api,
            Method::POST,
            "/api/v1/zones",
            ADMIN,
            Some(json!({ "name": "lab", "description": "the lab" })),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, _) = call(
            &api,
            Method::PUT,
            &format!("/api/v1/machines/{MEDIUM}/zone"),
            ADMIN,
            Some(json!({ "zone": "lab" })),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    });
    drop(api);
    drop(app);
    let again = app_from(CONFIG, &scratch.0);
    let small = again.state.machine(SMALL.parse().unwrap()).unwrap();
    assert_eq!(
        (small.status, small.owner.as_deref()),
        (Status::Allocated, Some("operator"))
    );
    let medium = again.state.machine(MEDIUM.parse().unwrap()).unwrap();
    assert_eq!(
        (medium.zone.as_str(), medium.tags.as_slice()),
        ("lab", &["gpu".to_string()][..])
    );
    let big = again.state.machine(BIG.parse().unwrap()).unwrap();
    assert_eq!(big.tags, ["gpu", "ssd"]);
    let zones: Vec<(String, String)> = again
        .state
        .zones()
        .into_iter()
        .map(|z| (z.name, z.description))
        .collect();
    assert_eq!(
        zones,
        [
            ("default".into(), String::new()),
            ("lab".into(), "the lab".into()),
            ("rack-b".into(), String::new())
        ]
    );
}

#[test]
fn zones_are_made_deleted_and_checked() {
    let scratch = Scratch::new("alloc-zones");
    let api = region::router(fixture(&scratch.0));
    runtime().block_on(async {
        let zones = "/api/v1/zones";
        let lab = Some(json!({ "name": "lab" }));
        let (s, _) = call(&api, Method::POST, zones, OPERATOR, lab.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = call(&api, Method::POST, zones, ADMIN, lab.clone()).await;
        assert_eq!((s, v["name"].as_str()), (StatusCode::CREATED, Some("lab")));
        let (s, _) = call(&api, Method::POST, zones, ADMIN, lab).await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, _) = call(
            &api,
            Method::POST,
            zones,
            ADMIN,
            Some(json!({ "name": "a b" })),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (_, v) = call(&api, Method::GET, zones, VIEWER, None).await;
        let names: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|z| z["name"].as_str())
            .collect();
        assert_eq!(names, ["default", "lab", "rack-b"]);

        let set_zone = format!("/api/v1/machines/{SMALL}/zone");
        let (s, v) = call(
            &api,
            Method::PUT,
            &set_zone,
            ADMIN,
            Some(json!({ "zone": "moon" })),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains("moon"), "{v}");
        let (s, _) = call(
            &api,
            Method::PUT,
            &set_zone,
            OPERATOR,
            Some(json!({ "zone": "lab" })),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = call(
            &api,
            Method::PUT,
            &set_zone,
            ADMIN,
            Some(json!({ "zone": "lab" })),
        )
        .await;
        assert_eq!(
            (s, v["zone"].as_str()),
            (StatusCode::OK, Some("lab")),
            "{v}"
        );

        let (s, v) = call(&api, Method::DELETE, "/api/v1/zones/lab", ADMIN, None).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(v["error"].as_str().unwrap().contains("small"), "{v}");
        let (s, _) = call(&api, Method::DELETE, "/api/v1/zones/default", ADMIN, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = call(&api, Method::DELETE, "/api/v1/zones/nowhere", ADMIN, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = call(
            &api,
            Method::PUT,
            &set_zone,
            ADMIN,
            Some(json!({ "zone": "default" })),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = call(&api, Method::DELETE, "/api/v1/zones/lab", OPERATOR, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = call(&api, Method::DELETE, "/api/v1/zones/lab", ADMIN, None).await;
        assert_eq!(s, StatusCode::OK);
        // A machine cannot be made in a zone that is gone.
        let new = json!({ "mac": "52:54:00:77:a0:20", "zone": "lab" });
        let (s, _) = call(&api, Method::POST, "/api/v1/machines", ADMIN, Some(new)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    });
}

#[test]
fn tags_are_set_added_and_removed() {
    let scratch = Scratch::new("alloc-tags");
    let api = region::router(fixture(&scratch.0));
    runtime().block_on(async {
        let tags = format!("/api/v1/machines/{SMALL}/tags");
        let (s, v) = call(
            &api,
            Method::PUT,
            &tags,
            ADMIN,
            Some(json!({ "tags": ["b", "a", "b"] })),
        )
        .await;
        assert_eq!(
            (s, v["tags"].clone()),
            (StatusCode::OK, json!(["a", "b"])),
            "{v}"
        );
        let edit = Some(json!({ "add": ["c", "a"], "remove": ["b"] }));
        let (s, v) = call(&api, Method::POST, &tags, ADMIN, edit.clone()).await;
        assert_eq!(
            (s, v["tags"].clone()),
            (StatusCode::OK, json!(["a", "c"])),
            "{v}"
        );
        let (s, _) = call(&api, Method::POST, &tags, OPERATOR, edit).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = call(
            &api,
            Method::PUT,
            &tags,
            ADMIN,
            Some(json!({ "tags": ["ok", "not.ok"] })),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains("not.ok"), "{v}");
        let (s, _) = call(
            &api,
            Method::PUT,
            "/api/v1/machines/52:54:00:77:a0:99/tags",
            ADMIN,
            Some(json!({ "tags": [] })),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
}

#[test]
fn the_machine_list_filters_by_zone_status_and_tags() {
    let scratch = Scratch::new("alloc-filters");
    let api = region::router(fixture(&scratch.0));
    runtime().block_on(async {
        let _ = allocate(&api, OPERATOR, json!({ "hostname": "medium" })).await;
        let hostnames = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|m| m["hostname"].as_str().unwrap().to_string())
                .collect()
        };
        for (query, want) in [
            ("", vec!["small", "medium", "big", "bare"]),
            ("?zone=rack-b", vec!["big"]),
            ("?zone=default&status=ready", vec!["small", "bare"]),
            ("?status=allocated", vec!["medium"]),
            ("?tag=gpu", vec!["medium", "big"]),
            ("?tag=gpu&tag=ssd", vec!["big"]),
            ("?tag=gpu&status=ready", vec!["big"]),
        ] {
            let (s, v) = call(
                &api,
                Method::GET,
                &format!("/api/v1/machines{query}"),
                VIEWER,
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{query}: {v}");
            assert_eq!(hostnames(&v), want, "{query}");
        }
        for bad in ["?status=sleeping", "?colour=red"] {
            let (s, v) = call(
                &api,
                Method::GET,
                &format!("/api/v1/machines{bad}"),
                VIEWER,
                None,
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        }
    });
}

#[test]
fn statuses_have_maas_names_in_life_cycle_order_and_old_records_load() {
    let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "new",
            "commissioning",
            "failed_commissioning",
            "ready",
            "allocated",
            "deploying",
            "deployed",
            "failed_deployment",
            "releasing"
        ]
    );
    for status in Status::ALL {
        assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        assert_eq!(json!(status), json!(status.as_str()));
    }
    // A machine stored before owners and tags.
    let old = json!({
        "mac": "52:54:00:77:a0:30", "hostname": "old", "architecture": null, "zone": "default",
        "status": "ready", "origin": "api", "power": null, "ip": null, "boot": null,
        "first_seen": null, "last_seen": null,
    });
    let machine: Machine = serde_json::from_value(old).unwrap();
    assert_eq!((machine.owner, machine.tags), (None, Vec::<String>::new()));
}
