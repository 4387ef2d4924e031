#!/usr/bin/env bash
# Status of 1,000 BMCs, side by side: the `power` example (maas-power's PowerManager, one
# process, at most CONCURRENCY queries in flight) against `ipmitool` run once per BMC with the
# same parallelism (xargs -P), in the same run, measured the same way (wall time of the whole
# set, every query must succeed).
#
# Peers run in one network namespace on loopback: SIMS instances of OpenIPMI's ipmi_sim on
# distinct UDP ports (1,000 IPMI BMCs are spread over them round-robin, RMCP+ cipher suite 3,
# user admin) and EMUS sushy-emulator processes on distinct TCP ports (Redfish, fake driver,
# basic auth, two systems each; the Redfish BMCs are spread over them round-robin). Sets:
#   ipmi   1,000 IPMI BMCs: maas on each IPMI backend (native sessions, ipmi-rs) and ipmitool
#   mixed  900 IPMI BMCs and 100 Redfish systems, every tenth BMC a Redfish one: maas only
#          (ipmitool speaks no Redfish); the emulators' own ceiling is shown by curl fetching
#          the 100 systems alone
#
# Needs root, a release build of the example (cargo build --release --features power-cli
# --example power) and: iproute2 openipmi ipmitool, sushy-emulator in $MAAS_PEERS_VENV
# (scripts/setup.sh installs them). Environment: SIMS, EMUS, CONCURRENCY, COUNT, IPMITOOL
# (0 skips the ipmitool run, which takes over a minute).
set -euo pipefail
cd "$(dirname "$0")/.."

SIMS=${SIMS:-8}
EMUS=${EMUS:-4}
IPMITOOL=${IPMITOOL:-1}
CONCURRENCY=${CONCURRENCY:-64}
COUNT=${COUNT:-1000}
BASE_PORT=9700
REDFISH_PORT=8650
VENV=${MAAS_PEERS_VENV:-/opt/maas-rs-peers}
POWER=${POWER:-${CARGO_TARGET_DIR:-target}/release/examples/power}

if [[ $(id -u) -ne 0 ]]; then
  echo "power-status: needs root (network namespaces)" >&2
  exit 1
