//! Devices and discoveries through the API: each IP assignment mode and what it holds,
//! conflicts (names, MACs, addresses), refusals (a dynamic-range address as external, another
//! user's device, a parent with children, a viewer), frees on delete, the unknown filters,
//! clearing, conversion in one call, reopening the store; and a property: no address is
//! ever held twice across machines and devices, whatever is created and deleted.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::http::{Method, StatusCode};
use maas_ipam::AddressKind;
use serde_json::{Value, json};

use crate::app::App;
use crate::now;
use crate::region;
use crate::state::auth::UserRole;
use crate::state::{Actor, IpAssignment, NewDevice, NewInterface};
use crate::tests::{ADMIN, OPERATOR, Scratch, VIEWER, app_from, call_as as call};

const CONFIG: &str = r##"
[controller]
state_dir = "state"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.93.0/24"
gateway_ip = "10.77.93.1"

[[ip_ranges]]
subnet = "10.77.93.0/24"
start = "10.77.93.100"
end = "10.77.93.199"
kind = "dynamic"

[[ip_ranges]]
subnet = "10.77.93.0/24"
start = "10.77.93.240"
end = "10.77.93.250"
kind = "reserved"

[[machines]]
mac = "52:54:00:77:93:01"
hostname = "host1"
"##;

/// Another operator's token.
const OTHER: &str = "maas_00000000000000d1_00000000000000000000000000000000000000d1";
const MACHINE: &str = "52:54:00:77:93:01";

