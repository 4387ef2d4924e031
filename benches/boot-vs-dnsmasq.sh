#!/usr/bin/env bash
# The time a network-booting machine takes to fetch the ephemeral environment's kernel and
# initrd, side by side in one run: the controller (its DHCP, then its boot HTTP or its TFTP)
# against dnsmasq (DHCP and TFTP) with a plain HTTP server (python3's http.server) serving the
# same files, to the same QEMU machine (BIOS, QEMU's iPXE ROM on an e1000, TCG).
#
# Each round boots the machine with an iPXE script that prints a marker, fetches the kernel
# and the initrd, prints a second marker and boots the kernel, which powers the machine off
# (maas_action=poweroff). The script polls the serial console every 10 ms and reports the time
# between the markers (the fetch), and from QEMU's start to the first marker (DHCP and the
# script). Then, unless COMMISSION=0, it runs the commissioning test for the BIOS machine and
# reports its power-on to Ready time.
#
# Needs root, qemu-system-x86_64, ipxe-qemu, dnsmasq, python3 (scripts/setup.sh installs them)
# and the ephemeral environment (built with scripts/build-ephemeral.sh into
# target/ephemeral-test if absent). Environment: REPEAT (rounds per server, default 3),
# COMMISSION (1).
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT=${REPEAT:-3}
COMMISSION=${COMMISSION:-1}
N=160
NS=bvd-$$
DIR=$(mktemp -d -t boot-vs-dnsmasq.XXXXXX)
MAC=52:54:00:77:a0:10
PIDS=()

if [[ $(id -u) -ne 0 ]]; then
  echo "boot-vs-dnsmasq: needs root (network namespaces)" >&2
  exit 1
