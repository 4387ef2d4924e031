//! A machine's interfaces: made by commissioning on the VLAN its boot interface was seen on,
//! changed through the API by MAAS's rules (static addresses held in the address manager),
//! kept across re-commissioning, and rendered as its network configuration.

use axum::http::StatusCode;
use maas_net::{Mac, Timestamp};
use serde_json::{Value, json};

use crate::app::App;
use crate::region;
use crate::state::{Hardware, NicSeen, Outcome};
use crate::tests::{OPERATOR, Scratch, VIEWER, app_from};
use crate::tests_lifecycle::{json_of, request, runtime, send};

const CONFIG: &str = r##"
[controller]
state_dir = "state"

[[zones]]
name = "default"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.92.0/24"
gateway_ip = "10.77.92.1"

[[subnets]]
cidr = "fd77:92::/64"
gateway_ip = "fd77:92::1"

[[ip_ranges]]
subnet = "10.77.92.0/24"
start = "10.77.92.100"
end = "10.77.92.199"
kind = "dynamic"

[[machines]]
mac = "52:54:00:77:92:10"
hostname = "node1"

[[machines]]
mac = "52:54:00:77:92:20"
hostname = "node2"
"##;

fn mac(text: &str) -> Mac {
    text.parse().unwrap()
}

/// Boots `machine` (a lease at `ip`), commissions it, and reports `nics`.
pub(crate) fn commission(app: &App, machine: &str, ip: &str, nics: &[(&str, &str)]) {
    let now = Timestamp(1_000);
    let m = mac(machine);
    let seen = app
        .state
        .seen_booting(m, Some(ip.parse().unwrap()), None, now, None, |_| true)
        .unwrap();
    drop(seen);
    let (_, t) = app.state.commission(m, Timestamp(9_000), now).unwrap();
    app.state.durable_blocking(t).unwrap();
    let hardware = Hardware {
        architecture: "amd64".into(),
        firmware: "bios".into(),
        cpu_count: 1,
        memory_bytes: 1 << 30,
        interfaces: nics
            .iter()
            .map(|(name, mac_text)| NicSeen {
                name: (*name).into(),
                mac: mac(mac_text),
                link: true,
                speed_mbps: Some(1000),
            })
            .collect(),
        ..Hardware::default()
    };
    let (_, t) = app
        .state
        .commissioning_reported(m, Outcome::Found(Box::new(hardware)), now)
        .unwrap();
    app.state.durable_blocking(t).unwrap();
}

