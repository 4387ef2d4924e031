//! The blocks a region holds for its racks: each rack's own addresses, disjoint from every
//! other rack's, turned into a client's lease when the rack reports a bind of one, topped up
//! at the next configuration fetch, and freed when the rack is removed.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

use crate::protocol::{PROTOCOL_VERSION, VERSION_HEADER, is_block_client};
use crate::region;
use crate::tests::{ADMIN, Scratch, app_from, send};
use crate::tests_lifecycle::runtime;

const CONFIG: &str = r##"
[controller]
state_dir = "state"

[cluster]
secret = "0123456789abcdef-secret"
rack_block_size = 3

[[cluster.racks]]
name = "rack-a"
vlans = [{ fabric = "fabric-0", vid = 0 }]

[[cluster.racks]]
name = "rack-b"
vlans = [{ fabric = "fabric-0", vid = 0 }]

[[zones]]
name = "default"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.95.0/24"
gateway_ip = "10.77.95.1"

[[ip_ranges]]
subnet = "10.77.95.0/24"
start = "10.77.95.100"
end = "10.77.95.199"
kind = "dynamic"
"##;

fn rack_request(
    rack: &str,
    method: &str,
    uri: &str,
    bearer: &str,
    body: Option<String>,
) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-maas-rack", rack)
        .header(VERSION_HEADER, PROTOCOL_VERSION.to_string())
        .header("authorization", format!("Bearer {bearer}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    request
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap()
}

fn block_of(config: &Value) -> Vec<IpAddr> {
    serde_json::from_value(config["block"].clone()).unwrap()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 77, 95, last])
}

/// Two racks on one VLAN get disjoint blocks of `rack_block_size` addresses, stable across
/// fetches; a bind of a block address its rack reports becomes the client's lease and the
/// block is topped up at the next fetch; the other rack cannot take it; a removed rack's
/// block is free again.
#[test]
fn racks_get_disjoint_blocks_that_become_leases_and_are_freed() {
    let scratch = Scratch::new("blocks");
    let app = app_from(CONFIG, &scratch.0);
    let router = region::router(app.clone());
    runtime().block_on(async {
        let mut credentials = Vec::new();
        for rack in ["rack-a", "rack-b"] {
            let enrol = rack_request(rack, "POST", "/api/v1/rack/enrol", "0123456789abcdef-secret", None);
            let (s, v) = send(&router, enrol).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            credentials.push(v["credential"].as_str().unwrap().to_string());
        }
        let config = |rack: &'static str, credential: String| {
            let router = router.clone();
            async move {
                let (s, v) = send(&router, rack_request(rack, "GET", "/api/v1/rack/config", &credential, None)).await;
                assert_eq!(s, StatusCode::OK, "{v}");
                v
            }
        };
        let a = config("rack-a", credentials[0].clone()).await;
        let b = config("rack-b", credentials[1].clone()).await;
        assert_eq!(block_of(&a), [ip(100), ip(101), ip(102)]);
        assert_eq!(block_of(&b), [ip(103), ip(104), ip(105)]);
        // The mirror a rack gets holds the blocks: no rack offers them to anyone.
        let again = config("rack-a", credentials[0].clone()).await;
        assert_eq!(block_of(&again), block_of(&a));
        let held = again["snapshot"].to_string();
        assert!(held.contains("10.77.95.105"), "{held}");

        // Rack A acknowledged 10.77.95.100 to a client while cut off; its report arrives.
        let bind = |address: IpAddr, mac: &str| {
            format!(r#"{{"reports": [{{"op": "bind", "ip": "{address}", "client": {{"mac": "{mac}"}}, "lease_secs": 600}}]}}"#)
        };
        let batch = rack_request("rack-a", "POST", "/api/v1/rack/leases/batch", &credentials[0], Some(bind(ip(100), "52:54:00:77:95:10")));
        let (s, v) = send(&router, batch).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["results"][0]["record"]["lease"]["state"], "bound", "{v}");
        assert_eq!(v["results"][0]["record"]["lease"]["client"]["mac"], "52:54:00:77:95:10", "{v}");
        // Rack B may not take an address of rack A's block.
        let batch = rack_request("rack-b", "POST", "/api/v1/rack/leases/batch", &credentials[1], Some(bind(ip(101), "52:54:00:77:95:11")));
        let (s, v) = send(&router, batch).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(v["results"][0]["error"].as_str().unwrap().contains("10.77.95.101"), "{v}");
        // Topped up: the leased address left the block, the next free one joined it.
        let a = config("rack-a", credentials[0].clone()).await;
        assert_eq!(block_of(&a), [ip(106), ip(101), ip(102)]);
        let (s, v) = send(&router, crate::tests_lifecycle::request("GET", "/api/v1/leases", Some(ADMIN), None)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(
            v.as_array().unwrap().iter().any(|l| l["ip"] == "10.77.95.100" && l["lease"]["state"] == "bound"),
            "{v}"
        );

        // Removed, rack A's block is free again; rack B's stays.
        let remove = crate::tests_lifecycle::request("DELETE", "/api/v1/racks/rack-a", Some(ADMIN), None);
        let (s, v) = send(&router, remove).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (a_left, b_left) = app.state.ipam.read(|ipam| {
            let count = |rack: &str| {
                ipam.leases()
                    .filter(|r| r.lease.as_ref().is_some_and(|l| is_block_client(rack, &l.client)))
                    .count()
            };
            (count("rack-a"), count("rack-b"))
        });
        assert_eq!((a_left, b_left), (0, 3));
    });
}
