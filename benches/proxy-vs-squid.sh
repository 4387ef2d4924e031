#!/usr/bin/env bash
# Forward-proxy throughput, side by side: the `proxy` example against squid, one after the
# other in the same run, on loopback, measured the same way.
#
# An origin (python3 http.server, 127.0.0.1:18081) serves 1 KiB, 100 KiB and 10 MiB objects
# with an old Last-Modified, so both proxies hold them fresh. Each proxy is warmed with one
# request per object, then wrk (with benches/wrk-proxy.lua, absolute-form requests) measures
# cache hits for each object: requests/s and MB/s, and our ratio to squid. Then 100 clients
# ask at once for an object neither proxy has (the origin serves it slowly, over ~1.5 s); the
# origin's log shows how many fetches each proxy made for it (collapsed forwarding: 1).
#
# squid: peers' configuration (memory cache 256 MB, one worker), with the in-memory object
# limit raised to 16 MB so the 10 MiB object is a hit too. maas: the release build with
# --threads 2. Both run on the same 2 cores as wrk. Besides req/s and MB/s, the CPU time the
# proxy process used per request (user + system, from /proc) is printed: it depends much
# less than req/s on what else the machine is running.
#
# Needs: squid wrk curl python3 (scripts/setup.sh installs them); root to run squid as its
# `proxy` user. Environment: DURATION (seconds per wrk run, default 10), CONNS (default 50),
# PROXY_BIN (a proxy binary to measure instead of building the example).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
ORIGIN=127.0.0.1:18081
SQUID=127.0.0.1:13128
MAAS=127.0.0.1:13129

for tool in squid wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "proxy-vs-squid: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done
if [[ $(id -u) -ne 0 ]]; then
  echo "proxy-vs-squid: needs root (squid drops to its proxy user)" >&2
  exit 1
fi

DIR=$(mktemp -d -t proxy-vs-squid.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1.5
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

if [[ -n ${PROXY_BIN:-} ]]; then
  BIN=$PROXY_BIN
else
  echo "building the proxy example (release)..."
  cargo build -q --release --example proxy --features proxy-server
  BIN=${CARGO_TARGET_DIR:-target}/release/examples/proxy
fi

# Origin: static files plus /slow/<n>, n bytes at about 640 KiB/s.
mkdir -p "$DIR/www"
head -c 1024 /dev/urandom >"$DIR/www/obj1k"
head -c 102400 /dev/urandom >"$DIR/www/obj100k"
head -c 10485760 /dev/urandom >"$DIR/www/obj10m"
touch -d "2020-01-01 00:00:00" "$DIR"/www/obj*
cat >"$DIR/origin.py" <<'PY'
import http.server, sys, time, os
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.send_header("Cache-Control", "max-age=3600")
            self.end_headers()
            for at in range(0, n, 65536):
                self.wfile.write(b"x" * min(65536, n - at))
                self.wfile.flush()
                time.sleep(0.1)
            return
        return super().do_GET()
    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))
        sys.stderr.flush()
os.chdir(sys.argv[1])
http.server.ThreadingHTTPServer(("127.0.0.1", 18081), H).serve_forever()
PY
python3 -u "$DIR/origin.py" "$DIR/www" 2>"$DIR/origin.log" &
PIDS+=($!)

# squid
mkdir -p "$DIR/proxy/squid"
chown -R proxy:proxy "$DIR/proxy"
chmod 755 "$DIR"
sed -e "s|@DIR@|$DIR|g" -e "s|^http_port .*|http_port $SQUID|" \
  -e "s|^maximum_object_size_in_memory .*|maximum_object_size_in_memory 16 MB\nmaximum_object_size 16 MB|" \
  benches/squid.conf >"$DIR/squid.conf"
squid -N -f "$DIR/squid.conf" 2>"$DIR/squid.err" &
PIDS+=($!)
PID_squid=$!

# maas
"$BIN" --listen "$MAAS" --cache-dir "$DIR/maas-cache" --no-default-deny --threads 2 >"$DIR/maas.log" 2>&1 &
PIDS+=($!)
PID_maas=$!

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

for i in $(seq 1 100); do
  if curl -s -o /dev/null "http://$ORIGIN/obj1k" && curl -s -o /dev/null -x "http://$SQUID" "http://$ORIGIN/obj1k" \
    && curl -s -o /dev/null -x "http://$MAAS" "http://$ORIGIN/obj1k"; then
    break
  fi
  sleep 0.1
done

declare -A RPS MBS CPU
printf 'load average before the run: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n%-8s %-8s %12s %10s %14s\n' proxy object "req/s" "MB/s" "CPU us/req"
for obj in obj1k obj100k obj10m; do
  for px in squid maas; do
    addr=$SQUID
    [[ $px == maas ]] && addr=$MAAS
    url="http://$ORIGIN/$obj"
    # Warm (twice: squid stores after the first answer), then check it is a hit.
    curl -s -o /dev/null -x "http://$addr" "$url"
    curl -s -o /dev/null -x "http://$addr" "$url"
    cache=$(curl -s -D - -o /dev/null -x "http://$addr" "$url" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
    pid_var=PID_$px
    before=$(cpu_ticks "${!pid_var}")
    out=$(PROXY_URL=$url wrk -t2 -c"$CONNS" -d"${DURATION}s" -s benches/wrk-proxy.lua "http://$addr")
    after=$(cpu_ticks "${!pid_var}")
    total=$(awk '/requests in/{print $1}' <<<"$out")
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
    tps=$(awk '/^Transfer\/sec:/{print $2}' <<<"$out")
    mbs=$(awk -v t="$tps" 'BEGIN{v=t+0; if (t ~ /GB/) v*=1024; else if (t ~ /KB/) v/=1024; printf "%.1f", v}')
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr '\n' ' ')
    cpu=$(awk -v a="$before" -v b="$after" -v n="$total" -v t="$TICK" 'BEGIN{printf "%.1f", (b-a)/t*1e6/(n>0?n:1)}')
    RPS[$px,$obj]=$rps
    MBS[$px,$obj]=$mbs
    CPU[$px,$obj]=$cpu
    printf '%-8s %-8s %12s %10s %14s   (%s) %s\n' "$px" "$obj" "$rps" "$mbs" "$cpu" "${cache:-?}" "$errs"
  done
done

# req/s depends on how much of the 2 cores other processes leave; CPU time per request (of
# the proxy process alone) much less, so both ratios are printed.
printf '\n%-8s %14s %22s\n' object "maas/squid" "squid/maas CPU per req"
for obj in obj1k obj100k obj10m; do
  awk -v a="${RPS[maas,$obj]}" -v b="${RPS[squid,$obj]}" -v c="${CPU[squid,$obj]}" -v d="${CPU[maas,$obj]}" -v o="$obj" \
    'BEGIN{printf "%-8s %13.2fx %21.2fx\n", o, a/b, c/d}'
done

printf 'load average after the hits: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n100 concurrent misses for one object (1 MiB, served over ~1.6 s):\n'
for px in squid maas; do
  addr=$SQUID
  [[ $px == maas ]] && addr=$MAAS
  path=/slow/1048576/$px
  start=$(date +%s.%N)
  seq 1 100 | xargs -P 100 -I{} curl -s -o /dev/null --max-time 60 -x "http://$addr" "http://$ORIGIN$path"
  end=$(date +%s.%N)
  fetches=$(grep -c "\"GET $path " "$DIR/origin.log" || true)
  awk -v p="$px" -v f="$fetches" -v s="$start" -v e="$end" 'BEGIN{printf "%-8s origin fetches %4d   all 100 done in %.2f s\n", p, f, e-s}'
done
