#!/usr/bin/env bash
# TFTP throughput, side by side: the `tftpd` example against tftpd-hpa, atftpd and dnsmasq,
# one after the other in the same run, with the same clients over the same link.
#
# Each server runs in a server namespace (10.77.120.1/24) joined by a veth pair to a client
# namespace (10.77.120.2/24), MTU 1500 (the veth default, and what boot networks use; the same
# link for every server: blocks over 1472 bytes are IP-fragmented for all of them alike).
# Two workloads:
#   big     one 100 MiB file, read by atftp (blksize x windowsize), curl (blksize), busybox
#           tftp (blksize) and the crate's client (`tftp` example); each read is checked with
#           cmp and bounded by STALL seconds (a read that takes longer is reported as STALL).
#   many    1,000 concurrent reads of a 64 KiB file by the crate's client (one process, 1,000
#           transfers at once), blksize 1468, without and with windowsize 16.
#   best    each server at the best options it supports: every client and option set of
#           BEST_CASES against it (REPEAT times each, the best run kept), the fastest reported;
#           every server runs with its default settings here too (ours grants any window up
#           to 4096 by default, and narrows the bursts of a client that loses blocks), plus
#           MAAS_BEST_ARGS for ours if set. The ratio compares each server's best with ours.
#           `crc` cases are the crate's client printing the file's CRC-32 (checked against
#           the file's) instead of writing it: storing 100 MiB in tmpfs costs a client about
#           85 ms of kernel CPU (page allocation and copy), more than a fast server's whole
#           transfer on a two-core machine where client and server share the cores, so these
#           cases measure the servers rather than the client's storage. Same for every server.
# Each big-file cell of the table is the median of TABLE_REPEAT runs (default 3; a run that
# stalls or fails makes the cell STALL or FAIL). Clients write the file into OUT_DIR (default
# /dev/shm when it is writable, so that the client's disk is not what is measured; the same for
# every server).
# MB/s is file bytes / wall time of the client command (10^6 bytes). A server that does not
# support an option the client asks for (windowsize on tftpd-hpa and dnsmasq) falls back to
# what it supports, which is what its users get.
#
# Needs root and: iproute2 tftpd-hpa atftp curl busybox dnsmasq-base (scripts/setup.sh), and
# atftpd, which conflicts with tftpd-hpa as a package: it is unpacked (not installed) into
# ATFTPD_DIR (default /var/cache/maas-rs/atftpd) on first use with apt-get download.
# Environment: SERVERS (subset, in order), CASES (subset of the big-file cases), STALL,
# MAAS_ARGS (extra flags for the tftpd example, e.g. "--threads 1"; MAAS_ARGS="--window-budget
# 163840" gives the earlier default, a window capped to a default receive buffer), MAAS_BEST_ARGS
# (extra flags in the best-options phase only), BEST_CASES and REPEAT
# (the best-options phase; BEST_CASES="" skips it), PHASES (default "table best"),
# TABLE_REPEAT, OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=(${SERVERS:-maas tftpd-hpa atftpd dnsmasq})
CASES=(${CASES:-atftp:1468:1 atftp:1468:16 atftp:1468:64 atftp:8192:1 atftp:8192:16 atftp:8192:64 atftp:65464:64 curl:1468 curl:8192 busybox:1468 busybox:8192 own:1468:16 own:1468:64 own:8192:64 own:65464:64})
STALL=${STALL:-60}
BEST_CASES=(${BEST_CASES-own:1468:64 own:1468:1024 own:1468:4096 own:8192:1 own:65464:1 own:65464:16 atftp:65464:1 atftp:65464:16 curl:65464 busybox:65464 crc:1468:1024 crc:1468:4096 crc:8192:1 crc:65464:1 crc:65464:16})
REPEAT=${REPEAT:-3}
PHASES=${PHASES:-table best}
TABLE_REPEAT=${TABLE_REPEAT:-3}
ATFTPD_DIR=${ATFTPD_DIR:-/var/cache/maas-rs/atftpd}

if [[ $(id -u) -ne 0 ]]; then
  echo "tftp-vs-peers: needs root (network namespaces)" >&2
  exit 1
fi
for tool in ip in.tftpd atftp curl busybox dnsmasq cmp timeout python3; do
  command -v "$tool" >/dev/null || { echo "tftp-vs-peers: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done
ATFTPD=$ATFTPD_DIR/usr/sbin/atftpd
if [[ ! -x $ATFTPD ]]; then
  echo "tftp-vs-peers: unpacking atftpd into $ATFTPD_DIR"
  mkdir -p "$ATFTPD_DIR"
  (cd "$ATFTPD_DIR" && apt-get download -qq atftpd && dpkg -x atftpd_*.deb .)
fi

echo "building the tftpd and tftp examples (release)"
cargo build --release --features tftpd --example tftpd --example tftp -q
TARGET=${CARGO_TARGET_DIR:-target}
TFTPD=$TARGET/release/examples/tftpd
TFTP=$TARGET/release/examples/tftp

SRV=maas-tftpb-srv-$$
CLI=maas-tftpb-cli-$$
DIR=$(mktemp -d -t tftp-vs-peers.XXXXXX)
SERVER_PID=
IP=10.77.120.1

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 30); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      [[ $(ps -o stat= -p "$SERVER_PID" 2>/dev/null) == Z* ]] && break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
  # tftpd-hpa forks a child per transfer: end the ones still running in the namespace.
  for pid in $(ip netns pids "$SRV" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
}

