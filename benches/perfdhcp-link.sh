# Shared by the perfdhcp benchmarks (sourced, not run): a server namespace and a client
# namespace joined by a veth pair (vsrv 10.77.0.1/16, vcli 10.77.0.2/16), stopping a server
# process, and the rate sweep with its summary.

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

# The sweep both DHCP side-by-sides run (dhcp-vs-peers.sh, dhcp6-vs-kea.sh). The sourcing
# script defines prepare_server NAME (writes its configuration; non-zero skips the server),
# start_server NAME, stop_server and measure RATE (prints "sent replies unanswered% leases/s
# cpu-us/lease client-drops reply-ms"), and sets SERVERS, RATES, REPEAT, CPU_RATE (one rate or
# several, space-separated) and MAX_UNANSWERED (KEEP_GOING: go on past the first rate over the
# bound). Fills BEST and BEST_RATE (the best leases/s within the bound), by server, and CPU
# (the mean CPU per lease at each rate of CPU_RATE), by server and rate.
declare -A BEST BEST_RATE CPU CPU_N
perfdhcp_sweep() {
  local round server rate sent replies unanswered lps cpu drops delay
  printf '%-11s %7s %8s %8s %12s %10s %13s %11s %9s\n' server rate sent replies unanswered% leases/s cpu-us/lease client-drops reply-ms
  for round in $(seq "$REPEAT"); do
    for server in "${SERVERS[@]}"; do
      prepare_server "$server" || continue
      : "${BEST[$server]:=0}" "${BEST_RATE[$server]:=-}"
      for rate in "${RATES[@]}"; do
        start_server "$server" || break
        read -r sent replies unanswered lps cpu drops delay < <(measure "$rate")
        stop_server
        printf '%-11s %7d %8d %8d %12s %10d %13s %11s %9s\n' "$server" "$rate" "$sent" "$replies" "$unanswered" "$lps" "$cpu" "$drops" "$delay"
        # Server CPU per lease at a rate every server sustains: a measure of the server's own
        # cost that does not depend on how much of the machine perfdhcp takes.
        if [[ " $CPU_RATE " == *" $rate "* ]]; then
          CPU[$server,$rate]=$(awk -v a="${CPU[$server,$rate]:-0}" -v b="$cpu" -v k="${CPU_N[$server,$rate]:-0}" \
            'BEGIN { printf "%.1f", (a * k + b) / (k + 1) }')
          CPU_N[$server,$rate]=$((${CPU_N[$server,$rate]:-0} + 1))
        fi
        if awk -v u="$unanswered" -v m="$MAX_UNANSWERED" 'BEGIN { exit !(u > m) }'; then
          [[ -n ${KEEP_GOING:-} ]] && continue
          break
        fi
        if ((lps > BEST[$server])); then
          BEST[$server]=$lps
          BEST_RATE[$server]=$rate
        fi
      done
    done
    ((round == REPEAT)) || echo "--- round $((round + 1)) of $REPEAT"
  done
}

# Prints each server's best leases/s and ours against each peer named ($@), then the CPU per
# lease and each peer's against ours.
perfdhcp_summary() {
  local server peer rate
  echo
  echo "best leases/s with at most ${MAX_UNANSWERED} % unanswered (${PERIOD} s runs, best of $REPEAT, $(nproc) cores shared with perfdhcp):"
  for server in "${!BEST[@]}"; do
    printf '  %-11s %8d  (at rate %s)\n' "$server" "${BEST[$server]}" "${BEST_RATE[$server]}"
  done | sort
  for peer in "$@"; do
    if ((${BEST[maas]:-0} > 0 && ${BEST[$peer]:-0} > 0)); then
      awk -v a="${BEST[maas]}" -v b="${BEST[$peer]}" -v p="$peer" \
        'BEGIN { printf "  maas / %-10s %.2fx\n", p, a / b }'
    fi
  done
  for rate in $CPU_RATE; do
    echo
    echo "server CPU time per lease at $rate leases/s (user + system, mean of $REPEAT):"
    for server in "${SERVERS[@]}"; do
      [[ -n ${CPU[$server,$rate]:-} ]] && printf '  %-11s %8s us\n' "$server" "${CPU[$server,$rate]}"
    done
    for peer in "$@"; do
      if [[ -n ${CPU[maas,$rate]:-} && -n ${CPU[$peer,$rate]:-} ]]; then
        awk -v a="${CPU[maas,$rate]}" -v b="${CPU[$peer,$rate]}" -v p="$peer" \
          'BEGIN { if (a > 0) printf "  %-10s / maas CPU per lease %.2fx\n", p, b / a }'
      fi
    done
  done
}