fi
for tool in ip ipmi_sim ipmitool ss timeout xargs; do
  command -v "$tool" >/dev/null || { echo "power-status: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done
[[ -x $POWER ]] || { echo "power-status: $POWER missing: cargo build --release --features power-cli --example power" >&2; exit 1; }
[[ -x $VENV/bin/sushy-emulator ]] || { echo "power-status: no sushy-emulator in $VENV: run scripts/setup.sh" >&2; exit 1; }

NS=maas-pwr-bench-$$
DIR=$(mktemp -d -t power-status.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

wait_port() { # proto port
  local flag=-uln; [[ $1 == tcp ]] && flag=-tln
  for _ in $(seq 200); do
    in_ns ss $flag | grep -q ":$2 " && return 0
    sleep 0.1
  done
  echo "power-status: nothing listens on $1 $2" >&2; exit 1
}

PEERS=tests/peers/power
for i in $(seq 0 $((SIMS - 1))); do
  port=$((BASE_PORT + i)); d=$DIR/sim$i; mkdir -p "$d"
  sed "s#@DIR@/ipmi/state/chassis#$d/state#" $PEERS/ipmi-chassis.sh > "$d/chassis.sh"; chmod +x "$d/chassis.sh"
  sed -e "s#addr 127.0.0.1 9623#addr 127.0.0.1 $port#" -e "s#@DIR@/ipmi/chassis.sh#$d/chassis.sh#" \
    $PEERS/ipmi-lan.conf > "$d/lan.conf"
  in_ns timeout 600 ipmi_sim -c "$d/lan.conf" -f $PEERS/ipmi-sim.emu -s "$d/simstate" -n </dev/null >"$d/log" 2>&1 &
  PIDS+=($!); disown $!
done
"$VENV/bin/python3" -c "import bcrypt; print('admin:' + bcrypt.hashpw(b'password', bcrypt.gensalt(4)).decode())" \
  > "$DIR/htpasswd"
for i in $(seq 0 $((EMUS - 1))); do
  d=$DIR/redfish$i; mkdir -p "$d/redfish/state"; cp "$DIR/htpasswd" "$d/redfish/htpasswd"
  sed -e "s#@DIR@#$d#" -e "s#SUSHY_EMULATOR_LISTEN_PORT = 8000#SUSHY_EMULATOR_LISTEN_PORT = $((REDFISH_PORT + i))#" \
    $PEERS/redfish-emulator.conf > "$d/emulator.conf"
  in_ns timeout 600 "$VENV/bin/sushy-emulator" --config "$d/emulator.conf" >"$d/log" 2>&1 &
  PIDS+=($!); disown $!
done
for i in $(seq 0 $((SIMS - 1))); do wait_port udp $((BASE_PORT + i)); done
for i in $(seq 0 $((EMUS - 1))); do wait_port tcp $((REDFISH_PORT + i)); done

# The BMC lists, as driver parameters with MAAS's names.
python3 - "$DIR" "$COUNT" "$SIMS" "$BASE_PORT" "$REDFISH_PORT" "$EMUS" <<'PY'
import json, sys
d, count, sims, base, rf, emus = sys.argv[1], *map(int, sys.argv[2:])
ipmi = lambda i: {"power_type": "ipmi", "power_address": f"127.0.0.1:{base + i % sims}",
                  "power_user": "admin", "power_pass": "password", "cipher_suite_id": "3"}
redfish = lambda i: {"power_type": "redfish", "power_address": f"http://127.0.0.1:{rf + i % emus}",
                     "power_user": "admin", "power_pass": "password",
                     "node_id": f"00000000-0000-0000-0000-00000000000{1 + (i // emus) % 2}"}
json.dump([ipmi(i) for i in range(count)], open(f"{d}/ipmi.json", "w"))
# Every tenth BMC is a Redfish one, as in a rack where both kinds are mixed.
json.dump([redfish(i // 10) if i % 10 == 9 else ipmi(i) for i in range(count)],
          open(f"{d}/mixed.json", "w"))
PY

now() { date +%s.%N; }
ours() { # set backend
  local t0 t1
  t0=$(now)
  in_ns "$POWER" --many "$DIR/$1.json" --concurrency "$CONCURRENCY" --attempts 1 --ipmi-backend "$2" status \
    >"$DIR/$1.out" 2>"$DIR/$1.err" \
    || { echo "power-status: maas $1 ($2) failed:" >&2; grep -m5 error "$DIR/$1.out" >&2; tail -1 "$DIR/$1.err" >&2; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
ipmitool_set() {
  local t0 t1 ok
  t0=$(now)
  seq 0 $((COUNT - 1)) | in_ns xargs -P "$CONCURRENCY" -I{} sh -c \
    'ipmitool -I lanplus -H 127.0.0.1 -p $(('"$BASE_PORT"' + {} % '"$SIMS"')) -U admin -P password -C 3 chassis power status 2>&1' \
    >"$DIR/ipmitool.out" || true
  t1=$(now)
  ok=$(grep -c "Chassis Power is" "$DIR/ipmitool.out" || true)
  [[ $ok -eq $COUNT ]] || echo "power-status: ipmitool answered $ok of $COUNT" >&2
  echo "$t1 - $t0" | bc -l
}

echo "power-status: $COUNT BMCs, $SIMS ipmi_sim instances + $EMUS sushy-emulators, at most $CONCURRENCY in flight ($(nproc) cores)"
echo "power-status: load before: $(cut -d' ' -f1-3 /proc/loadavg)"
maas_native=$(ours ipmi native); tail -1 "$DIR/ipmi.err"
maas_rs=$(ours ipmi ipmi-rs); tail -1 "$DIR/ipmi.err"
tool_ipmi=
[[ $IPMITOOL == 0 ]] || tool_ipmi=$(ipmitool_set)
mixed_native=$(ours mixed native); tail -1 "$DIR/mixed.err"
mixed_rs=$(ours mixed ipmi-rs); tail -1 "$DIR/mixed.err"
# The emulators' own ceiling: the mixed set's Redfish GETs with curl, same parallelism.
N_RF=$((COUNT / 10))
t0=$(now)
seq 0 $((N_RF - 1)) | in_ns xargs -P "$CONCURRENCY" -I{} sh -c \
  'curl -sf -o /dev/null -u admin:password http://127.0.0.1:$(('"$REDFISH_PORT"' + {} % '"$EMUS"'))/redfish/v1/Systems/00000000-0000-0000-0000-00000000000$((1 + {} / '"$EMUS"' % 2))' \
  || echo "power-status: some curl GETs failed" >&2
curl_rf=$(echo "$(now) - $t0" | bc -l)
echo "power-status: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
row() { printf '%-34s %10.3f %12.0f\n' "$1" "$2" "$(echo "$3 / $2" | bc -l)"; }
printf '%-34s %10s %12s\n' "set / tool" "wall s" "queries/s"
row "ipmi / maas (native sessions)" "$maas_native" "$COUNT"
row "ipmi / maas (ipmi-rs sessions)" "$maas_rs" "$COUNT"
[[ -z $tool_ipmi ]] || row "ipmi / ipmitool (xargs -P)" "$tool_ipmi" "$COUNT"
row "mixed / maas (native sessions)" "$mixed_native" "$COUNT"
row "mixed / maas (ipmi-rs sessions)" "$mixed_rs" "$COUNT"
row "redfish GETs / curl ($N_RF)" "$curl_rf" "$N_RF"
[[ -z $tool_ipmi ]] || printf 'ratio ipmitool / maas (ipmi set, native): %.1fx\n' "$(echo "$tool_ipmi / $maas_native" | bc -l)"