fn fixture(dir: &std::path::Path) -> App {
    let app = app_from(CONFIG, dir);
    app.state
        .add_token_for_tests("other", UserRole::Operator, OTHER);
    // The domains the tests put devices in (a device's domain must exist).
    for name in ["lab", "lab.example"] {
        if app.state.domains().iter().any(|d| d.name == name) {
            continue; // reopened
        }
        let domain = serde_json::from_value(json!({ "name": name })).unwrap();
        let (_, ticket) = app.state.create_domain(domain).unwrap();
        app.state.durable_blocking(ticket).unwrap();
    }
    app
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The address manager's record of `ip`: its kind and MAC.
fn held(app: &App, ip: &str) -> Option<(AddressKind, Option<String>)> {
    let ip: IpAddr = ip.parse().unwrap();
    app.state
        .ipam
        .read(|i| i.record(ip).map(|r| (r.kind, r.mac.map(|m| m.to_string()))))
}

fn discover(app: &App, ip: &str, mac: &str, hostname: Option<&str>) {
    let event = maas_discovery::Event {
        event: maas_discovery::EventKind::New,
        ip: ip.parse().unwrap(),
        mac: mac.parse().unwrap(),
        previous_mac: None,
        vid: 0,
        hostname: hostname.map(str::to_owned),
        interface: "br0".into(),
        first_seen: now(),
        last_seen: now(),
    };
    let (_, ticket) = app.state.discovered(&event, now()).unwrap();
    app.state.durable_blocking(ticket).unwrap();
}

fn ips(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["ip"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn each_ip_assignment_holds_what_it_should_and_delete_frees_it() {
    let scratch = Scratch::new("devices-modes");
    let app = fixture(&scratch.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let (s, dev) = call(&api, Method::POST, "/api/v1/devices", OPERATOR, Some(json!({
            "name": "switch1",
            "interfaces": [
                { "mac": "52:54:00:77:93:10", "ip_assignment": "static", "ip": "10.77.93.10" },
                { "mac": "52:54:00:77:93:11", "ip_assignment": "static", "subnet": "10.77.93.0/24" },
                { "mac": "52:54:00:77:93:12", "ip_assignment": "external", "ip": "10.77.93.20" },
                { "mac": "52:54:00:77:93:13", "ip_assignment": "dynamic" }
            ]
        }))).await;
        assert_eq!(s, StatusCode::CREATED, "{dev}");
        assert_eq!(dev["owner"], "operator");
        assert_eq!(dev["domain"], "maas");
        assert_eq!(dev["zone"], "default");
        assert_eq!(dev["fqdn"], "switch1.maas");
        let names: Vec<&str> = dev["interfaces"].as_array().unwrap().iter()
            .map(|i| i["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["eth0", "eth1", "eth2", "eth3"]);
        assert_eq!(held(&app, "10.77.93.10"), Some((AddressKind::Sticky, Some("52:54:00:77:93:10".into()))));
        let next = dev["interfaces"][1]["links"][0]["ip"].as_str().unwrap().to_owned();
        assert_eq!(held(&app, &next), Some((AddressKind::Sticky, Some("52:54:00:77:93:11".into()))));
        assert_ne!(next, "10.77.93.1", "the gateway is never handed out");
        assert_ne!(next, "10.77.93.10");
        assert_eq!(held(&app, "10.77.93.20"), Some((AddressKind::UserReserved, Some("52:54:00:77:93:12".into()))));
        assert_eq!(dev["addresses"][3]["ip"], Value::Null, "dynamic: no lease yet");

        // A lease for the dynamic interface's MAC is shown as its address.
        let mac: maas_net::Mac = "52:54:00:77:93:13".parse().unwrap();
        let key = maas_net::ClientKey::Mac(mac);
        let leased = app.state.ipam.apply(|i| {
            let subnet = i.topology().subnet_containing("10.77.93.150".parse().unwrap()).unwrap();
            let offer = i.dhcp_offer(subnet, &key, now(), 60)?;
            i.dhcp_request(offer, &key, now(), 3600)?;
            Ok(offer)
        });
        let leased = leased.unwrap();
        let (_, dev) = call(&api, Method::GET, "/api/v1/devices/switch1", VIEWER, None).await;
        assert_eq!(dev["addresses"][3]["ip"], json!(leased), "{dev}");

        // Removing one interface frees its address only.
        let (s, _) = call(&api, Method::DELETE, "/api/v1/devices/switch1/interfaces/52:54:00:77:93:12", OPERATOR, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(held(&app, "10.77.93.20"), None);
        assert!(held(&app, "10.77.93.10").is_some());

        // Deleting the device frees the rest; the lease is the DHCP server's.
        let (s, _) = call(&api, Method::DELETE, "/api/v1/devices/switch1", OPERATOR, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(held(&app, "10.77.93.10"), None);
        assert_eq!(held(&app, &next), None);
        let (s, _) = call(&api, Method::GET, "/api/v1/devices/switch1", VIEWER, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
}

#[test]
fn conflicts_and_bad_input_are_refused_with_nothing_held() {
    let scratch = Scratch::new("devices-conflicts");
    let app = fixture(&scratch.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let post = |body: Value| {
            let api = api.clone();
            async move { call(&api, Method::POST, "/api/v1/devices", OPERATOR, Some(body)).await }
        };
        let (s, _) = post(json!({ "name": "pdu", "interfaces": [
            { "mac": "52:54:00:77:93:20", "ip_assignment": "static", "ip": "10.77.93.30" }
        ]})).await;
        assert_eq!(s, StatusCode::CREATED);
        let cases = [
            // A machine's host name, a device's name.
            (json!({ "name": "host1" }), StatusCode::CONFLICT, "taken"),
            (json!({ "name": "pdu" }), StatusCode::CONFLICT, "taken"),
            // Not DNS names.
            (json!({ "name": "bad_name" }), StatusCode::BAD_REQUEST, "DNS label"),
            (json!({ "name": "ok", "domain": "a..b" }), StatusCode::BAD_REQUEST, "DNS name"),
            (json!({ "name": "ok", "zone": "nowhere" }), StatusCode::BAD_REQUEST, "zone"),
            (json!({ "name": "ok", "parent": "ghost" }), StatusCode::BAD_REQUEST, "parent"),
            // A machine's MAC, a device's MAC, one MAC twice.
            (json!({ "name": "ok", "interfaces": [{ "mac": MACHINE }] }), StatusCode::CONFLICT, "host1"),
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:20" }] }), StatusCode::CONFLICT, "pdu"),
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:21" }, { "mac": "52:54:00:77:93:21" }] }), StatusCode::BAD_REQUEST, "twice"),
            // An address in use, in the dynamic range, the gateway, outside every subnet.
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:22", "ip_assignment": "static", "ip": "10.77.93.30" }] }), StatusCode::CONFLICT, "in use"),
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:22", "ip_assignment": "external", "ip": "10.77.93.150" }] }), StatusCode::CONFLICT, "dynamic range"),
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:22", "ip_assignment": "static", "ip": "10.77.93.1" }] }), StatusCode::CONFLICT, "gateway"),
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:22", "ip_assignment": "external", "ip": "10.77.200.1" }] }), StatusCode::CONFLICT, "10.77.200.1"),
            // A static address stays out of reserved ranges (an external one may be there).
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:22", "ip_assignment": "static", "ip": "10.77.93.245" }] }), StatusCode::CONFLICT, "reserved range"),
            // Missing what the mode needs.
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:22", "ip_assignment": "external" }] }), StatusCode::BAD_REQUEST, "needs its ip"),
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:22", "ip_assignment": "static" }] }), StatusCode::BAD_REQUEST, "needs its ip"),
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:22", "ip_assignment": "static", "subnet": "10.9.0.0/24" }] }), StatusCode::BAD_REQUEST, "does not exist"),
            (json!({ "name": "ok", "interfaces": [{ "mac": "52:54:00:77:93:22", "ip_assignment": "sometimes" }] }), StatusCode::BAD_REQUEST, "sometimes"),
        ];
        for (body, status, says) in cases {
            let (s, answer) = post(body.clone()).await;
            assert_eq!(s, status, "{body} -> {answer}");
            assert!(answer["error"].as_str().unwrap_or_default().contains(says), "{body} -> {answer}");
        }
        // A failed second interface leaves the first one's address free.
        let (s, _) = post(json!({ "name": "ok", "interfaces": [
            { "mac": "52:54:00:77:93:23", "ip_assignment": "static", "ip": "10.77.93.31" },
            { "mac": "52:54:00:77:93:24", "ip_assignment": "static", "ip": "10.77.93.30" }
        ]})).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(held(&app, "10.77.93.31"), None);
        assert!(app.state.device("ok").is_none());
        let (s, e) = post(json!({ "name": "appliance", "interfaces": [
            { "mac": "52:54:00:77:93:25", "ip_assignment": "external", "ip": "10.77.93.245" }
        ]})).await;
        assert_eq!(s, StatusCode::CREATED, "an external address may be reserved-range: {e}");
        // Machines may not take a device's MAC or name either.
        let (s, e) = call(&api, Method::POST, "/api/v1/machines", ADMIN, Some(json!({
            "mac": "52:54:00:77:93:20", "hostname": "m2"
        }))).await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
        let (s, e) = call(&api, Method::POST, "/api/v1/machines", ADMIN, Some(json!({
            "mac": "52:54:00:77:93:2f", "hostname": "pdu"
        }))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
        let mut doc = app.state.network(MACHINE.parse().unwrap()).unwrap();
        let mut extra = doc.interfaces[0].clone();
        extra.name = "eth9".into();
        extra.mac = Some("52:54:00:77:93:20".parse().unwrap());
        extra.links.clear();
        doc.interfaces.push(extra);
        let refused = app.state.set_network(MACHINE.parse().unwrap(), doc, now());
        assert!(matches!(refused, Err(crate::state::StateError::Conflict(_))));
        // A viewer makes nothing.
        let (s, _) = call(&api, Method::POST, "/api/v1/devices", VIEWER, Some(json!({ "name": "v" }))).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    });
}

#[test]
fn owners_parents_and_zones() {
    let scratch = Scratch::new("devices-owners");
    let app = fixture(&scratch.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let (s, _) = call(
            &api,
            Method::POST,
            "/api/v1/devices",
            OPERATOR,
            Some(json!({
                "name": "vm-host-child", "parent": MACHINE
            })),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, child) = call(
            &api,
            Method::POST,
            "/api/v1/devices",
            OPERATOR,
            Some(json!({
                "name": "container", "parent": "vm-host-child"
            })),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(child["parent"], json!({ "device": "vm-host-child" }));
        // Another user may neither change nor delete it; an admin may.
        let (s, _) = call(
            &api,
            Method::PUT,
            "/api/v1/devices/container",
            OTHER,
            Some(json!({ "description": "x" })),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = call(
            &api,
            Method::DELETE,
            "/api/v1/devices/container",
            OTHER,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, d) = call(
            &api,
            Method::PUT,
            "/api/v1/devices/container",
            ADMIN,
            Some(json!({ "description": "by admin", "domain": "lab.example" })),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{d}");
        assert_eq!(d["fqdn"], "container.lab.example");
        // No cycles.
        let (s, _) = call(
            &api,
            Method::PUT,
            "/api/v1/devices/vm-host-child",
            ADMIN,
            Some(json!({ "parent": "container" })),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        // A parent with children stays: the device and the machine.
        let (s, e) = call(
            &api,
            Method::DELETE,
            "/api/v1/devices/vm-host-child",
            OPERATOR,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
        let (s, e) = call(
            &api,
            Method::DELETE,
            &format!("/api/v1/machines/{MACHINE}"),
            ADMIN,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
        // A renamed parent takes its children along.
        let (s, _) = call(
            &api,
            Method::PUT,
            "/api/v1/devices/vm-host-child",
            OPERATOR,
            Some(json!({ "name": "hypervisor" })),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            app.state.device("container").unwrap().parent,
            Some(crate::state::Parent::Device("hypervisor".into()))
        );
        // A zone a device is in stays.
        let (s, _) = call(
            &api,
            Method::POST,
            "/api/v1/zones",
            ADMIN,
            Some(json!({ "name": "lab" })),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, _) = call(
            &api,
            Method::PUT,
            "/api/v1/devices/container",
            OPERATOR,
            Some(json!({ "zone": "lab" })),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = call(&api, Method::DELETE, "/api/v1/zones/lab", ADMIN, None).await;
        assert_eq!(s, StatusCode::CONFLICT);
        // Children first, then the parents go.
        for name in ["container", "hypervisor"] {
            let (s, _) = call(
                &api,
                Method::DELETE,
                &format!("/api/v1/devices/{name}"),
                OPERATOR,
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK);
        }
        let (s, _) = call(
            &api,
            Method::DELETE,
            &format!("/api/v1/machines/{MACHINE}"),
            ADMIN,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    });
}

#[test]
fn unknown_discoveries_clearing_and_conversion() {
    let scratch = Scratch::new("devices-discoveries");
    let app = fixture(&scratch.0);
    let api = region::router(app.clone());
    // A stranger, a machine's MAC at a new address, the controller's own interface, and a
    // stranger at a machine's static address.
    discover(
        &app,
        "10.77.93.40",
        "52:54:00:77:93:40",
        Some("printer.local"),
    );
    discover(&app, "10.77.93.41", MACHINE, None);
    discover(&app, "10.77.93.42", "52:54:00:77:93:42", None);
    discover(&app, "10.77.93.43", "52:54:00:77:93:43", None);
    app.state
        .own_interface(Some("52:54:00:77:93:42".parse().unwrap()), &[]);
    let actor = Actor {
        name: "admin".into(),
        admin: true,
    };
    let (_, t) = app
        .state
        .create_device(
            NewDevice {
                name: "holder".into(),
                interfaces: vec![NewInterface {
                    mac: "52:54:00:77:93:44".parse().unwrap(),
                    ip_assignment: IpAssignment::Static,
                    ip: Some("10.77.93.43".parse().unwrap()),
                    ..NewInterface::default()
                }],
                ..NewDevice::default()
            },
            &actor.name,
            now(),
        )
        .unwrap();
    app.state.durable_blocking(t).unwrap();
    runtime().block_on(async {
        let list = |q: &'static str| {
            let api = api.clone();
            async move { call(&api, Method::GET, &format!("/api/v1/discoveries{q}"), VIEWER, None).await.1 }
        };
        assert_eq!(ips(&list("").await).len(), 4);
        assert_eq!(ips(&list("?unknown=mac").await), ["10.77.93.40", "10.77.93.43"]);
        assert_eq!(ips(&list("?unknown=ip").await), ["10.77.93.40", "10.77.93.41", "10.77.93.42"]);
        assert_eq!(ips(&list("?unknown=both").await), ["10.77.93.40"]);
        let (s, _) = call(&api, Method::GET, "/api/v1/discoveries?unknown=color", VIEWER, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        // Converted into a device with its discovered address, in one call: its name from
        // mDNS; then it is known.
        let (s, made) = call(&api, Method::POST, "/api/v1/discoveries/convert", OPERATOR, Some(json!({
            "ip": "10.77.93.40", "mac": "52:54:00:77:93:40", "as": "device", "ip_assignment": "static",
            "domain": "lab", "parent": MACHINE
        }))).await;
        assert_eq!(s, StatusCode::CREATED, "{made}");
        assert_eq!(made["device"]["name"], "printer");
        assert_eq!(made["device"]["fqdn"], "printer.lab");
        assert_eq!(held(&app, "10.77.93.40"), Some((AddressKind::Sticky, Some("52:54:00:77:93:40".into()))));
        assert!(ips(&list("?unknown=both").await).is_empty());
        assert_eq!(ips(&list("?unknown=ip").await), ["10.77.93.41", "10.77.93.42"]);
        // Twice is refused: the MAC is taken.
        let (s, _) = call(&api, Method::POST, "/api/v1/discoveries/convert", OPERATOR, Some(json!({
            "ip": "10.77.93.40", "mac": "52:54:00:77:93:40", "as": "device", "ip_assignment": "dynamic", "hostname": "again"
        }))).await;
        assert_eq!(s, StatusCode::CONFLICT);
        // No such discovery.
        let (s, _) = call(&api, Method::POST, "/api/v1/discoveries/convert", OPERATOR, Some(json!({
            "ip": "10.77.93.99", "mac": "52:54:00:77:93:99", "as": "device", "ip_assignment": "dynamic"
        }))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // Into an interface of the device (external), and of the machine (admin only).
        discover(&app, "10.77.93.45", "52:54:00:77:93:45", None);
        let (s, made) = call(&api, Method::POST, "/api/v1/discoveries/convert", OPERATOR, Some(json!({
            "ip": "10.77.93.45", "mac": "52:54:00:77:93:45", "as": "interface", "ip_assignment": "external",
            "target": "printer", "interface": "mgmt"
        }))).await;
        assert_eq!(s, StatusCode::CREATED, "{made}");
        assert_eq!(made["device"]["interfaces"][1]["name"], "mgmt");
        assert_eq!(held(&app, "10.77.93.45"), Some((AddressKind::UserReserved, Some("52:54:00:77:93:45".into()))));
        discover(&app, "10.77.93.46", "52:54:00:77:93:46", None);
        let body = json!({
            "ip": "10.77.93.46", "mac": "52:54:00:77:93:46", "as": "interface", "ip_assignment": "static",
            "target": MACHINE
        });
        let (s, _) = call(&api, Method::POST, "/api/v1/discoveries/convert", OPERATOR, Some(body.clone())).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, made) = call(&api, Method::POST, "/api/v1/discoveries/convert", ADMIN, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{made}");
        let ifaces = made["machine"]["network"]["interfaces"].as_array().unwrap();
        assert!(ifaces.iter().any(|i| i["mac"] == "52:54:00:77:93:46"), "{made}");
        // A machine's addresses are held under the machine's MAC.
        assert_eq!(held(&app, "10.77.93.46"), Some((AddressKind::Sticky, Some(MACHINE.into()))));

        // Clearing is an admin's: names only, one, then everything.
        let (s, _) = call(&api, Method::POST, "/api/v1/discoveries/clear", OPERATOR, Some(json!({ "all": true }))).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = call(&api, Method::POST, "/api/v1/discoveries/clear", ADMIN, Some(json!({}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, n) = call(&api, Method::POST, "/api/v1/discoveries/clear", ADMIN, Some(json!({ "mdns": true }))).await;
        assert_eq!((s, n["cleared"].as_u64()), (StatusCode::OK, Some(1)));
        assert!(list("").await.as_array().unwrap().iter().all(|d| d["hostname"].is_null()));
        assert_eq!(ips(&list("").await).len(), 6);
        let (s, _) = call(&api, Method::POST, "/api/v1/discoveries/clear-by-mac-and-ip", ADMIN, Some(json!({ "mac": MACHINE, "ip": "10.77.93.41" }))).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ips(&list("").await).len(), 5);
        let (s, _) = call(&api, Method::POST, "/api/v1/discoveries/clear-by-mac-and-ip", ADMIN, Some(json!({ "mac": MACHINE, "ip": "10.77.93.41" }))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, n) = call(&api, Method::POST, "/api/v1/discoveries/clear", ADMIN, Some(json!({ "neighbours": true }))).await;
        assert_eq!((s, n["cleared"].as_u64()), (StatusCode::OK, Some(5)));
        assert!(ips(&list("").await).is_empty());
        // The addresses only seen on the wire went; the held ones stayed.
        let seen = app.state.ipam.read(|i| i.discoveries().count());
        assert_eq!(seen, 0);
        assert!(held(&app, "10.77.93.40").is_some());
    });
}

#[test]
fn devices_and_cleared_discoveries_survive_a_reopen() {
    let scratch = Scratch::new("devices-reopen");
    {
        let app = fixture(&scratch.0);
        discover(&app, "10.77.93.50", "52:54:00:77:93:50", None);
        discover(&app, "10.77.93.51", "52:54:00:77:93:51", None);
        let (_, t) = app
            .state
            .clear_discovery(
                "52:54:00:77:93:51".parse().unwrap(),
                "10.77.93.51".parse().unwrap(),
            )
            .unwrap();
        app.state.durable_blocking(t).unwrap();
        let (_, t) = app
            .state
            .create_device(
                NewDevice {
                    name: "kept".into(),
                    interfaces: vec![NewInterface {
                        mac: "52:54:00:77:93:52".parse().unwrap(),
                        ip_assignment: IpAssignment::External,
                        ip: Some("10.77.93.52".parse().unwrap()),
                        ..NewInterface::default()
                    }],
                    ..NewDevice::default()
                },
                "operator",
                now(),
            )
            .unwrap();
        app.state.durable_blocking(t).unwrap();
        app.state.close().unwrap();
    }
    let app = fixture(&scratch.0);
    let kept = app.state.device("kept").expect("the device survives");
    assert_eq!(
        kept.interfaces[0].links[0].ip,
        Some("10.77.93.52".parse().unwrap())
    );
    assert_eq!(
        held(&app, "10.77.93.52").map(|h| h.0),
        Some(AddressKind::UserReserved)
    );
    let left: Vec<String> = app
        .state
        .discoveries()
        .iter()
        .map(|d| d.ip.to_string())
        .collect();
    assert_eq!(left, ["10.77.93.50"]);
}

mod property {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Make device `n` with a static (given or next free) or external address.
        Device {
            n: u8,
            given: Option<u8>,
            external: bool,
        },
        /// Delete device `n`.
        Delete { n: u8 },
        /// Give the machine a static address (its interfaces replaced).
        Machine { last: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, proptest::option::of(2u8..24), any::<bool>())
                .prop_map(|(n, given, external)| Op::Device { n, given, external }),
            (0u8..6).prop_map(|n| Op::Delete { n }),
            (2u8..24).prop_map(|last| Op::Machine { last }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever devices are made and deleted and whatever static address the machine
        /// takes, no address is held by two of them, every held address is recorded in the
        /// address manager for its holder's MAC, and nothing held outlives its holder.
        #[test]
        fn no_address_is_held_twice(ops in proptest::collection::vec(op(), 1..16)) {
            let scratch = Scratch::new("devices-prop");
            let app = fixture(&scratch.0);
            let machine: maas_net::Mac = MACHINE.parse().unwrap();
            for op in ops {
                match op {
                    Op::Device { n, given, external } => {
                        let ip = given.map(|g| format!("10.77.93.{g}").parse().unwrap());
                        let mode = if external { IpAssignment::External } else { IpAssignment::Static };
                        let new = NewDevice {
                            name: format!("d{n}"),
                            interfaces: vec![NewInterface {
                                mac: format!("52:54:00:77:94:{n:02x}").parse().unwrap(),
                                ip_assignment: mode,
                                ip,
                                subnet: Some("10.77.93.0/24".into()),
                                ..NewInterface::default()
                            }],
                            ..NewDevice::default()
                        };
                        if let Ok((_, t)) = app.state.create_device(new, "operator", now()) {
                            app.state.durable_blocking(t).unwrap();
                        }
                    }
                    Op::Delete { n } => {
                        let admin = Actor { name: "admin".into(), admin: true };
                        if let Ok((_, t)) = app.state.delete_device(&format!("d{n}"), &admin) {
                            app.state.durable_blocking(t).unwrap();
                        }
                    }
                    Op::Machine { last } => {
                        let mut doc = app.state.network(machine).unwrap();
                        if let Some(link) = doc.interfaces.get_mut(0).and_then(|i| i.links.get_mut(0)) {
                            link.mode = maas_net::LinkMode::Static;
                            link.ip = Some(format!("10.77.93.{last}").parse().unwrap());
                        } else if let Some(i) = doc.interfaces.get_mut(0) {
                            i.vlan = Some(maas_net::doc::VlanRef { fabric: "fabric-0".into(), vid: 0 });
                            i.links = vec![maas_net::doc::LinkDoc {
                                mode: maas_net::LinkMode::Static,
                                subnet: Some("10.77.93.0/24".parse().unwrap()),
                                ip: Some(format!("10.77.93.{last}").parse().unwrap()),
                            }];
                        }
                        if let Ok((_, t)) = app.state.set_network(machine, doc, now()) {
                            app.state.durable_blocking(t).unwrap();
                        }
                    }
                }
                // Who claims each address: devices' held links and the machine's static links.
                let mut claims: BTreeMap<IpAddr, Vec<maas_net::Mac>> = BTreeMap::new();
                for d in app.state.devices() {
                    for i in &d.interfaces {
                        for l in &i.links {
                            if l.mode != IpAssignment::Dynamic {
                                claims.entry(l.ip.unwrap()).or_default().push(i.mac);
                            }
                        }
                    }
                }
                if let Some(doc) = app.state.machine(machine).and_then(|m| m.network) {
                    for i in &doc.interfaces {
                        for l in i.links.iter().filter(|l| l.mode == maas_net::LinkMode::Static) {
                            claims.entry(l.ip.unwrap()).or_default().push(i.mac.unwrap());
                        }
                    }
                }
                for (ip, holders) in &claims {
                    prop_assert_eq!(holders.len(), 1, "{} held by {:?}", ip, holders);
                    let record = app.state.ipam.read(|i| i.record(*ip).cloned());
                    prop_assert_eq!(record.and_then(|r| r.mac), Some(holders[0]));
                }
                let orphans: Vec<IpAddr> = app.state.ipam.read(|i| {
                    i.records()
                        .filter(|r| matches!(r.kind, AddressKind::Sticky | AddressKind::UserReserved))
                        .map(|r| r.ip)
                        .filter(|ip| !claims.contains_key(ip))
                        .collect()
                });
                prop_assert!(orphans.is_empty(), "held with no holder: {:?}", orphans);
            }
        }
    }
}
