//! Several regions on one PostgreSQL database, in one process: what one region does, the other
//! sees; a machine is never allocated twice nor an address leased twice, however the regions
//! race; and a whole state is copied from the embedded store into PostgreSQL and back.
//!
//! The server is a real PostgreSQL the tests start (see `pg_server`); without one these tests
//! pass without running, except under `CI=true`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use maas_ipam::ClientKey;
use maas_ipam::postgres::{Client, NoTls};
use maas_net::{Mac, Timestamp};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::app::App;
use crate::config;
use crate::pg_server::PgServer;
use crate::region;
use crate::state::{State, Status, StoreAt};
use crate::tests::{OPERATOR, Scratch, with_test_users};

const NOW: Timestamp = Timestamp(1_790_000_000);

/// Eight machines on one subnet with a dynamic range.
fn config_text() -> String {
    let mut text = String::from(
        "[controller]\nstate_dir = \"state\"\n\n[[zones]]\nname = \"default\"\n\n\
         [[vlans]]\nfabric = \"fabric-0\"\nvid = 0\ndhcp_on = true\n\n\
         [[subnets]]\ncidr = \"10.77.95.0/24\"\n\n\
         [[ip_ranges]]\nsubnet = \"10.77.95.0/24\"\nstart = \"10.77.95.100\"\n\
         end = \"10.77.95.250\"\ntype = \"dynamic\"\n",
    );
    for i in 0..8 {
        text.push_str(&format!(
            "\n[[machines]]\nmac = \"52:54:00:77:c0:{i:02x}\"\nhostname = \"shared{i}\"\n"
        ));
    }
    text
}

/// A region of `dir` on `at`.
fn region_on(dir: &Path, at: &StoreAt) -> App {
    let config = config::parse(&config_text(), dir).unwrap();
    std::fs::create_dir_all(&config.controller.state_dir).unwrap();
    let state = State::open_at(at, &config.topology, &config.machines).unwrap();
    with_test_users(&state);
    App::new(state, config)
}

/// Two regions on one new database, and the database's URL; `None` without PostgreSQL.
fn two_regions(scratch: &Scratch) -> Option<(App, App, String, Arc<PgServer>)> {
    let server = PgServer::shared()?;
    let url = server.create_database();
    let at = StoreAt::Postgres(url.clone());
    let a = region_on(&scratch.0.join("a"), &at);
    let b = region_on(&scratch.0.join("b"), &at);
    Some((a, b, url, server))
}

async fn call(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: Value,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits (at most ten seconds) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_region_that_did_not_see_an_allocation_is_refused_then_learns_it() {
    let scratch = Scratch::new("pg-stale");
    let Some((a, b, _, _server)) = two_regions(&scratch) else {
        return;
    };
    let rt = runtime();
    let pick = json!({ "hostname": "shared3" });
    let (status, won) = rt.block_on(call(
        &region::router(a.clone()),
        Method::POST,
        "/api/v1/machines/allocate",
        pick.clone(),
    ));
    assert_eq!(status, StatusCode::OK, "{won}");
    // Region b follows nobody yet: it still sees the machine Ready, and the database refuses.
    let mac: Mac = "52:54:00:77:c0:03".parse().unwrap();
    assert_eq!(b.state.status(mac), Some(Status::Ready));
    let (status, refused) = rt.block_on(call(
        &region::router(b.clone()),
        Method::POST,
        "/api/v1/machines/allocate",
        pick,
    ));
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("another region")),
        "{refused}"
    );
    // Once it follows, it sees a's allocation, and a sees what b does.
    let follower = b.clone();
    b.state.follow(move || follower.reloaded());
    let follower = a.clone();
    a.state.follow(move || follower.reloaded());
    eventually("b sees the allocation", || {
        b.state.status(mac) == Some(Status::Allocated)
    });
    assert_eq!(
        b.state.machine(mac).unwrap().owner.as_deref(),
        Some("operator")
    );
    let (status, _) = rt.block_on(call(
        &region::router(b.clone()),
        Method::POST,
        "/api/v1/machines/allocate",
        json!({ "hostname": "shared5" }),
    ));
    assert_eq!(status, StatusCode::OK);
    let other: Mac = "52:54:00:77:c0:05".parse().unwrap();
    eventually("a sees b's allocation", || {
        a.state.status(other) == Some(Status::Allocated)
    });
}

