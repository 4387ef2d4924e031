//! Integration tests of maas-pxe: one test binary, one module per area.
#![allow(clippy::unwrap_used)]

mod fuzz_corpus;
mod properties;
mod replies;
mod requests;
#[cfg(feature = "ipam")]
mod server4;
#[cfg(feature = "ipam")]
mod server4_boot;
#[cfg(feature = "ipam")]
mod server6;
#[cfg(feature = "ipam")]
mod server6_refusals;
#[cfg(feature = "ipam")]
mod server6_relays;
mod testdata;
mod tftp;
mod tftp_fuzz_corpus;
mod tftp_requests;
#[cfg(feature = "tokio")]
mod tftp_service;
mod tftp_sim;
mod tftp_upload;
mod tftp_windows;

use maas_net::{Subnet, VlanId};
use maas_pxe::dhcp::{BootClient, v4, v6};

/// The subnet the tests' machines boot on.
pub(crate) fn subnet() -> Subnet {
    Subnet {
        gateway_ip: Some("10.77.0.1".parse().unwrap()),
        dns_servers: vec!["10.77.0.2".parse().unwrap(), "fd77::2".parse().unwrap()],
        ..Subnet::new("10.77.0.0/24".parse().unwrap(), VlanId::new(0))
    }
}

/// What a DHCPv4 testdata request says.
pub(crate) fn client_v4(name: &str) -> BootClient {
    BootClient::from_v4(&v4::decode(&testdata::load(name)).unwrap())
}

/// What a DHCPv6 testdata request says.
pub(crate) fn client_v6(name: &str) -> BootClient {
    BootClient::from_v6(v6::decode(&testdata::load(name)).unwrap().message())
}
