#!/usr/bin/env bash
# DHCPv4 throughput, side by side: the `dhcpd` example against Kea and dnsmasq, one after the
# other in the same run, measured the same way.
#
# perfdhcp (from kea-admin) acts as a relay in a client namespace (10.77.0.2/16); each server
# runs in a server namespace (10.77.0.1/16) with the pool 10.77.16.0-10.77.255.254. For each
# server the rate of 4-way exchanges is raised until more than 2.5 % of them go unanswered
# (Kea's published criterion); the server is restarted on an empty lease store for every rate.
# The result for a server is the best leases/s (ACKs received per second) among the rates that
# stayed under that bound. perfdhcp shares the machine with the server and, past about 10,000
# exchanges/s on 2 cores, drops replies in its own receive buffer whatever the server; so the
# script also reports each server's CPU time (user + system, from /proc) per lease at CPU_RATE
# (default 2,000/s, a rate the servers sustain; several rates, space-separated, give a figure
# and the ratios for each), which does not depend on the load generator,
# and the mean time perfdhcp waited for an ACK (reply-ms: a group commit trades a little of it
# for CPU).
#
# Servers:
#   maas        the dhcpd example, release build, --state (durable)
#   maas-mem    the same without --state (leases in memory: not durable)
#   kea         Kea memfile, "persist": true, single-threaded (the default)
#   kea-mt      the same with multi-threading (2 threads)
#   kea-udp     single-threaded on a UDP socket instead of Kea's default raw one (the traffic
#               is relayed, so Kea needs no raw socket here)
#   kea-info    single-threaded with Kea's default log severity, INFO, instead of WARN: a line
#               per offer and per lease, as the dhcpd example writes its JSON lines (the other
#               Kea servers log nothing per lease)
#   dnsmasq     no-ping, with its lease file (rewritten on every change)
#   dnsmasq-ro  no-ping, leasefile-ro (keeps leases in memory only: not durable)
#
# Needs root and: iproute2 kea-dhcp4-server kea-admin dnsmasq-base (scripts/setup.sh installs
# them). Environment: SERVERS (subset, in order), RATES, CPU_RATE, PERIOD (seconds per run), REPEAT
# (sweeps over all servers, keeping each server's best: on a shared machine this evens out
# background load), KEEP_GOING (set: run every rate even past the first over the bound, for
# CPU figures at rates a server does not sustain), CAP (exchanges per run at most; default
# 50,000, below the pool's size).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=(${SERVERS:-maas kea kea-mt dnsmasq dnsmasq-ro})
RATES=(${RATES:-250 500 1000 1500 2000 2500 3000 3500 4000 4500 5000 6000 7000 8000 9000 10000 11000 12000 14000 16000 24000 32000})
PERIOD=${PERIOD:-4}
REPEAT=${REPEAT:-1}
MAX_UNANSWERED=2.5
# The rate at which each server's CPU time per lease is reported (one every server sustains).
CPU_RATE=${CPU_RATE:-2000}
# Exchanges per run are capped below the pool size (61,439 addresses): every exchange is a new
# client, and an exhausted pool would read as drops.
CAP=${CAP:-50000}

if [[ $(id -u) -ne 0 ]]; then
  echo "dhcp-vs-peers: needs root (network namespaces)" >&2
  exit 1
fi
for tool in ip perfdhcp kea-dhcp4 dnsmasq ss timeout; do
  command -v "$tool" >/dev/null || { echo "dhcp-vs-peers: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done

SRV=dvp-srv-$$
CLI=dvp-cli-$$
DIR=$(mktemp -d -t dhcp-vs-peers.XXXXXX)
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

perfdhcp_link "$SRV" "$CLI"

# The dhcpd example's features, read from the root manifest's [[example]] entry.
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
  if [[ ! -f examples/dhcpd.rs ]]; then
    echo "dhcp-vs-peers: examples/dhcpd.rs not found: skipping maas" >&2
    return 1
  fi
  local features
  features=$(dhcpd_features)
  cargo build --quiet --release --example dhcpd ${features:+--features "$features"} >&2 || return 1
  DHCPD=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/examples/dhcpd
  [[ -x $DHCPD ]]
}

