#!/usr/bin/env bash
# DHCPv4 leases per second through the example controller, in its two shapes, and through the
# `dhcpd` example (the DHCP service alone), in one run:
#
#   all      one controller (--role all) serving DHCP from its own durable state
#   rack     a rack (--role rack) serving DHCP, each lease recorded by a region (--role region,
#            same machine, over loopback HTTP) before the rack acknowledges it
#   example  the `dhcpd` example with --state (durable), the baseline the controller's own
#            DHCP path is compared with
#
# perfdhcp (from kea-admin) acts as a relay in a client namespace (10.77.0.2/16); the
# controller serves 10.77.0.0/16 (pool 10.77.16.0-10.77.255.254) on a veth in a server
# namespace (10.77.0.1/16). For each shape, rates are raised until more than 2.5 % of the
# exchanges go unanswered; every rate starts on empty state. Reports the best leases/s under
# that bound and the shapes' ratios (the price of the region round trip; the controller's
# cost over the bare service), and the CPU time (user + system of every process of the shape)
# per lease at CPU_RATE.
#
# Needs root, iproute2 and kea-admin (scripts/setup.sh installs them). Environment: SHAPES,
# RATES, PERIOD (seconds per run), CPU_RATE, PERF (a directory: each run at CPU_RATE is also
# sampled with `perf record -g`, one file per shape and run, for `perf report -i`).
set -euo pipefail
cd "$(dirname "$0")/.."

SHAPES=(${SHAPES:-all rack example})
RATES=(${RATES:-250 500 1000 1500 2000 3000 4000 5000 6000 8000})
PERIOD=${PERIOD:-4}
CPU_RATE=${CPU_RATE:-4000}
MAX_UNANSWERED=2.5
CAP=50000

if [[ $(id -u) -ne 0 ]]; then
  echo "controller-roles: needs root (network namespaces)" >&2
  exit 1
