#!/usr/bin/env bash
# Runs every check of maas-rs, as CI does: formatting, lints, tests of every crate with all
# features and with none, doc tests, documentation, the fuzz targets' build, the benches in
# test mode and the README's main command.
set -euo pipefail
cd "$(dirname "$0")/.."

START=$SECONDS
step() { printf '\n==> %s (at %d s)\n' "$*" $((SECONDS - START)); }

step "setup"
scripts/setup.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if [ "${CI:-}" = true ]; then
  # A fresh build with full debug information and incremental caches takes tens of GiB over
  # the passes below; CI machines' disks vary. Line tables keep backtraces readable.
  export CARGO_INCREMENTAL=0
  export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
  export CARGO_PROFILE_TEST_DEBUG="${CARGO_PROFILE_TEST_DEBUG:-line-tables-only}"
fi
df -h . | tail -n 1
# A full run builds about 8 GiB here (debug and release targets); a disk that fills midway
# fails a build with "No space left on device", far from the cause: say so up front.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $((10 * 1024 * 1024)) ]; then
  echo "warning: $((free_kib / 1024)) MiB free here; a full run needs about 8 GiB" >&2
fi

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check

step "cargo clippy (all targets, all features, warnings denied)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "example binaries (the peer tests run them)"
# cargo test builds an example with `test = true` as a test only, not as the program the peer
# tests start, so build them all first. (The controller is a binary of its own package: its
# tests find it through CARGO_BIN_EXE.)
cargo build --workspace --all-features --examples

step "tests with all features (unit, integration, doc tests)"
cargo test --workspace --all-features

step "the controller's unit tests on PostgreSQL (the same suite, a database per state directory)"
MAAS_TEST_STORE=postgres cargo test -p maas-controller --lib

step "tests with no default features, crate by crate"
for manifest in Cargo.toml maas-*/Cargo.toml; do
  # The root package's integration tests are the peer tests (QEMU machines among them), which
  # ran above and do not depend on its features: its library is what this pass checks.
  only=()
  [[ $manifest == Cargo.toml ]] && only=(--lib)
  cargo test --manifest-path "$manifest" --no-default-features "${only[@]}"
done

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

step "fuzz targets build"
cargo check --manifest-path fuzz/Cargo.toml --bins

step "benches in test mode (each benchmark run once, unoptimised: it works, not how fast)"
# `cargo test --benches` runs criterion's benches in its test mode with the test profile the
# steps above built, where `cargo bench -- --test` would build the workspace optimised again.
cargo test --workspace --all-features --benches

step "main command: cargo run --release -p maas-controller"
# The controller serves until stopped: start it, wait (bounded) for its API, query it, stop it.
cargo build --release -p maas-controller
controller=target/release/maas-controller
"$controller" --check
log=$(mktemp)
"$controller" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  curl -fsS --max-time 2 http://127.0.0.1:5240/api/v1/version >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
# Every other call needs a token: the first start wrote admin's next to the store.
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:5240/api/v1/machines)
[ "$code" = 401 ] || { echo "the API answered $code without a token, expected 401"; cat "$log"; exit 1; }
MAAS_TOKEN=$(cat target/controller-state/admin-token)
export MAAS_TOKEN
curl -fsS --max-time 5 -H "Authorization: Bearer $MAAS_TOKEN" http://127.0.0.1:5240/api/v1/subnets
echo
curl -fsS --max-time 5 -H "Authorization: Bearer $MAAS_TOKEN" http://127.0.0.1:5240/api/v1/machines
echo
"$controller" cli zones
# The proxy listens, and refuses to reach the controller's own API.
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -x http://127.0.0.1:8000 \
  http://127.0.0.1:5240/api/v1/version)
[ "$code" = 403 ] || { echo "the proxy answered $code, expected 403"; cat "$log"; exit 1; }
# The DNS answers for the controller itself.
answer=$(dig @127.0.0.1 -p 5053 +short +time=2 +tries=2 maas-controller.maas A)
[ "$answer" = 127.0.0.1 ] || { echo "DNS answered '$answer' for maas-controller.maas"; cat "$log"; exit 1; }
# The web dashboard's page, and a session for the admin's token.
curl -fsS --max-time 5 http://127.0.0.1:5240/ | grep -q '<title>maas-rs</title>' ||
  { echo "the dashboard page is not served"; cat "$log"; exit 1; }
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d "{\"token\":\"$MAAS_TOKEN\"}" http://127.0.0.1:5240/api/v1/session)
[ "$code" = 201 ] || { echo "logging in to the dashboard answered $code"; cat "$log"; exit 1; }
kill -TERM "$pid"
wait "$pid"
cat "$log"
trap - EXIT
rm -f "$log"
cargo run --release --example topology -- examples/topology.toml
cargo run --release --example netconfig -- examples/machines.toml --machine node1 --dns 10.77.1.2

printf '\nall checks passed\n'
