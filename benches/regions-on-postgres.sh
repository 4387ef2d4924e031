#!/usr/bin/env bash
# DHCPv4 leases per second and CPU per lease with the state in PostgreSQL, in one run:
#
#   rack        a rack serving DHCP, each lease recorded by a region on its embedded store
#   rack-pg     the same with the region on PostgreSQL ([database] url)
#   kea-pg      Kea 2.2 with its PostgreSQL lease backend, single-threaded
#   kea-pg-mt   the same with multi-threading (2 threads)
#
# PostgreSQL (Debian's) is started by the script in a temporary directory, as nobody, on a
# Unix socket only; every run starts on a new empty database. perfdhcp acts as a relay in a
# client namespace (10.77.0.2/16) towards the server namespace (10.77.0.1/16; the rack or
# Kea listens on vsrv). For each shape, rates are raised until more than 2.5 % of the
# exchanges go unanswered; the best rate under that bound is reported. CPU per lease is
# measured at CPU_RATE leases/s (one every shape sustains): user + system time of every
# process of the shape (rack and region, or Kea) and of the PostgreSQL server's processes,
# divided by the leases acknowledged.
#
# Needs root, iproute2, kea-dhcp4-server, kea-admin (perfdhcp) and postgresql
# (scripts/setup.sh installs them). Environment: SHAPES, RATES, CPU_RATE, PERIOD.
set -euo pipefail
cd "$(dirname "$0")/.."

SHAPES=(${SHAPES:-rack rack-pg kea-pg kea-pg-mt})
RATES=(${RATES:-250 500 1000 1500 2000 3000 4000 5000 6000 8000})
CPU_RATE=${CPU_RATE:-500}
PERIOD=${PERIOD:-4}
MAX_UNANSWERED=2.5
CAP=50000
PGPORT=5477
KEA_SCHEMA=/usr/share/kea/scripts/pgsql/dhcpdb_create.pgsql

if [[ $(id -u) -ne 0 ]]; then
  echo "regions-on-postgres: needs root (network namespaces)" >&2
  exit 1
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
for tool in ip perfdhcp kea-dhcp4 psql runuser timeout ss "$PGBIN/initdb"; do
  command -v "$tool" >/dev/null || { echo "regions-on-postgres: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done
[[ -f $KEA_SCHEMA ]] || { echo "regions-on-postgres: $KEA_SCHEMA missing (kea-admin)" >&2; exit 1; }

SRV=rpg-srv-$$
CLI=rpg-cli-$$
DIR=$(mktemp -d -t regions-on-postgres.XXXXXX)
PIDS=()
PG_STARTED=

# shellcheck source=perfdhcp-link.sh
. benches/perfdhcp-link.sh

stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_process "${PIDS[i]}"
  done
  PIDS=()
}

cleanup() {
  stop_all
  if [[ -n $PG_STARTED ]]; then
    runuser -u nobody -- "$PGBIN/pg_ctl" -D "$DIR/pg/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
  fi
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

perfdhcp_link "$SRV" "$CLI"

# PostgreSQL, as nobody (initdb refuses root), listening on a socket in $DIR/pg only.
chmod 755 "$DIR"
mkdir -m 700 "$DIR/pg"
chown nobody "$DIR/pg"
runuser -u nobody -- "$PGBIN/initdb" -D "$DIR/pg/data" -U maas --auth=trust >"$DIR/initdb.log" 2>&1
runuser -u nobody -- "$PGBIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/server.log" -w -t 30 \
  -o "-k $DIR/pg -c listen_addresses= -p $PGPORT -c max_connections=50" start >/dev/null
PG_STARTED=1
chmod 755 "$DIR/pg"
PSQL=(env PGOPTIONS=--client-min-messages=warning psql -q -X -v ON_ERROR_STOP=1 -h "$DIR/pg" -p "$PGPORT" -U maas)
PG_URL="postgresql://maas@/run?host=$DIR/pg&port=$PGPORT"

cargo build --quiet --release -p maas-controller >&2
CONTROLLER=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/maas-controller

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
  local database
  for store in embedded pg; do
    database=
    [[ $store == pg ]] && database=$'[database]\nurl = "'"$PG_URL"'"'
    cat >"$DIR/region-$store.toml" <<EOF
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
$database
$MODEL
EOF
  done
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
  for mt in false true; do
    cat >"$DIR/kea-$mt.json" <<EOF
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "vsrv" ], "dhcp-socket-type": "raw" },
  "lease-database": { "type": "postgresql", "name": "run", "host": "$DIR/pg", "port": $PGPORT, "user": "maas" },
  "multi-threading": { "enable-multi-threading": $mt, "thread-pool-size": 2, "packet-queue-size": 64 },
  "valid-lifetime": 3600,
  "authoritative": true,
  "subnet4": [ { "id": 1, "subnet": "10.77.0.0/16", "pools": [ { "pool": "10.77.16.0 - 10.77.255.254" } ],
                 "option-data": [ { "name": "routers", "data": "10.77.0.1" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$DIR/kea.log" } ], "severity": "WARN" } ]
} }
EOF
  done
}

# Starts controller config $2 as $1 (a log name) and waits until it logs "listening".
start() {
  ip netns exec "$SRV" "$CONTROLLER" --config "$2" >"$DIR/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 300); do
    grep -q '"event":"listening"' "$DIR/$1.log" 2>/dev/null && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "regions-on-postgres: $1 did not start:" >&2
  cat "$DIR/$1.log" >&2
  return 1
}

start_kea() { # $1: multi-threading true/false
  ip netns exec "$SRV" env KEA_LOCKFILE_DIR="$DIR" KEA_PIDFILE_DIR="$DIR" \
    kea-dhcp4 -c "$DIR/kea-$1.json" >"$DIR/kea.err" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do
    ip netns exec "$SRV" ss -lun 2>/dev/null | grep -q ':67 ' && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "regions-on-postgres: kea did not start:" >&2
  cat "$DIR/kea.err" "$DIR/kea.log" >&2 2>/dev/null || true
  return 1
}

start_shape() {
  rm -rf "$DIR"/state-*
  "${PSQL[@]}" -d postgres -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS run" -c "CREATE DATABASE run"
  case $1 in
    rack) start region "$DIR/region-embedded.toml" && start rack "$DIR/rack.toml" ;;
    rack-pg) start region "$DIR/region-pg.toml" && start rack "$DIR/rack.toml" ;;
    kea-pg) "${PSQL[@]}" -d run -f "$KEA_SCHEMA" >/dev/null && start_kea false ;;
    kea-pg-mt) "${PSQL[@]}" -d run -f "$KEA_SCHEMA" >/dev/null && start_kea true ;;
  esac
}

