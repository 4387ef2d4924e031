//! The properties the `maas-proxy` fuzz target checks.
//!
//! `check_proxy_request` reads one byte of setup, then a raw request head: the low two bits of
//! the setup byte choose the client (an allowed address, loopback, an IPv4-mapped allowed
//! address, or a stranger). The fuzz target in `fuzz_targets/` calls it, and the integration
//! tests of `maas-proxy` include this file to replay the committed corpus under `cargo test`.

use std::net::IpAddr;

use maas_proxy::acl::{Acl, AclConfig, Kind};
use maas_proxy::request::{FramingScanner, HOP_BY_HOP, Limits, parse_and_check};

/// Parsing and checking never panics; a request that passes comes from an allowed client,
/// goes to an allowed port, carries no hop-by-hop field, no `X-Forwarded-For` and our `Via`;
/// the framing scanner never panics on the same bytes, however they are split.
pub fn check_proxy_request(data: &[u8]) {
    let Some((&setup, raw)) = data.split_first() else {
        return;
    };
    let allow = "10.77.180.0/24".parse().ok().into_iter().collect();
    let acl = Acl::new(&AclConfig {
        allow,
        ..AclConfig::default()
    });
    let client: IpAddr = match setup & 3 {
        0 => [10, 77, 180, 9].into(),
        1 => [127, 0, 0, 1].into(),
        2 => std::net::Ipv4Addr::new(10, 77, 180, 9)
            .to_ipv6_mapped()
            .into(),
        _ => [192, 0, 2, 1].into(),
    };
    let limits = Limits::default();
    if let Ok(Some(checked)) = parse_and_check(raw, &limits, &acl, client, "maas-proxy") {
        assert!(setup & 3 != 3, "a stranger's request passed");
        assert!(!checked.target.host.is_empty());
        match checked.target.kind {
            Kind::Connect => assert_eq!(checked.target.port, 443),
            Kind::Http => assert!(maas_proxy::acl::is_safe_port(checked.target.port)),
        }
        for name in HOP_BY_HOP {
            assert!(!checked.headers.contains_key(*name), "{name} forwarded");
        }
        assert!(!checked.headers.contains_key("x-forwarded-for"));
        let via = checked
            .headers
            .get_all("via")
            .iter()
            .next_back()
            .map(|v| v.as_bytes().to_vec());
        assert!(via.is_some_and(|v| v.ends_with(b"maas-proxy")));
        if let Ok(ip) = checked.target.host.parse::<IpAddr>() {
            assert!(acl.check_destination(ip).is_ok());
        }
    }
    let mut scanner = FramingScanner::new(&limits);
    let cut = usize::from(setup >> 2).min(raw.len());
    scanner.feed(&raw[..cut]);
    scanner.feed(&raw[cut..]);
    let _ = scanner.refusal(0);
}
