//! Helpers for the tests that run real peers in network namespaces.
//!
//! Each test binary includes this module and uses part of it.
#![allow(dead_code)]

pub(crate) mod dhcp;
pub(crate) mod discovery;
pub(crate) mod netns;
pub(crate) mod power;
pub(crate) mod proxy;
pub(crate) mod qemu;

use std::path::{Path, PathBuf};

/// Whether this process runs as root (needed for namespaces, veth, bridges and taps).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Finds `tool` on `PATH` or in the system directories root's `PATH` usually adds.
pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Whether `test` can run: root, and every tool present. Prints why not, so a skipped test is
/// visible with `--nocapture` (CI installs the tools with scripts/setup.sh and runs as root).
pub(crate) fn can_run(test: &str, tools: &[&str]) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root (network namespaces)");
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "skipping {test}: missing {} (run scripts/setup.sh)",
            missing.join(", ")
        );
        return false;
    }
    true
}

/// A file that must exist, with a clear message when it does not.
pub(crate) fn existing(path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    assert!(path.exists(), "{} not found", path.display());
    path.to_path_buf()
}

/// The example program `name` of the `maas` package, built next to the test binaries
/// (`cargo test` builds examples only as tests when they have unit tests, so
/// scripts/test.sh builds them first; by hand: `cargo build --examples --all-features`).
pub(crate) fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <profile>/deps");
    existing(profile_dir.join("examples").join(name))
}
