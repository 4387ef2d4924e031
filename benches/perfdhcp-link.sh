# Shared by the perfdhcp benchmarks (sourced, not run): a server namespace and a client
# namespace joined by a veth pair (vsrv 10.77.0.1/16, vcli 10.77.0.2/16), and stopping a
# server process.

# Creates namespaces $1 (server) and $2 (client) and the link between them.
perfdhcp_link() {
  ip netns add "$1"
  ip netns add "$2"
  ip link add vsrv netns "$1" type veth peer name vcli netns "$2"
  ip -n "$1" addr add 10.77.0.1/16 dev vsrv
  ip -n "$1" link set lo up
  ip -n "$1" link set vsrv up
  ip -n "$2" addr add 10.77.0.2/16 dev vcli
  ip -n "$2" link set lo up
  ip -n "$2" link set vcli up
}

# Stops process $1: SIGTERM, up to 5 s to go, then SIGKILL; reaps it.
stop_process() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$1" 2>/dev/null || break
    # PID 1 may not reap: a zombie still answers kill -0, so check its state too.
    [[ $(ps -o stat= -p "$1" 2>/dev/null) == Z* ]] && break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