fi
for tool in ip perfdhcp ss curl timeout; do
  command -v "$tool" >/dev/null || { echo "controller-roles: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done

SRV=crb-srv-$$
CLI=crb-cli-$$
DIR=$(mktemp -d -t controller-roles.XXXXXX)
PIDS=()

# shellcheck source=perfdhcp-link.sh
. benches/perfdhcp-link.sh

stop_all() {
  # The rack first, then the region it reports to.
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_process "${PIDS[i]}"
  done
  PIDS=()
}

cleanup() {
  stop_all
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

perfdhcp_link "$SRV" "$CLI"

cargo build --quiet --release -p maas-controller >&2
TARGET=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
CONTROLLER=$TARGET/release/maas-controller
DHCPD=$TARGET/release/examples/dhcpd
if [[ " ${SHAPES[*]} " == *" example "* ]]; then
  features=$(awk '/^\[\[example\]\]/ { ex = 0 } /^name *= *"dhcpd"/ { ex = 1 }
       ex && /^required-features/ { gsub(/.*\[|\].*|"| /, ""); print; exit }' Cargo.toml)
  cargo build --quiet --release --example dhcpd --features "$features" >&2
fi

MODEL='
[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.0.0/16"
gateway_ip = "10.77.0.1"

[[ip_ranges]]
subnet = "10.77.0.0/16"
start = "10.77.16.0"
end = "10.77.255.254"
kind = "dynamic"
'
SECRET=bench-rack-secret-0123456789

write_configs() {
  cat >"$DIR/all.toml" <<EOF
[controller]
state_dir = "$DIR/state-all"
api = "127.0.0.1:5240"
boot_http = "127.0.0.1:5248"
[power]
monitor_interval_secs = 0
[dhcp]
interfaces = ["vsrv"]
$MODEL
EOF
  cat >"$DIR/region.toml" <<EOF
[controller]
role = "region"
state_dir = "$DIR/state-region"
api = "127.0.0.1:5240"
boot_http = "127.0.0.1:5248"
[power]
monitor_interval_secs = 0
[cluster]
secret = "$SECRET"
[[cluster.racks]]
name = "bench"
vlans = [{ fabric = "fabric-0", vid = 0 }]
$MODEL
EOF
  cat >"$DIR/rack.toml" <<EOF
[controller]
role = "rack"
state_dir = "$DIR/state-rack"
api = "127.0.0.1:5250"
boot_http = "127.0.0.1:5249"
[dhcp]
interfaces = ["vsrv"]
[cluster]
region = "http://127.0.0.1:5240"
secret = "$SECRET"
name = "bench"
sync_secs = 3600
EOF
}

# Starts $2 (a config) as $1 (a log name) and waits until it logs "listening".
start() {
  ip netns exec "$SRV" "$CONTROLLER" --config "$2" >"$DIR/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do
    grep -q '"event":"listening"' "$DIR/$1.log" 2>/dev/null && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "controller-roles: $1 did not start:" >&2
  cat "$DIR/$1.log" >&2
  return 1
}

start_example() {
  ip netns exec "$SRV" "$DHCPD" --interface vsrv --subnet 10.77.0.0/16 \
    --range 10.77.16.0-10.77.255.254 --gateway 10.77.0.1 --state "$DIR/state-example" \
    >"$DIR/example.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do
    grep -q '"event":"listening"' "$DIR/example.log" 2>/dev/null && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "controller-roles: the dhcpd example did not start:" >&2
  cat "$DIR/example.log" >&2
  return 1
}

start_shape() {
  rm -rf "$DIR"/state-*
  case $1 in
    all) start all "$DIR/all.toml" ;;
    rack) start region "$DIR/region.toml" && start rack "$DIR/rack.toml" ;;
    example) start_example ;;
  esac
}

# CPU time (clock ticks, user + system) used so far by the shape's processes.
shape_ticks() {
  local pid total=0
  for pid in "${PIDS[@]}"; do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# One perfdhcp run at rate $1; prints "sent acks unanswered% leases/s".
measure() {
  local rate=$1 n out
  n=$((rate * PERIOD < CAP ? rate * PERIOD : CAP))
  out=$(timeout -k 5 $((PERIOD + 20)) ip netns exec "$CLI" \
    perfdhcp -4 -l vcli -r "$rate" -R 1000000 -n "$n" -p "$PERIOD" -W 300000 2>&1) || true
  awk -v rate="$rate" -v n="$n" -v period="$PERIOD" '
    /Statistics for: DISCOVER-OFFER/ { ex = "do" } /Statistics for: REQUEST-ACK/ { ex = "ra" }
    /^sent packets:/ { sent[ex] = $3 } /^received packets:/ { recv[ex] = $3 }
    END {
      if (sent["do"] == 0) { print "0 0 100.00 0"; exit }
      secs = sent["do"] >= n ? n / rate : period
      printf "%d %d %.2f %.0f\n", sent["do"], recv["ra"], 100 * (1 - recv["ra"] / sent["do"]), recv["ra"] / secs
    }' <<<"$out"
}

write_configs
# A shape named more than once (alternating runs) keeps its best rate and its mean CPU.
declare -A BEST BEST_RATE CPU CPU_N
UNIQUE=()
for shape in "${SHAPES[@]}"; do
  [[ " ${UNIQUE[*]} " == *" $shape "* ]] || UNIQUE+=("$shape")
done
printf '%-7s %7s %8s %8s %12s %10s %13s\n' shape rate sent acks unanswered% leases/s cpu-us/lease
for shape in "${SHAPES[@]}"; do
  : "${BEST[$shape]:=0}"
  for rate in "${RATES[@]}"; do
    start_shape "$shape"
    perf_pid=
    if [[ -n ${PERF:-} && $rate == "$CPU_RATE" ]]; then
      mkdir -p "$PERF"
      runs=$(find "$PERF" -name "$shape-*.data" | wc -l)
      perf record -q -g -F 1999 -p "$(IFS=,; echo "${PIDS[*]}")" \
        -o "$PERF/$shape-$((runs + 1)).data" >/dev/null 2>&1 &
      perf_pid=$!
    fi
    before=$(shape_ticks)
    read -r sent acks lost leases < <(measure "$rate")
    after=$(shape_ticks)
    if [[ -n $perf_pid ]]; then
      kill -INT "$perf_pid" 2>/dev/null || true
      wait "$perf_pid" 2>/dev/null || true
    fi
    stop_all
    cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$acks" \
      'BEGIN { printf "%.1f", (n > 0 ? 1e6 * t / hz / n : 0) }')
    if ((rate == CPU_RATE)); then
      CPU[$shape]=$(awk -v a="${CPU[$shape]:-0}" -v b="$cpu" -v k="${CPU_N[$shape]:-0}" \
        'BEGIN { printf "%.1f", (a * k + b) / (k + 1) }')
      CPU_N[$shape]=$((${CPU_N[$shape]:-0} + 1))
    fi
    printf '%-7s %7d %8d %8d %12s %10d %13s\n' "$shape" "$rate" "$sent" "$acks" "$lost" "$leases" "$cpu"
    if awk -v l="$lost" -v m="$MAX_UNANSWERED" 'BEGIN { exit !(l <= m) }'; then
      if ((leases > BEST[$shape])); then
        BEST[$shape]=$leases
        BEST_RATE[$shape]=$rate
      fi
    else
      break
    fi
  done
done
echo
echo "best leases/s with at most ${MAX_UNANSWERED} % unanswered (${PERIOD} s runs, $(nproc) cores shared with perfdhcp):"
for shape in "${UNIQUE[@]}"; do
  printf '  %-7s %8d  (at %s/s)\n' "$shape" "${BEST[$shape]}" "${BEST_RATE[$shape]:--}"
done
if [[ -n ${BEST[all]:-} && -n ${BEST[rack]:-} && ${BEST[all]} -gt 0 ]]; then
  awk -v r="${BEST[rack]}" -v a="${BEST[all]}" 'BEGIN { printf "  rack / all: %.2f\n", r / a }'
fi
if [[ -n ${BEST[all]:-} && -n ${BEST[example]:-} && ${BEST[example]} -gt 0 ]]; then
  awk -v a="${BEST[all]}" -v e="${BEST[example]}" 'BEGIN { printf "  all / example: %.2f\n", a / e }'
fi
echo "CPU time per lease at $CPU_RATE/s (every process of the shape; mean of its runs):"
for shape in "${UNIQUE[@]}"; do
  printf '  %-7s %8s us\n' "$shape" "${CPU[$shape]:--}"
done
if [[ -n ${CPU[all]:-} && -n ${CPU[example]:-} ]]; then
  awk -v a="${CPU[all]}" -v e="${CPU[example]}" 'BEGIN { if (e > 0) printf "  all / example CPU per lease: %.2f\n", a / e }'
fi
