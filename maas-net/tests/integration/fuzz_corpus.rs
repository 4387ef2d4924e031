//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) under `cargo test`, so every
//! input the fuzz targets have found interesting is checked in ordinary CI, without libFuzzer.
//!
//! The checks are the fuzz targets' own: this file includes `fuzz/src/checks.rs`, which the
//! targets call. Each corpus directory must exist and hold at least one input.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/checks.rs"]
mod checks;

/// Runs `check` on every file in `dir`; fails naming each input that panicked.
fn replay(dir: &str, check: fn(&[u8])) {
    let dir = Path::new(dir);
    assert!(dir.is_dir(), "fuzz corpus {} is missing", dir.display());
    let mut inputs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "fuzz corpus {} holds no inputs",
        dir.display()
    );
    let failed: Vec<String> = inputs
        .iter()
        .filter(|path| {
            let data =
                fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed (panic messages above):\n  {}",
        failed.len(),
        inputs.len(),
        failed.join("\n  ")
    );
}

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
