//! The DNS zones built from hosts, subnets and leases, queried through whole messages.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use maas_net::RdnsMode;
use proptest::prelude::*;

use super::next_serial;
use super::zone::{DomainInput, Host, HostInterface, Inputs, Outcome, Snapshot, SubnetInput};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

fn subnet(cidr: &str, mode: RdnsMode, dynamic: &[(&str, &str)]) -> SubnetInput {
    SubnetInput {
        cidr: cidr.parse().expect("a network"),
        allow_dns: true,
        rdns_mode: mode,
        dynamic: dynamic.iter().map(|(a, b)| (ip(a), ip(b))).collect(),
    }
}

fn host(name: &str, domain: &str, interfaces: &[(&str, bool, &[&str])]) -> Host {
    Host {
        name: name.into(),
        domain: domain.into(),
        interfaces: interfaces
            .iter()
            .map(|(n, boot, addresses)| HostInterface {
                name: (*n).into(),
                boot: *boot,
                addresses: addresses.iter().map(|a| ip(a)).collect(),
            })
            .collect(),
    }
}

/// A controller with a /24 (dynamic range), a /26 in RFC 2317 mode, a /64 and a subnet
/// without DNS; two machines (one in another domain) and a lease.
fn inputs() -> Inputs {
    let mut refused = subnet("10.77.9.0/24", RdnsMode::Enabled, &[]);
    refused.allow_dns = false;
    Inputs {
        hosts: vec![
            host("maas-controller", "maas", &[("", true, &["10.77.0.1"])]),
            host(
                "node1",
                "maas",
                &[
                    ("eth0", true, &["10.77.0.10", "fd77:0:0:1::10"]),
                    ("eth1", false, &["10.77.1.70"]),
                ],
            ),
            host("web", "example.org", &[("eth0", true, &["10.77.0.11"])]),
        ],
        domains: vec![
            DomainInput {
                name: "maas".into(),
                authoritative: true,
                ttl: None,
            },
            DomainInput {
                name: "example.org".into(),
                authoritative: true,
                ttl: Some(300),
            },
            DomainInput {
                name: "elsewhere.net".into(),
                authoritative: false,
                ttl: None,
            },
        ],
        default_domain: "maas".into(),
        subnets: vec![
            subnet(
                "10.77.0.0/24",
                RdnsMode::Enabled,
                &[("10.77.0.100", "10.77.0.199")],
            ),
            subnet("10.77.1.64/26", RdnsMode::Rfc2317, &[]),
            subnet(
                "fd77:0:0:1::/64",
                RdnsMode::Enabled,
                &[("fd77:0:0:1::100", "fd77:0:0:1::1ff")],
            ),
            refused,
        ],
        leases: vec![ip("fd77:0:0:1::105"), ip("10.77.0.150")],
        ns_name: "maas-controller".into(),
        default_ttl: 30,
        forwarding: true,
    }
}

fn ask(snapshot: &Snapshot, name: &str, qtype: RecordType, client: &str) -> Message {
    let mut request = Message::new(7, MessageType::Query, OpCode::Query);
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(Name::from_ascii(name).expect("a name"), qtype));
    // Through the wire format both ways, as a client sees it.
    let bytes = request.to_vec().expect("encodes");
    let request = Message::from_vec(&bytes).expect("decodes");
    let response = snapshot
        .respond(&request, ip(client))
        .expect("answered here");
    Message::from_vec(&response.to_vec().expect("encodes")).expect("decodes")
}

