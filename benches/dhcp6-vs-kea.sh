#!/usr/bin/env bash
# DHCPv6 throughput, side by side: the `dhcpd` example (with --v6) against Kea's DHCPv6 server,
# one after the other in the same run, measured as benches/dhcp-vs-peers.sh measures DHCPv4.
#
# perfdhcp -6 runs 4-way exchanges (SOLICIT, ADVERTISE, REQUEST, REPLY), each for a new client
# (a new DUID), from a client namespace on the link to a server namespace (fd77::1/64, the
# pool fd77::1:0-fd77::1:ffff). For each server the rate is raised until more than 2.5 % of the
# exchanges go unanswered; the figure is the best REPLY rate under that bound. The script also
# reports each server's CPU time (user + system, from /proc) per lease at CPU_RATE.
#
# Servers:
#   maas     the dhcpd example, release build, --state (durable: REPLY after the commit)
#   kea      Kea 2.2 DHCPv6, memfile, "persist": true, single-threaded (the default)
#   kea-mt   the same with multi-threading (2 threads)
#   kea-info single-threaded with Kea's default log severity, INFO, instead of WARN: a line
#            per ADVERTISE and per lease, as the dhcpd example writes its JSON lines (the other
#            Kea servers log nothing per lease)
#
# Needs root and: iproute2 kea-dhcp6-server kea-admin (scripts/setup.sh installs them).
# Environment: SERVERS, RATES, CPU_RATE, PERIOD, REPEAT, KEEP_GOING, CAP (as in
# dhcp-vs-peers.sh; the pool here has 65,536 addresses). reply-ms is perfdhcp's mean wait for
# a REPLY.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=(${SERVERS:-maas kea kea-mt})
RATES=(${RATES:-1000 2000 4000 6000 8000 10000 12000 14000 16000 20000 24000})
PERIOD=${PERIOD:-4}
REPEAT=${REPEAT:-1}
MAX_UNANSWERED=2.5
CPU_RATE=${CPU_RATE:-2000}
CAP=${CAP:-50000}

if [[ $(id -u) -ne 0 ]]; then
  echo "dhcp6-vs-kea: needs root (network namespaces)" >&2
  exit 1
fi
for tool in ip perfdhcp kea-dhcp6 ss timeout; do
  command -v "$tool" >/dev/null || { echo "dhcp6-vs-kea: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done

SRV=d6k-srv-$$
CLI=d6k-cli-$$
DIR=$(mktemp -d -t dhcp6-vs-kea.XXXXXX)
SERVER_PID=

# shellcheck source=perfdhcp-link.sh
. benches/perfdhcp-link.sh

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    stop_process "$SERVER_PID"
    SERVER_PID=
  fi
}