write_kea() { # $1: multi-threading true/false, $2: socket type (raw by default), $3: log severity
  cat >"$DIR/kea.json" <<EOF
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "vsrv" ], "dhcp-socket-type": "${2:-raw}" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$DIR/kea.leases", "lfc-interval": 0 },
  "multi-threading": { "enable-multi-threading": $1, "thread-pool-size": 2, "packet-queue-size": 64 },
  "valid-lifetime": 3600,
  "authoritative": true,
  "subnet4": [ { "id": 1, "subnet": "10.77.0.0/16", "pools": [ { "pool": "10.77.16.0 - 10.77.255.254" } ],
                 "option-data": [ { "name": "routers", "data": "10.77.0.1" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$DIR/server.log" } ], "severity": "${3:-WARN}" } ]
} }
EOF
}

write_dnsmasq() { # $1: extra line
  cat >"$DIR/dnsmasq.conf" <<EOF
port=0
interface=vsrv
bind-interfaces
dhcp-range=10.77.16.0,10.77.255.254,255.255.0.0,1h
dhcp-option=option:router,10.77.0.1
dhcp-leasefile=$DIR/dnsmasq.leases
dhcp-lease-max=200000
dhcp-authoritative
no-ping
user=root
$1
EOF
}

# Where perfdhcp sends: broadcast (its default) for every server but kea-udp, whose UDP
# socket, bound to the interface's address, takes only what is sent to that address.
TARGET=
# Starts $1 on an empty lease store and waits (bounded) until it listens on port 67.
start_server() {
  TARGET=
  [[ $1 != kea-udp ]] || TARGET=10.77.0.1
  rm -f "$DIR"/*.leases* "$DIR/state"* "$DIR/server.log"
  case $1 in
    maas | maas-mem)
      local state=()
      [[ $1 == maas-mem ]] || state=(--state "$DIR/state")
      ip netns exec "$SRV" "$DHCPD" --interface vsrv --subnet 10.77.0.0/16 \
        --range 10.77.16.0-10.77.255.254 --gateway 10.77.0.1 "${state[@]}" \
        >"$DIR/server.log" 2>"$DIR/server.err" &
      ;;
    kea | kea-mt | kea-udp | kea-info)
      ip netns exec "$SRV" env KEA_LOCKFILE_DIR="$DIR" KEA_PIDFILE_DIR="$DIR" \
        kea-dhcp4 -c "$DIR/kea.json" >"$DIR/server.err" 2>&1 &
      ;;
    dnsmasq | dnsmasq-ro)
      ip netns exec "$SRV" dnsmasq -k -C "$DIR/dnsmasq.conf" --pid-file="$DIR/dnsmasq.pid" \
        >"$DIR/server.err" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do
    if ip netns exec "$SRV" ss -Hnul 'sport = :67' | grep -q .; then
      # ours prints a first JSON line once ready
      [[ $1 != maas* ]] || [[ -s $DIR/server.log ]] && { sleep 0.2; return 0; }
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "dhcp-vs-peers: $1 did not start:" >&2
  cat "$DIR/server.err" >&2
  return 1
}

# CPU time (user + system, in clock ticks) the server process has used so far.
server_ticks() {
  awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0
}

# Datagrams the client namespace's sockets dropped for a full receive buffer (perfdhcp's own
# drops: replies that reached it and were lost there).
client_drops() {
  ip netns exec "$CLI" awk '/^Udp:/ { getline; print $6; exit }' /proc/net/snmp
}

# One perfdhcp run at rate $1; prints "sent acks unanswered% leases/s cpu-us/lease".
measure() {
  local rate=$1 n out before after drops
  n=$((rate * PERIOD < CAP ? rate * PERIOD : CAP))
  before=$(server_ticks)
  drops=$(client_drops)
  out=$(timeout -k 5 $((PERIOD + 20)) ip netns exec "$CLI" \
    perfdhcp -4 -l vcli -r "$rate" -R 1000000 -n "$n" -p "$PERIOD" -W 300000 $TARGET 2>&1) || true
  after=$(server_ticks)
  drops=$(($(client_drops) - drops))
  awk -v drops="$drops" -v rate="$rate" -v n="$n" -v period="$PERIOD" -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /Statistics for: DISCOVER-OFFER/ { ex = "do" } /Statistics for: REQUEST-ACK/ { ex = "ra" }
    /^sent packets:/ { sent[ex] = $3 } /^received packets:/ { recv[ex] = $3 } /^avg delay:/ { delay[ex] = $3 }
    END {
      if (sent["do"] == 0) { print "0 0 100.00 0 0 " drops " -"; exit }
      # -n reached: the run lasted n/rate seconds; otherwise perfdhcp stopped at -p.
      secs = sent["do"] >= n ? n / rate : period
      cpu = recv["ra"] > 0 ? 1e6 * ticks / hz / recv["ra"] : 0
      printf "%d %d %.2f %.0f %.1f %d %s\n", sent["do"], recv["ra"], 100 * (1 - recv["ra"] / sent["do"]), recv["ra"] / secs, cpu, drops, delay["ra"] == "" ? "-" : delay["ra"]
    }' <<<"$out"
}

BUILT=
prepare_server() {
  case $1 in
    maas | maas-mem) [[ -n $BUILT ]] || { build_dhcpd && BUILT=1; } ;;
    kea) write_kea false ;;
    kea-mt) write_kea true ;;
    kea-udp) write_kea false udp ;;
    kea-info) write_kea false raw INFO ;;
    dnsmasq) write_dnsmasq "" ;;
    dnsmasq-ro) write_dnsmasq leasefile-ro ;;
    *) echo "dhcp-vs-peers: unknown server $1" >&2; return 1 ;;
  esac
}

perfdhcp_sweep
perfdhcp_summary kea kea-mt kea-udp kea-info dnsmasq dnsmasq-ro
# Not durable against not durable.
if ((${BEST[maas-mem]:-0} > 0)) && ((${BEST[dnsmasq-ro]:-0} > 0)); then
  awk -v a="${BEST[maas-mem]}" -v b="${BEST[dnsmasq-ro]}" \
    'BEGIN { printf "  maas-mem / dnsmasq-ro %.2fx\n", a / b }'
fi
