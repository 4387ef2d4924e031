//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) under `cargo test`, so every
//! input the fuzz targets have found interesting is checked in ordinary CI, without libFuzzer.
//!
//! The checks are the fuzz targets' own: this file includes `fuzz/src/checks.rs`, which the
//! targets call. Each corpus directory must exist and hold at least one input.

#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/checks.rs"]
mod checks;

#[path = "../../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn mac_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/mac"),
        checks::check_mac,
    );
}

#[test]
fn boot_architecture_corpus() {
    replay(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/boot_architecture"
        ),
        checks::check_boot_architecture,
    );
}

#[test]
fn topology_toml_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/topology_toml"),
        checks::check_topology_toml,
    );
}

#[test]
fn topology_json_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/topology_json"),
        checks::check_topology_json,
    );
}

#[cfg(feature = "netplan")]
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/netconfig.rs"]
mod netconfig;

#[cfg(feature = "netplan")]
#[test]
fn net_machines_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/net_machines"),
        netconfig::check_net_machines,
    );
}