fn data(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::PTR(p) => p.0.to_ascii(),
            RData::CNAME(c) => format!("CNAME {}", c.0.to_ascii()),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn forward_names_of_machines_and_interfaces() {
    let s = Snapshot::build(&inputs(), 5);
    let a = ask(&s, "node1.maas.", RecordType::A, "10.77.0.50");
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert_eq!(data(&a), ["10.77.0.10"]);
    assert_eq!(
        data(&ask(&s, "NODE1.maas.", RecordType::AAAA, "10.77.0.50")),
        ["fd77:0:0:1::10"]
    );
    assert_eq!(
        data(&ask(&s, "eth1.node1.maas.", RecordType::A, "10.77.0.50")),
        ["10.77.1.70"]
    );
    let web = ask(&s, "web.example.org.", RecordType::A, "10.77.0.50");
    assert_eq!(data(&web), ["10.77.0.11"]);
    assert_eq!(web.answers[0].ttl, 300);
    assert_eq!(
        data(&ask(
            &s,
            "maas-controller.maas.",
            RecordType::A,
            "10.77.0.50"
        )),
        ["10.77.0.1"]
    );
}

#[test]
fn reverse_names_by_zone_kind() {
    let s = Snapshot::build(&inputs(), 5);
    assert_eq!(
        data(&ask(
            &s,
            "10.0.77.10.in-addr.arpa.",
            RecordType::PTR,
            "10.77.0.50"
        )),
        ["node1.maas."]
    );
    assert_eq!(
        data(&ask(
            &s,
            "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.7.7.d.f.ip6.arpa.",
            RecordType::PTR,
            "10.77.0.50"
        )),
        ["node1.maas."]
    );
    // RFC 2317: the glue zone's CNAME, followed into the classless zone.
    assert_eq!(
        data(&ask(
            &s,
            "70.1.77.10.in-addr.arpa.",
            RecordType::PTR,
            "10.77.0.50"
        )),
        ["CNAME 70.64-26.1.77.10.in-addr.arpa.", "eth1.node1.maas."]
    );
    let names: Vec<&str> = s.zone_names().collect();
    for zone in [
        "maas",
        "example.org",
        "0.77.10.in-addr.arpa",
        "64-26.1.77.10.in-addr.arpa",
        "1.77.10.in-addr.arpa",
        "1.0.0.0.0.0.0.0.0.0.0.0.7.7.d.f.ip6.arpa",
    ] {
        assert!(names.contains(&zone), "{zone} in {names:?}");
    }
    assert!(!names.contains(&"elsewhere.net"));
    assert!(!names.contains(&"9.77.10.in-addr.arpa"), "no DNS there");
}

#[test]
fn dynamic_ranges_and_leases_have_generated_names() {
    let s = Snapshot::build(&inputs(), 5);
    assert_eq!(
        data(&ask(&s, "10-77-0-120.maas.", RecordType::A, "10.77.0.50")),
        ["10.77.0.120"]
    );
    assert_eq!(
        data(&ask(
            &s,
            "120.0.77.10.in-addr.arpa.",
            RecordType::PTR,
            "10.77.0.50"
        )),
        ["10-77-0-120.maas."]
    );
    // Outside the range: no such name.
    let outside = ask(&s, "10-77-0-20.maas.", RecordType::A, "10.77.0.50");
    assert_eq!(outside.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(outside.authorities.len(), 1, "the SOA");
    // An IPv6 lease.
    assert_eq!(
        data(&ask(
            &s,
            "fd77-0-0-1--105.maas.",
            RecordType::AAAA,
            "10.77.0.50"
        )),
        ["fd77:0:0:1::105"]
    );
}

#[test]
fn negative_answers_refusals_and_forwarding() {
    let s = Snapshot::build(&inputs(), 5);
    let nodata = ask(&s, "node1.maas.", RecordType::MX, "10.77.0.50");
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    // `node1` exists only through `eth1.node1`: still not NXDOMAIN.
    let mut only_below = inputs();
    only_below.hosts[1].interfaces.remove(0);
    let s2 = Snapshot::build(&only_below, 6);
    let ent = ask(&s2, "node1.maas.", RecordType::A, "10.77.0.50");
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    let name = Name::from_ascii("example.com.").expect("a name");
    assert_eq!(
        s.answer(&name, RecordType::A, ip("10.77.0.50"), true),
        Outcome::Forward
    );
    assert_eq!(
        s.answer(&name, RecordType::A, ip("127.0.0.1"), true),
        Outcome::Forward
    );
    assert_eq!(
        s.answer(&name, RecordType::A, ip("10.77.9.5"), true),
        Outcome::Refused,
        "a subnet without allow_dns"
    );
    assert_eq!(
        s.answer(&name, RecordType::A, ip("10.77.0.50"), false),
        Outcome::Refused,
        "no recursion asked"
    );
    let mut off = inputs();
    off.forwarding = false;
    assert_eq!(
        Snapshot::build(&off, 1).answer(&name, RecordType::A, ip("10.77.0.50"), true),
        Outcome::Refused
    );
    // Authoritative data is answered to anyone.
    assert_eq!(
        data(&ask(&s, "node1.maas.", RecordType::A, "192.0.2.1")),
        ["10.77.0.10"]
    );
}

#[test]
fn soa_serial_and_transfer() {
    let s = Snapshot::build(&inputs(), 41);
    let soa = ask(&s, "maas.", RecordType::SOA, "10.77.0.50");
    match &soa.answers[0].data {
        RData::SOA(soa) => assert_eq!(soa.serial, 41),
        other => panic!("not an SOA: {other:?}"),
    }
    let zone = s
        .transfer(&Name::from_ascii("maas.").expect("a name"))
        .expect("served");
    assert_eq!(zone.first().map(|r| r.record_type()), Some(RecordType::SOA));
    assert_eq!(zone.last().map(|r| r.record_type()), Some(RecordType::SOA));
    // 100 generated names, the controller, node1 (A, AAAA), eth1.node1, the IPv6 lease.
    let addresses = zone
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .count();
    assert_eq!(addresses, 100 + 1 + 2 + 1 + 1);
    assert!(
        s.transfer(&Name::from_ascii("nowhere.").expect("a name"))
            .is_none()
    );
    assert!(next_serial(41, 0) == 42);
    assert!(next_serial(41, 1_800_000_000) == 1_800_000_000);
    assert!(next_serial(u32::MAX, 5) == 5);
}

proptest! {
    /// Every address a host has resolves both ways: its name gives it back, and its reverse
    /// name (through RFC 2317 glue where there is some) gives its name.
    #[test]
    fn every_known_address_resolves_both_ways(
        hosts in proptest::collection::vec((0u8..=255, 0u8..=2, any::<u16>()), 1..20)
    ) {
        let mut input = inputs();
        input.hosts.truncate(1);
        let mut expected = Vec::new();
        for (i, (last, net, v6)) in hosts.iter().enumerate() {
            let address = match net {
                0 => format!("10.77.0.{last}"),
                1 => format!("10.77.1.{}", 64 + last % 64),
                _ => format!("fd77:0:0:1::{v6:x}"),
            };
            let a = ip(&address);
            if expected.iter().any(|(_, e)| *e == a) || a == ip("10.77.0.1") {
                continue;
            }
            let name = format!("host{i}");
            input.hosts.push(host(&name, "maas", &[("eth0", true, &[address.as_str()])]));
            expected.push((name, a));
        }
        let s = Snapshot::build(&input, 1);
        for (name, a) in &expected {
            let qtype = if a.is_ipv4() { RecordType::A } else { RecordType::AAAA };
            let forward = ask(&s, &format!("{name}.maas."), qtype, "10.77.0.5");
            prop_assert_eq!(data(&forward), vec![a.to_string()]);
            let reverse = ask(&s, &maas_net::dns::reverse_name(*a), RecordType::PTR, "10.77.0.5");
            let answers = data(&reverse);
            prop_assert_eq!(answers.last(), Some(&format!("{name}.maas.")), "{}", a);
        }
    }
}

/// The committed fuzz corpus of the request path (`fuzz/corpus/dns_request`): every input is
/// decoded or refused, and every decoded request is answered with a message that encodes and
/// decodes back the same.
#[test]
fn the_dns_fuzz_corpus_replays() {
    let s = Snapshot::build(&inputs(), 3);
    let mut answered = 0;
    let seen = crate::tests::replay_corpus("dns_request", |_, bytes| {
        let Ok(request) = Message::from_vec(bytes) else {
            return;
        };
        if let Some(query) = request.queries.first() {
            let _ = s.transfer(query.name());
        }
        if let Some(response) = s.respond(&request, ip("10.77.0.5")) {
            let again = Message::from_vec(&response.to_vec().expect("encodes")).expect("decodes");
            assert_eq!(again.answers.len(), response.answers.len());
            answered += 1;
        }
    });
    assert!(seen >= 10, "the corpus has {seen} inputs");
    assert!(answered >= 8, "{answered} of {seen} answered");
}

/// With `[dns]` on, DHCP names the controller's address first for subnets that allow DNS
/// (the one inside the subnet, else the first of the family), and not for the others.
#[test]
fn dhcp_names_the_controller_where_dns_is_allowed() {
    let text = r#"
[controller]
state_dir = "state"

[dns]
listen = ["127.0.0.1:0"]
addresses = ["10.77.0.1", "fd77::1"]

[[subnets]]
cidr = "10.77.0.0/24"
dns_servers = ["10.77.0.53"]

[[subnets]]
cidr = "10.77.1.0/24"

[[subnets]]
cidr = "fd77:0:0:1::/64"

[[subnets]]
cidr = "10.77.2.0/24"
allow_dns = false
"#;
    let config = crate::config::parse(text, std::path::Path::new("/srv")).expect("valid");
    let topology = super::dhcp_topology(&config);
    let servers = |cidr: &str| -> Vec<IpAddr> {
        let (_, s) = topology
            .subnets()
            .find(|(_, s)| s.cidr.to_string() == cidr)
            .expect("the subnet");
        s.dns_servers.clone()
    };
    assert_eq!(servers("10.77.0.0/24"), [ip("10.77.0.1"), ip("10.77.0.53")]);
    assert_eq!(servers("10.77.1.0/24"), [ip("10.77.0.1")]);
    assert_eq!(servers("fd77:0:0:1::/64"), [ip("fd77::1")]);
    assert!(servers("10.77.2.0/24").is_empty());
    // Without [dns], the file's servers only.
    let off = crate::config::parse(
        &text.replace("[dns]", "[dns]\nenabled = false"),
        std::path::Path::new("/srv"),
    )
    .expect("valid");
    let (_, s) = super::dhcp_topology(&off)
        .subnets()
        .find(|(_, s)| s.cidr.to_string() == "10.77.1.0/24")
        .map(|(id, s)| (id, s.clone()))
        .expect("the subnet");
    assert!(s.dns_servers.is_empty());
}

/// A machine's interfaces in the state become a host (boot interface under its name, the
/// other under `<interface>.<name>`, in its domain), and its rendered network configuration
/// names the controller's DNS where the subnet allows it, and not where it does not.
#[test]
fn a_machine_is_a_host_and_its_netconfig_names_the_controller() {
    let config = r#"
[controller]
state_dir = "state"

[dns]
listen = ["127.0.0.1:0"]
addresses = ["10.77.94.1"]

[[subnets]]
cidr = "10.77.94.0/24"

[[subnets]]
cidr = "10.77.95.0/24"
allow_dns = false

[[machines]]
mac = "52:54:00:77:94:01"
hostname = "deployed"
"#;
    let scratch = crate::tests::Scratch::new("dns-host");
    let app = crate::tests::app_from(config, &scratch.0);
    let mac: maas_net::Mac = "52:54:00:77:94:01".parse().expect("a MAC");
    let doc: maas_net::doc::MachineDoc = serde_json::from_value(serde_json::json!({
        "hostname": "deployed",
        "interfaces": [
            {"name": "eth0", "type": "physical", "mac": "52:54:00:77:94:01",
             "vlan": {"fabric": "fabric-0", "vid": 0},
             "links": [{"mode": "static", "subnet": "10.77.94.0/24", "ip": "10.77.94.20"}]},
            {"name": "eth1", "type": "physical", "mac": "52:54:00:77:94:02",
             "vlan": {"fabric": "fabric-0", "vid": 0},
             "links": [{"mode": "static", "subnet": "10.77.95.0/24", "ip": "10.77.95.20"}]}
        ]
    }))
    .expect("a machine document");
    let (machine, ticket) = app
        .state
        .set_network(mac, doc, crate::now())
        .expect("accepted");
    app.state.durable_blocking(ticket).expect("durable");
    let host = super::hosts::machine_host(&machine);
    assert_eq!(host.name, "deployed");
    assert_eq!(host.domain, "maas");
    let boot: Vec<(&str, bool, &[IpAddr])> = host
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.boot, i.addresses.as_slice()))
        .collect();
    assert_eq!(
        boot,
        [
            ("eth0", true, &[ip("10.77.94.20")][..]),
            ("eth1", false, &[ip("10.77.95.20")][..])
        ]
    );
    let section = app.config.dns.clone().expect("[dns]");
    let s = Snapshot::build(&super::hosts::gather(&app, &section), 1);
    assert_eq!(
        data(&ask(&s, "eth1.deployed.maas.", RecordType::A, "10.77.94.5")),
        ["10.77.95.20"]
    );
    let text = app
        .state
        .render_network(mac, &app.render_options(), maas_net::netplan::Format::V2)
        .expect("renders");
    // eth0's subnet allows DNS: the controller is its name server; eth1's does not.
    let eth1 = text.split("    eth1:").nth(1).expect("eth1 rendered");
    let eth0 = text.split("    eth1:").next().unwrap_or_default();
    assert!(
        eth0.contains("nameservers:\n        addresses:\n          - 10.77.94.1"),
        "{text}"
    );
    assert!(!eth1.contains("nameservers"), "{text}");
}