async fn interfaces(api: &axum::Router, machine: &str) -> Value {
    let (status, body) = send(
        api,
        request(
            "GET",
            &format!("/api/v1/machines/{machine}/interfaces"),
            Some(VIEWER),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    json_of(&body)
}

async fn put(api: &axum::Router, machine: &str, doc: Value) -> (StatusCode, Value) {
    let (status, body) = send(
        api,
        request(
            "PUT",
            &format!("/api/v1/machines/{machine}/interfaces"),
            Some(OPERATOR),
            Some(doc),
        ),
    )
    .await;
    (status, json_of(&body))
}

async fn netconfig(api: &axum::Router, machine: &str, format: &str) -> String {
    let (status, body) = send(
        api,
        request(
            "GET",
            &format!("/api/v1/machines/{machine}/netconfig?format={format}"),
            Some(VIEWER),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[test]
fn commissioning_puts_the_boot_interface_on_its_vlan_and_the_api_changes_it_by_maas_rules() {
    let scratch = Scratch::new("network");
    let app = app_from(CONFIG, &scratch.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        // Before commissioning: the boot MAC alone, on the VLAN of nothing (no lease yet).
        let doc = interfaces(&api, "52:54:00:77:92:10").await;
        assert_eq!(doc["interfaces"][0]["mac"], "52:54:00:77:92:10", "{doc}");
        assert!(doc["interfaces"][0].get("vlan").is_none(), "{doc}");

        commission(
            &app,
            "52:54:00:77:92:10",
            "10.77.92.150",
            &[("ens3", "52:54:00:77:92:10"), ("ens4", "52:54:00:77:92:11")],
        );
        let doc = interfaces(&api, "52:54:00:77:92:10").await;
        assert_eq!(doc["hostname"], "node1");
        assert_eq!(doc["boot_interface"], "ens3", "{doc}");
        let ens3 = &doc["interfaces"][0];
        assert_eq!(ens3["name"], "ens3");
        assert_eq!(
            ens3["vlan"],
            json!({ "fabric": "fabric-0", "vid": 0 }),
            "{doc}"
        );
        assert_eq!(
            ens3["links"],
            json!([
                { "mode": "auto", "subnet": "10.77.92.0/24" },
                { "mode": "auto", "subnet": "fd77:92::/64" },
            ]),
            "{doc}"
        );
        let ens4 = &doc["interfaces"][1];
        assert_eq!(ens4["mac"], "52:54:00:77:92:11");
        assert!(
            ens4.get("vlan").is_none() && ens4.get("links").is_none(),
            "{doc}"
        );

        // Rendered before deployment: auto links have no address yet, so only the
        // disconnected card and the boot interface's MAC show; the form is netplan's.
        let v2 = netconfig(&api, "52:54:00:77:92:10", "v2").await;
        assert!(v2.starts_with("network:\n  version: 2\n"), "{v2}");
        assert!(v2.contains("macaddress: \"52:54:00:77:92:10\""), "{v2}");

        // A static IPv4 address and a static IPv6 one without an address (the next free).
        let mut wanted = doc.clone();
        wanted["interfaces"][0]["links"] = json!([
            { "mode": "static", "subnet": "10.77.92.0/24", "ip": "10.77.92.20" },
            { "mode": "static", "subnet": "fd77:92::/64" },
        ]);
        let (status, got) = put(&api, "52:54:00:77:92:10", wanted.clone()).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        let links = &got["interfaces"][0]["links"];
        assert_eq!(links[0]["ip"], "10.77.92.20", "{got}");
        let v6 = links[1]["ip"].as_str().unwrap().to_owned();
        assert!(v6.starts_with("fd77:92::"), "{got}");
        // Both are held in the address manager as STICKY for the machine.
        for ip in ["10.77.92.20", v6.as_str()] {
            let record = app
                .state
                .ipam
                .read(|i| i.record(ip.parse().unwrap()).cloned())
                .unwrap_or_else(|| panic!("{ip} not held"));
            assert_eq!(record.kind, maas_ipam::AddressKind::Sticky, "{ip}");
            assert_eq!(record.mac, Some(mac("52:54:00:77:92:10")), "{ip}");
        }
        let v2 = netconfig(&api, "52:54:00:77:92:10", "v2").await;
        assert!(v2.contains("- 10.77.92.20/24"), "{v2}");
        assert!(v2.contains("via: 10.77.92.1\n"), "{v2}");
        assert!(v2.contains("via: \"fd77:92::1\"\n"), "{v2}");
        assert!(v2.contains(&format!("- \"{v6}/64\"\n")), "{v2}");
        let v1 = netconfig(&api, "52:54:00:77:92:10", "v1").await;
        assert!(v1.contains("address: 10.77.92.20/24"), "{v1}");

        // Another machine cannot take the address; an address in the dynamic range and a
        // subnet off the interface's VLAN are refused with MAAS's words; nothing changes.
        commission(
            &app,
            "52:54:00:77:92:20",
            "10.77.92.151",
            &[("ens3", "52:54:00:77:92:20")],
        );
        let mut other = interfaces(&api, "52:54:00:77:92:20").await;
        other["interfaces"][0]["links"] =
            json!([{ "mode": "static", "subnet": "10.77.92.0/24", "ip": "10.77.92.20" }]);
        let (status, got) = put(&api, "52:54:00:77:92:20", other.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
        assert!(
            got["error"].as_str().unwrap().contains("10.77.92.20"),
            "{got}"
        );
        other["interfaces"][0]["links"] =
            json!([{ "mode": "static", "subnet": "10.77.92.0/24", "ip": "10.77.92.120" }]);
        let (status, got) = put(&api, "52:54:00:77:92:20", other.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
        assert!(
            got["error"].as_str().unwrap().contains("dynamic range"),
            "{got}"
        );
        other["interfaces"][0]["vlan"] = Value::Null;
        other["interfaces"][0]["links"] =
            json!([{ "mode": "static", "subnet": "10.77.92.0/24", "ip": "10.77.92.21" }]);
        let (status, got) = put(&api, "52:54:00:77:92:20", other).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
        assert!(
            app.state
                .ipam
                .read(|i| i.record("10.77.92.21".parse().unwrap()).is_none())
        );
        assert_eq!(
            interfaces(&api, "52:54:00:77:92:20").await["interfaces"][0]["links"],
            json!([
                { "mode": "auto", "subnet": "10.77.92.0/24" },
                { "mode": "auto", "subnet": "fd77:92::/64" },
            ])
        );
        // A viewer may look but not change.
        let (status, _) = send(
            &api,
            request(
                "PUT",
                "/api/v1/machines/52:54:00:77:92:10/interfaces",
                Some(VIEWER),
                Some(wanted),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Re-commissioning under new names keeps what was set on the cards still there; the
        // card that is gone goes, a new one comes.
        commission(
            &app,
            "52:54:00:77:92:10",
            "10.77.92.150",
            &[("eth0", "52:54:00:77:92:10"), ("eth1", "52:54:00:77:92:12")],
        );
        let doc = interfaces(&api, "52:54:00:77:92:10").await;
        assert_eq!(doc["boot_interface"], "eth0", "{doc}");
        let names: Vec<&str> = doc["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["eth0", "eth1"], "{doc}");
        assert_eq!(
            doc["interfaces"][0]["links"][0]["ip"], "10.77.92.20",
            "{doc}"
        );
        assert_eq!(doc["interfaces"][1]["mac"], "52:54:00:77:92:12", "{doc}");

        // Removing the static links frees their addresses.
        let mut cleared = doc.clone();
        cleared["interfaces"][0]["links"] = json!([{ "mode": "dhcp" }]);
        let (status, got) = put(&api, "52:54:00:77:92:10", cleared).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert!(
            app.state
                .ipam
                .read(|i| i.record("10.77.92.20".parse().unwrap()).is_none())
        );
    });
    // What was set survives a restart.
    drop(api);
    let doc = app.state.network(mac("52:54:00:77:92:10")).unwrap();
    app.state.close().unwrap();
    drop(app);
    let app = app_from(CONFIG, &scratch.0);
    assert_eq!(app.state.network(mac("52:54:00:77:92:10")).unwrap(), doc);
}
