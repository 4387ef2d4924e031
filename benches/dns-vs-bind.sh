#!/usr/bin/env bash
# Authoritative DNS throughput, side by side: the controller's DNS server against BIND 9
# serving the same zones, one after the other in the same run, on loopback, measured by
# dnsperf the same way.
#
# The zones are what MAAS serves for a dynamic range: the controller gets a /16 subnet with a
# dynamic range 10.77.1.0-10.77.4.255, so its `maas` zone answers 10-77-X-Y.maas and its
# reverse zone 77.10.in-addr.arpa the PTRs (generated names); BIND gets the same two zones
# written with MAAS's own $GENERATE lines. The query file asks for 2,000 names, half A and
# half PTR, every answer positive (checked with dig on both servers before measuring).
#
# Both servers use their defaults for threads (one per core) on the same 2 cores as dnsperf.
# Needs: named dnsperf dig (scripts/setup.sh installs them). Environment: DURATION (seconds
# per dnsperf run, default 10), CLIENTS (dnsperf -c, default 8), CONTROLLER_BIN (a controller
# binary to measure instead of building it in release mode).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
MAAS_PORT=15353
BIND_PORT=15354

for tool in named dnsperf dig; do
  command -v "$tool" >/dev/null || { echo "dns-vs-bind: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done

DIR=$(mktemp -d -t dns-vs-bind.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

if [[ -n ${CONTROLLER_BIN:-} ]]; then
  BIN=$CONTROLLER_BIN
else
  echo "building the controller (release)..."
  cargo build -q --release -p maas-controller
  BIN=${CARGO_TARGET_DIR:-target}/release/maas-controller
fi

# The controller: the subnet, its dynamic range, DNS on loopback.
cat >"$DIR/controller.toml" <<TOML
[controller]
state_dir = "$DIR/state"
api = "127.0.0.1:0"
boot_http = "127.0.0.1:0"

[dns]
listen = ["127.0.0.1:$MAAS_PORT"]
addresses = ["127.0.0.1"]

[[subnets]]
cidr = "10.77.0.0/16"

[[ip_ranges]]
subnet = "10.77.0.0/16"
start = "10.77.1.0"
end = "10.77.4.255"
kind = "dynamic"
TOML

# BIND: the same zones, as MAAS writes them.
mkdir -p "$DIR/named"
{
  echo "\$TTL 30"
  echo "@ IN SOA maas-controller.maas. nobody.maas. 1 600 1800 604800 30"
  echo "@ IN NS maas-controller.maas."
  echo "maas-controller IN A 127.0.0.1"
  for c in 1 2 3 4; do echo "\$GENERATE 0-255 10-77-$c-\$ IN A 10.77.$c.\$"; done
} >"$DIR/named/maas.zone"
{
  echo "\$TTL 30"
  echo "@ IN SOA maas-controller.maas. nobody.maas. 1 600 1800 604800 30"
  echo "@ IN NS maas-controller.maas."
  for c in 1 2 3 4; do echo "\$GENERATE 0-255 \$.$c IN PTR 10-77-$c-\$.maas."; done
} >"$DIR/named/rev.zone"
cat >"$DIR/named/named.conf" <<CONF
options {
  directory "$DIR/named";
  pid-file "$DIR/named/named.pid";
  listen-on port $BIND_PORT { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
};
zone "maas" { type master; file "$DIR/named/maas.zone"; };
zone "77.10.in-addr.arpa" { type master; file "$DIR/named/rev.zone"; };
CONF
named-checkconf "$DIR/named/named.conf"

# 2,000 queries: 1,000 names over the four /24s, A and PTR.
for i in $(seq 0 999); do
  c=$((1 + i % 4)); d=$(((i * 7) % 256))
  echo "10-77-$c-$d.maas A"
  echo "$d.$c.77.10.in-addr.arpa PTR"
done >"$DIR/queries"

"$BIN" --config "$DIR/controller.toml" >"$DIR/controller.log" 2>&1 &
PIDS+=($!)
named -g -u root -c "$DIR/named/named.conf" >"$DIR/named.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  if dig +short +time=1 +tries=1 -p "$MAAS_PORT" @127.0.0.1 10-77-1-1.maas A 2>/dev/null | grep -q 10.77.1.1 &&
    dig +short +time=1 +tries=1 -p "$BIND_PORT" @127.0.0.1 10-77-1-1.maas A 2>/dev/null | grep -q 10.77.1.1; then
    break
  fi
  sleep 0.2
done
for port in "$MAAS_PORT" "$BIND_PORT"; do
  a=$(dig +short -p "$port" @127.0.0.1 10-77-3-200.maas A)
  p=$(dig +short -p "$port" @127.0.0.1 -x 10.77.3.200)
  if [[ $a != 10.77.3.200 || $p != 10-77-3-200.maas. ]]; then
    echo "dns-vs-bind: port $port answers '$a' and '$p'" >&2
    tail -20 "$DIR/controller.log" "$DIR/named.log" >&2
    exit 1
  fi
done

run() {
  dnsperf -s 127.0.0.1 -p "$1" -d "$DIR/queries" -l "$DURATION" -c "$CLIENTS" -T 1 -q 100 2>&1
}
echo "load before: $(uptime)"
maas_out=$(run "$MAAS_PORT")
bind_out=$(run "$BIND_PORT")
echo "load after: $(uptime)"
qps() { awk '/Queries per second/ { print $4 }' <<<"$1"; }
lost() { awk '/Queries lost/ { print $3 " " $4 }' <<<"$1"; }
noerror() { awk '/Response codes/ { print $4 " " $5 }' <<<"$1"; }
MAAS_QPS=$(qps "$maas_out")
BIND_QPS=$(qps "$bind_out")
printf '%-12s %12s %16s %18s\n' server "queries/s" lost NOERROR
printf '%-12s %12s %16s %18s\n' maas "$MAAS_QPS" "$(lost "$maas_out")" "$(noerror "$maas_out")"
printf '%-12s %12s %16s %18s\n' "bind $(named -v | awk '{print $2}')" "$BIND_QPS" "$(lost "$bind_out")" "$(noerror "$bind_out")"
awk -v m="$MAAS_QPS" -v b="$BIND_QPS" 'BEGIN { if (b > 0) printf "maas / bind: %.2f\n", m / b }'
