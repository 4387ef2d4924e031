//! Integration tests of maas-net: one test binary, one module per area.
#![allow(clippy::unwrap_used)]

mod documents;
mod fuzz_corpus;
mod machines;
#[cfg(feature = "netplan")]
mod netconfig;
#[cfg(feature = "netplan")]
mod netconfig_properties;
mod properties;
mod rules;
mod rules_subnets;

use std::net::IpAddr;

use ipnet::IpNet;

/// Shorthand for parsing addresses and networks in tests.
pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(crate) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