cleanup() {
  stop_server
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  rm -rf "$DIR"
  [[ ${OUT_DIR:-} == /dev/shm/tftp-vs-peers.* ]] && rm -rf "$OUT_DIR"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$SRV"
ip netns add "$CLI"
ip link add vsrv netns "$SRV" type veth peer name vcli netns "$CLI"
ip -n "$SRV" addr add $IP/24 dev vsrv
ip -n "$SRV" link set lo up
ip -n "$SRV" link set vsrv up
ip -n "$CLI" addr add 10.77.120.2/24 dev vcli
ip -n "$CLI" link set lo up
ip -n "$CLI" link set vcli up

mkdir -p "$DIR/root"
if [[ -z ${OUT_DIR:-} ]]; then
  OUT_DIR=$DIR/out
  if [[ -d /dev/shm && -w /dev/shm ]]; then
    OUT_DIR=$(mktemp -d /dev/shm/tftp-vs-peers.XXXXXX)
  fi
fi
mkdir -p "$OUT_DIR"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$DIR/root/big.bin"
head -c $((64 * 1024)) /dev/urandom >"$DIR/root/small.bin"
BIG=$((100 * 1024 * 1024))
BIG_CRC=$(python3 -c 'import sys, zlib; print("%08x" % zlib.crc32(open(sys.argv[1], "rb").read()))' "$DIR/root/big.bin")

start_server() {
  local name=$1 extra=${2:-}
  case $name in
    maas)
      ip netns exec "$SRV" "$TFTPD" --root "$DIR/root" --listen $IP:69 --quiet ${MAAS_ARGS:-} $extra \
        --max-per-client 5000 --max-sessions 5000 --rate 1000000 --burst 5000 >"$DIR/server.log" 2>&1 &
      ;;
    tftpd-hpa)
      ip netns exec "$SRV" in.tftpd -L -s -a $IP:69 -u root "$DIR/root" >"$DIR/server.log" 2>&1 &
      ;;
    atftpd)
      ip netns exec "$SRV" "$ATFTPD" --daemon --no-fork --port 69 --bind-address $IP \
        --user root --group root --maxthread 2000 --logfile /dev/null "$DIR/root" >"$DIR/server.log" 2>&1 &
      ;;
    dnsmasq)
      ip netns exec "$SRV" dnsmasq -k --port=0 --enable-tftp --tftp-root="$DIR/root" \
        --listen-address=$IP --bind-interfaces --user=root --tftp-max=5000 \
        --pid-file="$DIR/dnsmasq.pid" >"$DIR/server.log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 50); do
    ip netns exec "$SRV" ss -uln 2>/dev/null | grep -q "$IP:69 " && return 0
    sleep 0.1
  done
  echo "tftp-vs-peers: $name did not start: $(cat "$DIR/server.log")" >&2
  return 1
}

now() { date +%s.%N; }

# Runs one big-file case against the running server; prints MB/s, STALL or FAIL.
big_case() {
  local spec=$1 client blksize window
  IFS=: read -r client blksize window <<<"$spec"
  local out="$OUT_DIR/big.bin"
  rm -f "$out"
  local cmd
  case $client in
    atftp) cmd=(atftp --option "blksize $blksize" --option "windowsize $window" --option "tsize 0" -g -r big.bin -l "$out" $IP) ;;
    curl) cmd=(curl -sS --tftp-blksize "$blksize" -o "$out" "tftp://$IP/big.bin") ;;
    busybox) cmd=(busybox tftp -g -r big.bin -l "$out" -b "$blksize" $IP) ;;
    own) cmd=("$TFTP" --server $IP --get big.bin --out "$out" --blksize "$blksize" --windowsize "$window") ;;
    crc) cmd=("$TFTP" --server $IP --get big.bin --crc32 --blksize "$blksize" --windowsize "$window") ;;
  esac
  local t0 t1 rc=0
  t0=$(now)
  timeout -k 2 "$STALL" ip netns exec "$CLI" "${cmd[@]}" >"$DIR/client.log" 2>&1 || rc=$?
  t1=$(now)
  if ((rc == 124 || rc == 137)); then
    echo STALL
  elif [[ $client == crc ]]; then
    if ((rc == 0)) && grep -q "\"crc32\":\"$BIG_CRC\"" "$DIR/client.log"; then
      awk -v b=$BIG -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", b / 1e6 / (z - a) }'
    else
      echo FAIL
    fi
  elif ((rc != 0)) || ! cmp -s "$out" "$DIR/root/big.bin"; then
    echo FAIL
  else
    awk -v b=$BIG -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", b / 1e6 / (z - a) }'
  fi
}

