//! The controller's DNS request path: any bytes are decoded as a request or refused, never a
//! panic; a decoded request is answered from a snapshot (or handed to the forwarders), and
//! the answer encodes, decodes back the same, and is authoritative exactly when it is not
//! refused.

#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use hickory_proto::op::{Message, ResponseCode};
use libfuzzer_sys::fuzz_target;

#[path = "../../examples/controller/src/dns/zone.rs"]
#[allow(dead_code, unreachable_pub)]
mod zone;

use zone::{DomainInput, Host, HostInterface, Inputs, Snapshot, SubnetInput};

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let net = |s: &str| s.parse().expect("a network");
        let ip = |s: &str| -> IpAddr { s.parse().expect("an address") };
        let subnet = |cidr: &str, mode, dynamic: Vec<(IpAddr, IpAddr)>| SubnetInput {
            cidr: net(cidr),
            allow_dns: true,
            rdns_mode: mode,
            dynamic,
        };
        let inputs = Inputs {
            hosts: vec![Host {
                name: "node1".into(),
                domain: "maas".into(),
                interfaces: vec![
                    HostInterface {
                        name: "eth0".into(),
                        boot: true,
                        addresses: vec![ip("10.77.0.10"), ip("fd77:0:0:1::10")],
                    },
                    HostInterface {
                        name: "eth1".into(),
                        boot: false,
                        addresses: vec![ip("10.77.1.70")],
                    },
                ],
            }],
            domains: vec![DomainInput {
                name: "maas".into(),
                authoritative: true,
                ttl: None,
            }],
            default_domain: "maas".into(),
            subnets: vec![
                subnet(
                    "10.77.0.0/24",
                    maas_net::RdnsMode::Enabled,
                    vec![(ip("10.77.0.100"), ip("10.77.0.199"))],
                ),
                subnet("10.77.1.64/26", maas_net::RdnsMode::Rfc2317, Vec::new()),
                subnet("fd77:0:0:1::/64", maas_net::RdnsMode::Enabled, Vec::new()),
            ],
            leases: vec![ip("fd77:0:0:1::105")],
            ns_name: "maas-controller".into(),
            default_ttl: 30,
            forwarding: true,
        };
        Snapshot::build(&inputs, 1)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = Message::from_vec(data) else {
        return;
    };
    let client: IpAddr = if data.len() % 2 == 0 {
        "10.77.0.5".parse().expect("an address")
    } else {
        "192.0.2.1".parse().expect("an address")
    };
    if let Some(query) = request.queries.first() {
        let _ = snapshot().transfer(query.name());
    }
    let Some(response) = snapshot().respond(&request, client) else {
        return;
    };
    let refused = response.metadata.response_code == ResponseCode::Refused;
    if !request.queries.is_empty() && request.metadata.op_code == hickory_proto::op::OpCode::Query {
        assert_eq!(response.metadata.authoritative, !refused);
    }
    let Ok(bytes) = response.to_vec() else {
        return;
    };
    let again = Message::from_vec(&bytes).expect("our own answer decodes");
    assert_eq!(again.answers.len(), response.answers.len());
    assert_eq!(
        again.metadata.response_code,
        response.metadata.response_code
    );
});
