//! Replays a fuzz corpus directory through a fuzz target's check, for the ordinary test suites
//! of the crates (each includes this file with `#[path]`), so that every input the fuzzers
//! found interesting is checked in CI without libFuzzer.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

/// Runs `check` on every file in `dir`; fails naming each input that panicked.
pub(crate) fn replay(dir: &str, check: fn(&[u8])) {
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
