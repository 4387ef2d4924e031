//! Benchmarks of the DHCP answer path of `maas-pxe` for a typical PXE DISCOVER (UEFI x86-64,
//! as edk2 sends it) and a UEFI HTTP-boot SOLICIT: decoding, classification, building the
//! answer, encoding it, and the whole request-to-reply path.
//!
//! Run with `cargo bench -p maas-pxe --bench dhcp`; `-- --test` runs every bench once.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use maas_net::{Subnet, VlanId};
use maas_pxe::dhcp::{
    BootClient, BootConfig, LeaseTimes, NetworkOptions, Reply, ReplyOptions, build_boot_options,
    reply_to, v4, v6,
};
use maas_pxe::dhcproto::v4::{Message, MessageType};
use maas_pxe::dhcproto::v6 as dv6;

const DISCOVER: &[u8] = include_bytes!("../testdata/edk2-x64-pxe-discover.bin");
const SOLICIT: &[u8] = include_bytes!("../testdata/edk2-x64-http-solicit6.bin");
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);

/// What a server keeps for the subnet between requests.
struct Setup {
    config: BootConfig,
    subnet: Subnet,
    network: NetworkOptions,
    lease: LeaseTimes,
}

fn setup() -> Setup {
    let subnet = Subnet {
        gateway_ip: Some(IpAddr::V4(SERVER)),
        dns_servers: vec![IpAddr::V4(SERVER)],
        ..Subnet::new("10.77.0.0/24".parse().expect("a CIDR"), VlanId::new(0))
    };
    let mut network = NetworkOptions::for_subnet(&subnet, 1500);
    network
        .set_domain("maas")
        .expect("a valid domain")
        .set_search(["maas"])
        .expect("a valid domain");
    Setup {
        config: BootConfig::default(),
        subnet,
        network,
        lease: LeaseTimes::new(600),
    }
}

/// Classifies a decoded request and builds its OFFER.
fn answer(s: &Setup, request: &v4::Packet) -> Reply {
    let mut offer = reply_to(request, MessageType::Offer, SERVER);
    offer.set_yiaddr(Ipv4Addr::new(10, 77, 0, 100));
    fill(s, request, &mut offer);
    offer
}

/// Adds lease, network and boot options to a reply.
fn fill<R: ReplyOptions>(s: &Setup, request: &v4::Packet, reply: &mut R) {
    let classification = s.config.classify(BootClient::from_v4(request), &s.subnet);
    let requested = request.requested();
    s.lease.apply(reply);
    s.network.apply(reply, &requested);
    if let Some(boot) = build_boot_options(&classification, &s.config, IpAddr::V4(SERVER)) {
        boot.apply_v4(reply, &requested);
    }
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let request = v4::decode(DISCOVER).expect("the testdata decodes");
    let offer = answer(&s, &request);

    c.bench_function("v4/decode/edk2_pxe_discover", |b| {
        b.iter(|| v4::decode(black_box(DISCOVER)))
    });
    c.bench_function("v4/classify/edk2_pxe_discover", |b| {
        b.iter(|| {
            s.config
                .classify(BootClient::from_v4(black_box(&request)), &s.subnet)
        })
    });
    c.bench_function("v4/build_offer/edk2_pxe_discover", |b| {
        b.iter(|| answer(&s, black_box(&request)))
    });
    let mut out = Vec::with_capacity(576);
    c.bench_function("v4/encode/offer", |b| {
        b.iter(|| black_box(&offer).encode(&mut out))
    });
    c.bench_function("v4/request_to_reply/edk2_pxe_discover", |b| {
        b.iter(|| {
            let request = v4::decode(black_box(DISCOVER)).expect("decodes");
            let offer = answer(&s, &request);
            offer.encode(&mut out);
            out.len()
        })
    });

    // The same answer as a dhcproto message: typed options, slower.
    c.bench_function("v4/typed_message/edk2_pxe_discover", |b| {
        b.iter(|| {
            v4::decode(black_box(DISCOVER))
                .expect("decodes")
                .into_message()
        })
    });
    let message: Message = offer.to_packet().expect("decodes").into_message();
    c.bench_function("v4/encode_message/offer", |b| {
        b.iter(|| v4::encode(black_box(&message), &mut out))
    });
    c.bench_function("v4/request_to_reply_message/edk2_pxe_discover", |b| {
        b.iter(|| {
            let request = v4::decode(black_box(DISCOVER)).expect("decodes");
            let mut offer = Message::new_with_id(
                request.xid(),
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::new(10, 77, 0, 100),
                Ipv4Addr::UNSPECIFIED,
                request.giaddr(),
                request.chaddr(),
            );
            fill(&s, &request, &mut offer);
            v4::encode(&offer, &mut out).expect("encodes");
            out.len()
        })
    });

    c.bench_function("v6/request_to_reply/edk2_http_solicit", |b| {
        b.iter(|| {
            let request = v6::decode(black_box(SOLICIT)).expect("decodes");
            let message = request.message();
            let classification = s.config.classify(BootClient::from_v6(message), &s.subnet);
            let mut advertise =
                dv6::Message::new_with_id(dv6::MessageType::Advertise, message.xid());
            if let Some(boot) = build_boot_options(&classification, &s.config, IpAddr::V6(SERVER6))
            {
                for o in boot.v6_options() {
                    advertise.opts_mut().insert(o);
                }
            }
            v6::encode_message(&advertise, &mut out).expect("encodes");
            out.len()
        })
    });
}

criterion_group!(dhcp, benches);
criterion_main!(dhcp);
