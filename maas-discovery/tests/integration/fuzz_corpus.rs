//! Replays the committed fuzz corpora of `maas-discovery` (`fuzz/corpus/discovery_*`) under
//! `cargo test`, with the fuzz targets' own checks (`fuzz/src/discovery.rs`).

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/discovery.rs"]
mod checks;

#[path = "../../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn discovery_frame_corpus() {
    replay(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/discovery_frame"
        ),
        checks::check_discovery_frame,
    );
}

#[test]
fn discovery_mdns_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/discovery_mdns"),
        checks::check_discovery_mdns,
    );
}

#[test]
fn discovery_observer_corpus() {
    replay(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/discovery_observer"
        ),
        checks::check_discovery_observer,
    );
}