#[test]
fn concurrent_allocations_through_two_regions_never_share_a_machine() {
    let scratch = Scratch::new("pg-alloc-race");
    let Some((a, b, url, _server)) = two_regions(&scratch) else {
        return;
    };
    for app in [&a, &b] {
        let follower = app.clone();
        app.state.follow(move || follower.reloaded());
    }
    let routers = [region::router(a.clone()), region::router(b.clone())];
    let rt = runtime();
    let results: Vec<(StatusCode, Value)> = rt.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|n| {
                let api = routers[n % 2].clone();
                tokio::spawn(async move {
                    call(&api, Method::POST, "/api/v1/machines/allocate", json!({})).await
                })
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
    assert!(
        results
            .iter()
            .all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{results:?}"
    );
    let answered = won.len();
    won.sort();
    won.dedup();
    assert_eq!(
        won.len(),
        answered,
        "a machine was allocated twice: {won:?}"
    );
    assert!(answered > 0);
    // The database holds exactly the allocations that were answered.
    let mut client = Client::connect(&url, NoTls).unwrap();
    let mut stored: Vec<String> = client
        .query(
            "SELECT mac::text FROM ctl_machines WHERE doc->>'status' = 'allocated' ORDER BY mac",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    stored.sort();
    assert_eq!(stored, won);
}

#[test]
fn leases_through_two_regions_never_share_an_address() {
    let scratch = Scratch::new("pg-lease-race");
    let Some((a, b, url, _server)) = two_regions(&scratch) else {
        return;
    };
    for app in [&a, &b] {
        let follower = app.clone();
        app.state.follow(move || follower.reloaded());
    }
    let subnet = a
        .state
        .ipam
        .read(|ipam| ipam.topology().subnets().map(|(id, _)| id).next().unwrap());
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let region = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for n in 0..20u8 {
                    let client = ClientKey::Mac(Mac::from([0x02, 0x77, 0, 0, t, n]));
                    // A client whose lease was refused asks again, as DHCP clients do.
                    for _ in 0..20 {
                        let leased = region.state.ipam.apply(|ipam| {
                            let ip = ipam.dhcp_offer(subnet, &client, NOW, 30)?;
                            ipam.dhcp_request(ip, &client, NOW, 3600)?;
                            Ok(ip)
                        });
                        if let Ok(ip) = leased {
                            got.push((client.clone(), ip));
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                got
            })
        })
        .collect();
    let acked: Vec<(ClientKey, IpAddr)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(acked.len(), 80, "every client got a lease in the end");
    let mut ips: Vec<IpAddr> = acked.iter().map(|(_, ip)| *ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), acked.len(), "an address was leased twice");
    // Each acknowledged lease is the one the database holds for that address.
    let mut client = Client::connect(&url, NoTls).unwrap();
    for (key, ip) in &acked {
        let row = client
            .query_one(
                "SELECT lease_client FROM ipam_records WHERE ip = $1 AND NOT discovered",
                &[ip],
            )
            .unwrap();
        let holder: Option<String> = row.get(0);
        assert_eq!(holder.as_deref(), Some(key.to_string().as_str()), "{ip}");
    }
}

#[test]
fn a_whole_state_goes_into_postgresql_and_back() {
    let scratch = Scratch::new("pg-copy");
    let Some(server) = PgServer::shared() else {
        return;
    };
    let first = StoreAt::embedded(&scratch.0.join("one/state"));
    let source = region_on(&scratch.0.join("one"), &first);
    let mac: Mac = "52:54:00:77:c0:01".parse().unwrap();
    let seen = source
        .state
        .seen_booting(
            mac,
            Some("10.77.95.101".parse().unwrap()),
            None,
            NOW,
            None,
            |_| true,
        )
        .unwrap();
    let crate::state::Seen::Known { ticket, .. } = seen else {
        panic!("a configured machine is known");
    };
    if let Some(ticket) = ticket {
        source.state.durable_blocking(ticket).unwrap();
    }
    let client = ClientKey::Mac(mac);
    source
        .state
        .ipam
        .apply(|ipam| {
            let subnet = ipam.topology().subnets().map(|(id, _)| id).next().unwrap();
            let ip = ipam.dhcp_offer(subnet, &client, NOW, 30)?;
            ipam.dhcp_request(ip, &client, NOW, 3600)
        })
        .unwrap();
    let (_, t) = source
        .state
        .machine_reported(mac, "commissioning_started", Some("detail".into()), NOW)
        .unwrap();
    source.state.durable_blocking(t).unwrap();
    let view = |state: &State| {
        json!({
            "machines": state.machines(),
            "events": state.events(mac),
            "zones": state.zones(),
            "users": state.users().iter().map(|u| u.name.clone()).collect::<Vec<_>>(),
            "addresses": state.ipam.read(maas_ipam::Ipam::snapshot),
        })
    };
    let before = view(&source.state);
    source.state.close().unwrap();
    drop(source);

    let url = server.create_database();
    let pg = StoreAt::Postgres(url);
    crate::state::copy(&first, &pg).unwrap();
    let back = StoreAt::embedded(&scratch.0.join("two/state"));
    std::fs::create_dir_all(scratch.0.join("two/state")).unwrap();
    crate::state::copy(&pg, &back).unwrap();
    // Into a store that holds something: refused, nothing changed.
    let err = crate::state::copy(&first, &pg).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");

    for at in [&pg, &back] {
        let config = config::parse(&config_text(), &scratch.0.join("check")).unwrap();
        let state = State::open_at(at, &config.topology, &config.machines).unwrap();
        assert_eq!(view(&state), before, "{at:?}");
        state.close().unwrap();
    }
}