/// A device is a host in its domain, which must exist: its static address answers under its
/// name, forward and reverse, and its domain cannot be deleted while it is in it.
#[test]
fn a_device_is_named_in_its_domain() {
    let config = r#"
[controller]
state_dir = "state"

[dns]
listen = ["127.0.0.1:0"]
addresses = ["10.77.96.1"]

[[subnets]]
cidr = "10.77.96.0/24"
"#;
    let scratch = crate::tests::Scratch::new("dns-device");
    let app = crate::tests::app_from(config, &scratch.0);
    let new = |domain: &str| -> crate::state::NewDevice {
        serde_json::from_value(serde_json::json!({
            "name": "pdu1",
            "domain": domain,
            "interfaces": [{ "mac": "52:54:00:77:96:10", "ip_assignment": "static",
                             "ip": "10.77.96.10" }]
        }))
        .expect("a device")
    };
    let refused = app.state.create_device(new("lab"), "admin", crate::now());
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("does not exist")),
        "{refused:?}"
    );
    let domain: crate::state::Domain =
        serde_json::from_value(serde_json::json!({ "name": "lab" })).expect("a domain");
    let (_, ticket) = app.state.create_domain(domain).expect("created");
    app.state.durable_blocking(ticket).expect("durable");
    let (device, ticket) = app
        .state
        .create_device(new("Lab"), "admin", crate::now())
        .expect("created");
    app.state.durable_blocking(ticket).expect("durable");
    assert_eq!(device.domain, "lab");
    let in_use = app.state.delete_domain("lab");
    assert!(
        matches!(&in_use, Err(e) if e.to_string().contains("pdu1")),
        "{in_use:?}"
    );

    let section = app.config.dns.clone().expect("[dns]");
    let inputs = super::hosts::gather(&app, &section);
    let snapshot = Snapshot::build(&inputs, 1);
    let answer = ask(&snapshot, "pdu1.lab.", RecordType::A, "127.0.0.1");
    assert_eq!(data(&answer), ["10.77.96.10"], "{answer:?}");
    let answer = ask(
        &snapshot,
        "10.96.77.10.in-addr.arpa.",
        RecordType::PTR,
        "127.0.0.1",
    );
    assert_eq!(data(&answer), ["pdu1.lab."], "{answer:?}");
}