# User + system clock ticks used so far by processes $@ (reaped children included) and by
# the PostgreSQL server's processes.
ticks() {
  local postmaster pids
  postmaster=$(head -1 "$DIR/pg/data/postmaster.pid")
  pids="$* $postmaster $(pgrep -P "$postmaster" | tr '\n' ' ')"
  for pid in $pids; do
    # Fields after the command name: utime is the 12th, stime 13th, cutime 14th, cstime 15th.
    sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }'
  done | awk '{ t += $1 } END { print t + 0 }'
}

# One perfdhcp run at rate $1; prints "sent acks unanswered% leases/s cpu-us/lease".
measure() {
  local rate=$1 n out before after
  n=$((rate * PERIOD < CAP ? rate * PERIOD : CAP))
  before=$(ticks "${PIDS[@]}")
  out=$(timeout -k 5 $((PERIOD + 20)) ip netns exec "$CLI" \
    perfdhcp -4 -l vcli -r "$rate" -R 1000000 -n "$n" -p "$PERIOD" -W 300000 2>&1) || true
  after=$(ticks "${PIDS[@]}")
  awk -v rate="$rate" -v n="$n" -v period="$PERIOD" -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /Statistics for: DISCOVER-OFFER/ { ex = "do" } /Statistics for: REQUEST-ACK/ { ex = "ra" }
    /^sent packets:/ { sent[ex] = $3 } /^received packets:/ { recv[ex] = $3 }
    END {
      if (sent["do"] == 0) { print "0 0 100.00 0 0"; exit }
      secs = sent["do"] >= n ? n / rate : period
      cpu = recv["ra"] > 0 ? 1e6 * ticks / hz / recv["ra"] : 0
      printf "%d %d %.2f %.0f %.1f\n", sent["do"], recv["ra"], 100 * (1 - recv["ra"] / sent["do"]), recv["ra"] / secs, cpu
    }' <<<"$out"
}

write_configs
declare -A BEST BEST_RATE CPU
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %7s %8s %8s %12s %10s %13s\n' shape rate sent acks unanswered% leases/s cpu-us/lease
for shape in "${SHAPES[@]}"; do
  BEST[$shape]=0
  for rate in "${RATES[@]}"; do
    start_shape "$shape"
    read -r sent acks lost leases cpu < <(measure "$rate")
    stop_all
    printf '%-10s %7d %8d %8d %12s %10d %13s\n' "$shape" "$rate" "$sent" "$acks" "$lost" "$leases" "$cpu"
    ((rate == CPU_RATE)) && CPU[$shape]=$cpu
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
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "best leases/s with at most ${MAX_UNANSWERED} % unanswered (${PERIOD} s runs, $(nproc) cores shared with perfdhcp and PostgreSQL),"
echo "and CPU per lease at $CPU_RATE/s (the shape's processes and PostgreSQL's):"
for shape in "${SHAPES[@]}"; do
  printf '  %-10s %8d  (at %s/s)  %8s us/lease\n' "$shape" "${BEST[$shape]}" "${BEST_RATE[$shape]:--}" "${CPU[$shape]:--}"
done
for peer in kea-pg kea-pg-mt; do
  if [[ ${BEST[rack-pg]:-0} -gt 0 && ${BEST[$peer]:-0} -gt 0 ]]; then
    awk -v a="${BEST[rack-pg]}" -v b="${BEST[$peer]}" -v p="$peer" \
      'BEGIN { printf "  rack-pg / %s leases/s: %.2f\n", p, a / b }'
  fi
done
if [[ ${BEST[rack]:-0} -gt 0 && ${BEST[rack-pg]:-0} -gt 0 ]]; then
  awk -v a="${BEST[rack-pg]}" -v b="${BEST[rack]}" 'BEGIN { printf "  rack-pg / rack leases/s: %.2f\n", a / b }'
fi