cleanup() {
  stop_server
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The IPv4 link of the DHCPv4 bench, plus IPv6 without duplicate address detection (a
# tentative link-local address cannot send).
for ns in "$SRV" "$CLI"; do
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done
ip link add vsrv netns "$SRV" type veth peer name vcli netns "$CLI"
ip -n "$SRV" addr add 10.77.0.1/16 dev vsrv
ip -n "$SRV" addr add fd77::1/64 dev vsrv nodad
ip -n "$CLI" addr add fd77::2/64 dev vcli nodad
for pair in "$SRV vsrv" "$CLI vcli"; do
  read -r ns dev <<<"$pair"
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$dev" up
done
# Both link-local addresses usable before any server starts (bounded).
for _ in $(seq 50); do
  ip -n "$CLI" -6 addr show dev vcli scope link | grep -q 'inet6' &&
    ! ip -n "$CLI" -6 addr show dev vcli | grep -q tentative && break
  sleep 0.1
done

dhcpd_features() {
  awk '/^\[\[example\]\]/ { ex = 0 } /^name *= *"dhcpd"/ { ex = 1 }
       ex && /^required-features/ { gsub(/.*\[|\].*|"| /, ""); print; exit }' Cargo.toml
}

DHCPD=
build_dhcpd() {
  # DHCPD_BIN: an already built dhcpd example (another revision's, for a before/after run).
  if [[ -n ${DHCPD_BIN:-} ]]; then
    DHCPD=$DHCPD_BIN
    [[ -x $DHCPD ]]
    return
  fi
  local features
  features=$(dhcpd_features)
  cargo build --quiet --release --example dhcpd ${features:+--features "$features"} >&2 || return 1
  DHCPD=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/examples/dhcpd
  [[ -x $DHCPD ]]
}

write_kea() { # $1: multi-threading true/false, $2: log severity (WARN by default)
  cat >"$DIR/kea.json" <<JSON
{ "Dhcp6": {
  "interfaces-config": { "interfaces": [ "vsrv" ] },
  "lease-database": { "type": "memfile", "persist": true, "name": "$DIR/kea.leases", "lfc-interval": 0 },
  "multi-threading": { "enable-multi-threading": $1, "thread-pool-size": 2, "packet-queue-size": 64 },
  "server-id": { "type": "LL", "persist": false },
  "data-directory": "$DIR",
  "preferred-lifetime": 3000, "valid-lifetime": 3600,
  "subnet6": [ { "id": 1, "subnet": "fd77::/64", "interface": "vsrv",
                 "pools": [ { "pool": "fd77::1:0 - fd77::1:ffff" } ] } ],
  "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "$DIR/server.log" } ], "severity": "${2:-WARN}" } ]
} }
JSON
}

start_server() {
  rm -f "$DIR"/*.leases* "$DIR/state"* "$DIR/server.log" "$DIR"/*.duid
  case $1 in
    maas)
      ip netns exec "$SRV" "$DHCPD" --interface vsrv --subnet 10.77.0.0/16 \
        --range 10.77.16.0-10.77.255.254 --v6 --subnet6 fd77::/64 \
        --range6 fd77::1:0-fd77::1:ffff --state "$DIR/state" \
        >"$DIR/server.log" 2>"$DIR/server.err" &
      ;;
    kea | kea-mt | kea-info)
      ip netns exec "$SRV" env KEA_LOCKFILE_DIR="$DIR" KEA_PIDFILE_DIR="$DIR" \
        kea-dhcp6 -c "$DIR/kea.json" >"$DIR/server.err" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do
    if ip netns exec "$SRV" ss -Hnul 'sport = :547' | grep -q .; then
      [[ $1 != maas ]] || [[ -s $DIR/server.log ]] && { sleep 0.3; return 0; }
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "dhcp6-vs-kea: $1 did not start:" >&2
  cat "$DIR/server.err" >&2
  return 1
}

server_ticks() {
  awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0
}

# Datagrams the client namespace's sockets dropped for a full receive buffer (perfdhcp's own
# drops: replies that reached it and were lost there).
client_drops() {
  ip netns exec "$CLI" awk '$1 == "Udp6RcvbufErrors" { print $2; exit }' /proc/net/snmp6
}

# One perfdhcp run at rate $1; prints "sent replies unanswered% leases/s cpu-us/lease".
measure() {
  local rate=$1 n out before after drops
  n=$((rate * PERIOD < CAP ? rate * PERIOD : CAP))
  before=$(server_ticks)
  drops=$(client_drops)
  out=$(timeout -k 5 $((PERIOD + 20)) ip netns exec "$CLI" \
    perfdhcp -6 -l vcli -r "$rate" -R 1000000 -n "$n" -p "$PERIOD" -W 300000 2>&1) || true
  after=$(server_ticks)
  drops=$(($(client_drops) - drops))
  awk -v drops="$drops" -v rate="$rate" -v n="$n" -v period="$PERIOD" -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /Statistics for: SOLICIT-ADVERTISE/ { ex = "sa" } /Statistics for: REQUEST-REPLY/ { ex = "rr" }
    /^sent packets:/ { sent[ex] = $3 } /^received packets:/ { recv[ex] = $3 } /^avg delay:/ { delay[ex] = $3 }
    END {
      if (sent["sa"] == 0) { print "0 0 100.00 0 0 " drops " -"; exit }
      secs = sent["sa"] >= n ? n / rate : period
      cpu = recv["rr"] > 0 ? 1e6 * ticks / hz / recv["rr"] : 0
      printf "%d %d %.2f %.0f %.1f %d %s\n", sent["sa"], recv["rr"], 100 * (1 - recv["rr"] / sent["sa"]), recv["rr"] / secs, cpu, drops, delay["rr"] == "" ? "-" : delay["rr"]
    }' <<<"$out"
}

BUILT=
prepare_server() {
  case $1 in
    maas) [[ -n $BUILT ]] || { build_dhcpd && BUILT=1; } ;;
    kea) write_kea false ;;
    kea-mt) write_kea true ;;
    kea-info) write_kea false INFO ;;
    *) echo "dhcp6-vs-kea: unknown server $1" >&2; return 1 ;;
  esac
}

perfdhcp_sweep
perfdhcp_summary kea kea-mt kea-info