fi
for tool in ip qemu-system-x86_64 dnsmasq python3 curl; do
  command -v "$tool" >/dev/null || { echo "boot-vs-dnsmasq: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  stop_all
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

IMAGE=target/ephemeral-test
[[ -f $IMAGE/manifest.json ]] || bash scripts/build-ephemeral.sh "$IMAGE" >&2
cargo build --quiet --release -p maas-controller >&2
CONTROLLER=target/release/maas-controller

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge
ip -n "$NS" addr add 10.77.$N.1/24 dev br0
ip -n "$NS" link set br0 up
ip -n "$NS" tuntap add dev tap0 mode tap
ip -n "$NS" link set tap0 master br0
ip -n "$NS" link set tap0 up

# The same files for every server: the kernel and the initrd under resources/..., and a script.
WEB=$DIR/web
KEY=resources/ephemeral/amd64/bookworm
mkdir -p "$WEB/$KEY"
cp "$IMAGE/vmlinuz" "$IMAGE/initrd.img" "$WEB/$KEY/"
script() { # $1: URL base of the files
  printf '#!ipxe\necho BENCH-FETCH-START\nkernel %s/%s/vmlinuz initrd=initrd.img console=ttyS0 maas_action=poweroff\ninitrd %s/%s/initrd.img\necho BENCH-FETCH-DONE\nboot\n' \
    "$1" "$KEY" "$1" "$KEY"
}

# One boot; prints "dhcp+script fetch" seconds.
boot_once() {
  local serial=$DIR/serial start t1= t2= now pid
  rm -f "$serial"
  start=$(date +%s.%N)
  ip netns exec "$NS" timeout 300 qemu-system-x86_64 -accel tcg -display none -monitor none \
    -serial "file:$serial" -m 512 -machine pc,graphics=off -boot n \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device "e1000,netdev=n0,mac=$MAC" &
  pid=$!
  for _ in $(seq 30000); do
    now=$(date +%s.%N)
    if [[ -z $t1 ]] && grep -q BENCH-FETCH-START "$serial" 2>/dev/null; then t1=$now; fi
    if [[ -n $t1 ]] && grep -q BENCH-FETCH-DONE "$serial" 2>/dev/null; then t2=$now; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [[ -z $t2 ]]; then
    echo "boot-vs-dnsmasq: the machine did not fetch its files:" >&2
    cat "$serial" >&2
    return 1
  fi
  awk -v s="$start" -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f %.2f\n", a - s, b - a }'
}

start_ours() { # $1: http or tftp
  local base state=$DIR/state-$1
  rm -rf "$state"
  if [[ $1 == http ]]; then base='http://{server}'; else base="tftp://10.77.$N.1"; fi
  cat >"$DIR/ours.toml" <<EOT
[controller]
state_dir = "$state"
api = "127.0.0.1:5240"
boot_http = "10.77.$N.1:5248"
tftp = "10.77.$N.1:69"
ipxe_script = """
$(script "$base")
"""
[power]
monitor_interval_secs = 0
[dhcp]
interfaces = ["br0"]
[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true
[[subnets]]
cidr = "10.77.$N.0/24"
gateway_ip = "10.77.$N.1"
[[ip_ranges]]
subnet = "10.77.$N.0/24"
start = "10.77.$N.100"
end = "10.77.$N.199"
kind = "dynamic"
EOT
  "$CONTROLLER" --config "$DIR/ours.toml" boot-resource import "$IMAGE" >/dev/null
  ip netns exec "$NS" "$CONTROLLER" --config "$DIR/ours.toml" >"$DIR/ours.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do
    grep -q '"event":"listening"' "$DIR/ours.log" && return 0
    sleep 0.05
  done
  cat "$DIR/ours.log" >&2
  return 1
}

start_peer() { # $1: http or tftp
  local base
  if [[ $1 == http ]]; then base="http://10.77.$N.1:8080"; else base="tftp://10.77.$N.1"; fi
  script "$base" >"$WEB/boot.ipxe"
  cat >"$DIR/dnsmasq.conf" <<EOT
port=0
interface=br0
bind-interfaces
dhcp-range=10.77.$N.100,10.77.$N.199,255.255.255.0,1h
dhcp-leasefile=$DIR/dnsmasq.leases
dhcp-match=set:ipxe,175
dhcp-boot=tag:ipxe,http://10.77.$N.1:8080/boot.ipxe
enable-tftp
tftp-root=$WEB
user=root
EOT
  rm -f "$DIR/dnsmasq.leases"
  ip netns exec "$NS" dnsmasq -k -C "$DIR/dnsmasq.conf" >"$DIR/dnsmasq.log" 2>&1 &
  PIDS+=($!)
  ip netns exec "$NS" python3 -m http.server 8080 --bind "10.77.$N.1" --directory "$WEB" \
    >"$DIR/http.log" 2>&1 &
  PIDS+=($!)
  sleep 1
}

echo "load before: $(cat /proc/loadavg)"
declare -A RESULTS
for round in $(seq "$REPEAT"); do
  for server in ours:http peer:http ours:tftp peer:tftp; do
    side=${server%%:*}
    proto=${server##*:}
    if [[ $side == ours ]]; then start_ours "$proto"; else start_peer "$proto"; fi
    result=$(boot_once)
    stop_all
    echo "round $round  $server  start-to-script ${result% *} s  fetch ${result#* } s"
    RESULTS[$server]+="${result#* } "
  done
done
echo "load after: $(cat /proc/loadavg)"

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo
echo "kernel + initrd fetch, median of $REPEAT ($(du -ch "$IMAGE/vmlinuz" "$IMAGE/initrd.img" | tail -1 | cut -f1)):"
for server in ours:http peer:http ours:tftp peer:tftp; do
  printf '  %-10s %6s s\n' "$server" "$(median <<<"${RESULTS[$server]}")"
done
for proto in http tftp; do
  awk -v a="$(median <<<"${RESULTS[ours:$proto]}")" -v b="$(median <<<"${RESULTS[peer:$proto]}")" -v p="$proto" \
    'BEGIN { if (a > 0) printf "  peer / ours over %s: %.2fx\n", p, b / a }'
done

if [[ $COMMISSION == 1 ]]; then
  echo
  echo "power-on to Ready (the commissioning test, BIOS machine):"
  cargo test --quiet -p maas-controller --test commissioning -- --nocapture --exact \
    a_bios_machine_is_powered_on_commissioned_and_ends_ready_and_off 2>&1 |
    grep -E 'power-on to Ready|test result' || true
fi
