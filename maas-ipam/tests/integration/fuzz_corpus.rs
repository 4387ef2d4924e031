//! Replays the committed fuzz corpora of the address manager (`fuzz/corpus/ipam_ops/`,
//! `fuzz/corpus/ipam_snapshot/` and, with the `redb` feature, `fuzz/corpus/ipam_journal/`) under `cargo test`, so every input the fuzz targets have found
//! interesting is checked in ordinary CI, without libFuzzer.
//!
//! The checks are the fuzz targets' own: this file includes `fuzz/src/ipam.rs`, which the
//! targets call. Each corpus directory must exist and hold at least one input.

#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/ipam.rs"]
mod checks;

#[path = "../../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn ipam_ops_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/ipam_ops"),
        checks::check_ipam_ops,
    );
}

#[test]
fn ipam_snapshot_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/ipam_snapshot"),
        checks::check_ipam_snapshot,
    );
}

#[cfg(feature = "redb")]
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/journal.rs"]
mod journal_checks;

#[cfg(feature = "redb")]
#[test]
fn ipam_journal_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/ipam_journal"),
        journal_checks::check_ipam_journal,
    );
}