# The median of TABLE_REPEAT runs of big_case $1 (STALL or FAIL as soon as a run gives it).
big_median() {
  local runs=() r
  for _ in $(seq "$TABLE_REPEAT"); do
    r=$(big_case "$1")
    [[ $r =~ ^[0-9.]+$ ]] || { echo "$r"; return; }
    runs+=("$r")
  done
  printf '%s\n' "${runs[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# 1,000 concurrent 64 KiB reads; prints "MB/s failed".
many_case() {
  local window=$1 args=(--blksize 1468)
  [[ $window != 1 ]] && args+=(--windowsize "$window")
  local t0 t1 out
  t0=$(now)
  out=$(timeout -k 2 120 ip netns exec "$CLI" "$TFTP" --server $IP --get small.bin --repeat 1000 \
    --concurrency 1000 "${args[@]}" 2>/dev/null || true)
  t1=$(now)
  local failed
  failed=$(sed -n 's/.*"failed":\([0-9]*\).*/\1/p' <<<"$out")
  failed=${failed:-1000}
  awk -v n=$((1000 - failed)) -v a="$t0" -v z="$t1" -v f="$failed" \
    'BEGIN { printf "%.1f(%s failed)", n * 65536 / 1e6 / (z - a), f }'
}

echo "load before: $(uptime)"
declare -A RESULT
MANY=("many:1468:1" "many:1468:16")
if [[ " $PHASES " == *" table "* ]]; then
for server in "${SERVERS[@]}"; do
  echo "== $server"
  start_server "$server"
  for spec in "${CASES[@]}"; do
    RESULT[$server,$spec]=$(big_median "$spec")
    printf '  %-18s %s\n' "$spec" "${RESULT[$server,$spec]}"
  done
  for spec in "${MANY[@]}"; do
    IFS=: read -r _ _ window <<<"$spec"
    RESULT[$server,$spec]=$(many_case "$window")
    printf '  %-18s %s\n' "$spec" "${RESULT[$server,$spec]}"
  done
  stop_server
done
fi

# Best options: every BEST_CASES entry REPEAT times against each server, the fastest kept.
declare -A BEST BEST_CASE
if [[ " $PHASES " == *" best "* && ${#BEST_CASES[@]} -gt 0 ]]; then
  for server in "${SERVERS[@]}"; do
    echo "== $server, best options"
    extra=
    [[ $server == maas ]] && extra="${MAAS_BEST_ARGS:-}"
    start_server "$server" "$extra"
    BEST[$server]=0
    BEST_CASE[$server]=-
    for spec in "${BEST_CASES[@]}"; do
      runs=()
      for _ in $(seq "$REPEAT"); do
        r=$(big_case "$spec")
        runs+=("$r")
        if [[ $r =~ ^[0-9.]+$ ]] && awk -v a="$r" -v b="${BEST[$server]}" 'BEGIN { exit !(a > b) }'; then
          BEST[$server]=$r
          BEST_CASE[$server]=$spec
        fi
        # A stalled or failed case is not tried again.
        [[ $r =~ ^[0-9.]+$ ]] || break
      done
      printf '  %-18s %s\n' "$spec" "${runs[*]}"
    done
    stop_server
  done
fi

echo
echo "load after: $(uptime)"
if [[ " $PHASES " == *" table "* ]]; then
echo "MB/s (100 MiB file, median of $TABLE_REPEAT runs; many = 1,000 concurrent 64 KiB reads), ratio = maas / peer"
printf '%-18s' case
for server in "${SERVERS[@]}"; do printf '%16s' "$server"; done
for server in "${SERVERS[@]}"; do [[ $server != maas ]] && printf '%12s' "x$server"; done
echo
for spec in "${CASES[@]}" "${MANY[@]}"; do
  printf '%-18s' "$spec"
  for server in "${SERVERS[@]}"; do printf '%16s' "${RESULT[$server,$spec]:--}"; done
  ours=${RESULT[maas,$spec]:-}
  ours=${ours%%(*}
  for server in "${SERVERS[@]}"; do
    [[ $server == maas ]] && continue
    theirs=${RESULT[$server,$spec]:-}
    theirs=${theirs%%(*}
    if [[ $ours =~ ^[0-9.]+$ && $theirs =~ ^[0-9.]+$ ]] && awk -v t="$theirs" 'BEGIN { exit !(t > 0) }'; then
      printf '%12s' "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')"
    else
      printf '%12s' "-"
    fi
  done
  echo
done
fi
if [[ -n ${BEST[maas]:-} ]]; then
  echo
  echo "Best options (best of $REPEAT runs of each case), ratio = maas best / server best"
  printf '%-12s %-18s %10s %8s\n' server case "MB/s" ratio
  for server in "${SERVERS[@]}"; do
    ratio=-
    if awk -v b="${BEST[$server]}" 'BEGIN { exit !(b > 0) }'; then
      ratio=$(awk -v a="${BEST[maas]}" -v b="${BEST[$server]}" 'BEGIN { printf "%.2f", a / b }')
    fi
    printf '%-12s %-18s %10s %8s\n' "$server" "${BEST_CASE[$server]}" "${BEST[$server]}" "$ratio"
  done
fi
