//! What the maas-ipam benches share: a fixed clock, a scratch directory, the topology and the
//! records they commit, and criterion's settings.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;
use maas_ipam::{AddressKind, Lease, LeaseState, Record, RedbStore, Timestamp};
use maas_net::{ClientKey, IpRange, IpRangeKind, Mac, Subnet, SubnetId, Topology};

/// The engine's clock, fixed: the leases never expire during a run.
pub(crate) const NOW: Timestamp = Timestamp(1_700_000_000);

/// A directory of its own, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let base =
            std::env::var_os("MAAS_IPAM_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = base.join(format!(
            "maas-ipam-bench-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the bench directory");
        Self(dir)
    }

    pub(crate) fn store(&self) -> RedbStore {
        RedbStore::open(self.0.join("ipam.redb")).expect("open the store")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 10.0.0.0/8 with a dynamic range over nearly all of it: room for every lease of a run.
pub(crate) fn topology() -> (Topology, SubnetId) {
    let mut topo = Topology::new();
    let vlan = topo
        .default_vlan(Topology::DEFAULT_FABRIC)
        .expect("the default fabric has its untagged VLAN");
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: Some("10.0.0.1".parse().expect("an address")),
            ..Subnet::new("10.0.0.0/8".parse().expect("a CIDR"), vlan)
        })
        .expect("an empty topology takes the subnet");
    topo.create_ip_range(IpRange::new(
        subnet,
        "10.0.1.0".parse().expect("an address"),
        "10.255.255.254".parse().expect("an address"),
        IpRangeKind::Dynamic,
    ))
    .expect("the range fits the subnet");
    (topo, subnet)
}

/// A new DHCP record for the `n`th address of 10.0.0.0/8.
pub(crate) fn record(n: u32) -> Record {
    let client = ClientKey::Mac(Mac::from([0x02, 0, 0, 0, 0, 0]));
    Record {
        ip: IpAddr::from((0x0a00_0000 | (n & 0x00ff_ffff)).to_be_bytes()),
        subnet: SubnetId::new(0),
        kind: AddressKind::Dhcp,
        mac: Some(Mac::from([0x02, 0, 0, 0, 0, 0])),
        owner: None,
        lease: Some(Lease {
            client,
            state: LeaseState::Bound,
            expires: NOW.plus(86_400),
        }),
        created: NOW,
        updated: NOW,
    }
}

/// Short runs: the figures are medians of ten samples.
pub(crate) fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
}
