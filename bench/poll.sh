#!/usr/bin/env bash
# Polling benchmark: the release gateway polls N simulated booster controllers (Modbus TCP on
# loopback, 10 units per bus, 27 registers per read) for a fixed time. Prints Modbus transactions
# per second, the gateway's CPU seconds and its peak resident memory.
#
#   bench/poll.sh                 # N = 10 and 100, 30 s each, every device every 1 s
#   DURATION=60 INTERVAL=500ms bench/poll.sh 10 100 200
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30}
INTERVAL=${INTERVAL:-1s}
PORT_BASE=${PORT_BASE:-16000}
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(10 100)

cargo build --release -q --workspace
work=$(mktemp -d)
sim_pid=""
gw_pid=""
cleanup() {
  [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null || true
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ticks=$(getconf CLK_TCK)
printf '%-8s %-9s %-10s %-14s %-12s %-12s %s\n' devices interval seconds "transactions/s" "cpu seconds" "cpu %" "peak RSS"
for n in "${COUNTS[@]}"; do
  per_bus=10
  buses=$(( (n + per_bus - 1) / per_bus ))
  config="$work/fleet-$n.toml"
  {
    printf '[gateway]\nid = "bench"\nsite = "bench"\ndata_dir = "%s"\nprofile_dir = "%s/config/profiles"\n\n' "$work" "$PWD"
    for b in $(seq 1 "$buses"); do
      printf '[[bus]]\nid = "fleet-%02d"\ntransport = "tcp"\naddress = "127.0.0.1:%d"\n\n' "$b" $((PORT_BASE + b))
    done
    for d in $(seq 1 "$n"); do
      b=$(( (d - 1) / per_bus + 1 )); unit=$(( (d - 1) % per_bus + 1 ))
      printf '[[device]]\nid = "pump-%04d"\nbus = "fleet-%02d"\nunit = %d\nprofile = "booster-pump-cdab"\ninterval = "%s"\n\n' "$d" "$b" "$unit" "$INTERVAL"
    done
    printf '[outputs.line_protocol]\npath = "%s/lines-%d.txt"\n' "$work" "$n"
  } > "$config"

  target/release/retrofit-sim --fleet "$n" --per-bus "$per_bus" --port-base "$PORT_BASE" > "$work/sim.out" 2>&1 &
  sim_pid=$!
  for _ in $(seq 1 100); do grep -q "fleet-$(printf %02d "$buses")" "$work/sim.out" 2>/dev/null && break; sleep 0.1; done

  target/release/retrofit-gateway run -c "$config" 2> "$work/gw-$n.log" &
  gw_pid=$!
  sleep "$DURATION"
  read -r -a stat < "/proc/$gw_pid/stat"
  # Fields 14 and 15 (1-based) are user and system time in clock ticks.
  cpu_ticks=$(( stat[13] + stat[14] ))
  peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$gw_pid/status")
  kill -TERM "$gw_pid"; wait "$gw_pid" || true; gw_pid=""
  kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=""

  sum() { grep -o "$1=[0-9]*" "$work/gw-$n.log" | cut -d= -f2 | awk '{s += $1} END {print s + 0}'; }
  transactions=$(sum transactions)
  timeouts=$(sum timeouts)
  lines=$(wc -l < "$work/lines-$n.txt")
  awk -v n="$n" -v iv="$INTERVAL" -v d="$DURATION" -v tx="$transactions" -v ticks="$cpu_ticks" \
      -v hz="$ticks" -v kb="$peak_kb" 'BEGIN {
    cpu = ticks / hz
    printf "%-8s %-9s %-10s %-14.1f %-12.2f %-12.2f %.1f MiB\n", n, iv, d, tx / d, cpu, 100 * cpu / d, kb / 1024
  }'
  echo "         ($transactions transactions, $timeouts timeouts, $lines lines written)"
done
