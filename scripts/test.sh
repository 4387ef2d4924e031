#!/usr/bin/env bash
# Runs every check of maas-rs, as CI does: formatting, lints, tests of every crate with all
# features and with none, doc tests, documentation, the fuzz targets' build, the benches in
# test mode and the README's main command.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "setup"
scripts/setup.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check

step "cargo clippy (all targets, all features, warnings denied)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests with all features (unit, integration, doc tests)"
cargo test --workspace --all-features

step "tests with no default features, crate by crate"
for manifest in Cargo.toml maas-*/Cargo.toml; do
  cargo test --manifest-path "$manifest" --no-default-features
done

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

step "fuzz targets build"
cargo check --manifest-path fuzz/Cargo.toml --bins

step "benches in test mode"
cargo bench --workspace --all-features -- --test

step "main command: cargo run --release --example topology"
cargo run --release --example topology -- examples/topology.toml

printf '\nall checks passed\n'
