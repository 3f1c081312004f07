#!/usr/bin/env bash
# Field-like polling benchmark (issue "One pipeline on one thread"): N meters of 60 holding
# registers (40 fields: f32 CDAB, u16, u32) behind ONE Modbus TCP endpoint that answers after a
# delay, as RS-485 meters behind a serial server do; the release gateway polls them at 1 Hz with
# every rule pack and the KPIs on and forwards to VictoriaMetrics. In the same minute, the floor
# (bench/src/floor_poller.rs: current-thread poll + decode + append to a file, nothing else)
# does the same polling of its own, identical endpoint: both are measured over the same window,
# so that what else the machine does at that time weighs on both alike. Prints CPU seconds per
# minute, peak RSS, polls per second and the gateway's ratio to the floor, for each delay.
#
#   bench/field.sh                        # 100 meters, delays 2 ms and 20 ms, three windows of
#                                         # 60 s measured each (totals in the table, each window
#                                         # below it)
#   DELAYS="2 20 100" MEASURE=120 WINDOWS=1 bench/field.sh
#   OUTAGE=300 bench/field.sh             # VictoriaMetrics away for 300 s: peak RSS while the
#                                         # backlog drains
#   PERF=1 DELAYS=2 bench/field.sh        # also `perf record` the gateway's first window into
#                                         # perf-<delay>ms.data (read with `perf report -i …`)
#   GATEWAY=/tmp/old/retrofit-gateway bench/field.sh   # measure another build (an A/B, or one
#                                         # built with frame pointers for PERF=1)
#
# At 20 ms a poll of 100 meters takes 2 s, longer than the 1 s interval: both programs then poll
# as fast as the bus allows (about 50 polls/s), and the figures compare the same work.
set -euo pipefail
cd "$(dirname "$0")/.."
UNITS=${UNITS:-100}
DELAYS=${DELAYS:-2 20}
WARMUP=${WARMUP:-10}
MEASURE=${MEASURE:-60}
WINDOWS=${WINDOWS:-3}
OUTAGE=${OUTAGE:-0}
PERF=${PERF:-0}
GATEWAY=${GATEWAY:-target/release/retrofit-gateway}

command -v victoria-metrics >/dev/null || { apt-get update -q && apt-get install -y -q victoria-metrics; }
# The field binary, as installed on a gateway (no demo wing), and the benchmark's programs.
cargo build --release -q -p retrofit-gateway --no-default-features
cargo build --release -q -p retrofit-bench
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
hz=$(getconf CLK_TCK)
cpu_ticks() { local stat; read -r -a stat < "/proc/$1/stat"; echo $(( stat[13] + stat[14] )); }
peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

vm_port=$(free_port)
start_vm() {
  victoria-metrics -storageDataPath "$work/vm" -httpListenAddr "127.0.0.1:$vm_port" \
    -retentionPeriod 100y > "$work/vm.log" 2>&1 &
  vm_pid=$!
  pids+=("$vm_pid")
  for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$vm_port/health" | grep -q OK && return; sleep 0.1; done
  echo "VictoriaMetrics did not start" >&2; exit 1
}
start_vm

mkdir -p "$work/profiles"
cp bench/bench-meter.toml "$work/profiles/"
packs=$(ls "$PWD"/config/rules/*.toml | sed 's/.*/"&"/' | paste -sd, -)

printf '%-6s %-8s %-14s %-10s %-10s %s\n' delay program "CPU-s/minute" "peak RSS" "polls/s" "ratio to floor"
for delay in $DELAYS; do
  # One endpoint for the gateway, an identical one for the floor.
  dev_port=$(free_port)
  floor_dev_port=$(free_port)
  dev_pids=()
  for port in "$dev_port" "$floor_dev_port"; do
    target/release/slow-devices --port "$port" --units "$UNITS" --delay-ms "$delay" > "$work/devices-$port.log" 2>&1 &
    dev_pids+=("$!")
    pids+=("$!")
    for _ in $(seq 1 100); do grep -q "answering" "$work/devices-$port.log" 2>/dev/null && break; sleep 0.1; done
  done

  config="$work/gateway-$delay.toml"
  {
    printf '[gateway]\nid = "bench"\nsite = "bench"\ndata_dir = "%s/data-%s"\nprofile_dir = "%s/profiles"\n\n' "$work" "$delay" "$work"
    printf '[http]\nlisten = "127.0.0.1:%s"\n\n' "$(free_port)"
    printf '[[bus]]\nid = "meters"\ntransport = "tcp"\naddress = "127.0.0.1:%s"\ntimeout = "500ms"\n\n' "$dev_port"
    for u in $(seq 1 "$UNITS"); do
      printf '[[device]]\nid = "meter-%03d"\nbus = "meters"\nunit = %d\nprofile = "bench-meter"\ninterval = "1s"\n\n' "$u" "$u"
    done
    printf '[outputs.influxdb]\nurl = "http://127.0.0.1:%s"\napi = "v2"\norg = "bench"\nbucket = "bench"\n\n' "$vm_port"
    printf '[alarms]\nrule_packs = [%s]\n' "$packs"
  } > "$config"
  "$GATEWAY" check-config -c "$config" > /dev/null

  RUST_LOG=info "$GATEWAY" run -c "$config" 2> "$work/gw-$delay.log" &
  gw_pid=$!
  pids+=("$gw_pid")
  sleep "$WARMUP"
  if [ "$OUTAGE" -gt 0 ]; then
    kill "$vm_pid"; wait "$vm_pid" 2>/dev/null || true
    sleep "$OUTAGE"
    start_vm
  fi
  target/release/floor-poller --port "$floor_dev_port" --units "$UNITS" --seconds $(( WARMUP + WINDOWS * MEASURE + 5 )) \
    --out "$work/floor-$delay.txt" > "$work/floor-$delay.log" &
  floor_pid=$!
  pids+=("$floor_pid")
  sleep "$WARMUP"
  # Consecutive windows of the same two processes: each window's figures show the noise, the
  # totals over all of them are the result.
  gw_start=$(cpu_ticks "$gw_pid")
  floor_start=$(cpu_ticks "$floor_pid")
  for window in $(seq 1 "$WINDOWS"); do
    gw_before=$(cpu_ticks "$gw_pid")
    floor_before=$(cpu_ticks "$floor_pid")
    if [ "$PERF" = 1 ] && [ "$window" = 1 ]; then
      perf record -q -F 4999 --call-graph fp -o "perf-${delay}ms.data" -p "$gw_pid" -- sleep "$MEASURE" 2> /dev/null
    else
      sleep "$MEASURE"
    fi
    awk -v d="$delay" -v w="$window" -v g=$(( $(cpu_ticks "$gw_pid") - gw_before )) \
        -v f=$(( $(cpu_ticks "$floor_pid") - floor_before )) -v hz="$hz" -v m="$MEASURE" 'BEGIN {
      printf "%-6s window %d: gateway %.3f, floor %.3f CPU-s/minute (%.1f×)\n", d "ms", w, g / hz * 60 / m, f / hz * 60 / m, g / (f > 0 ? f : 1)
    }' >> "$work/windows.txt"
  done
  gw_after=$(cpu_ticks "$gw_pid")
  floor_after=$(cpu_ticks "$floor_pid")
  gw_peak=$(peak_kb "$gw_pid")
  floor_peak=$(peak_kb "$floor_pid")
  kill -TERM "$gw_pid"; wait "$gw_pid" || true
  wait "$floor_pid" || true
  measured=$(( WINDOWS * MEASURE ))
  gw_polls=$(grep -o 'transactions=[0-9]*' "$work/gw-$delay.log" | cut -d= -f2 | awk '{s += $1} END {print s + 0}')
  gw_seconds=$(( WARMUP + OUTAGE + WARMUP + measured ))
  gw_cpu=$(awk -v t=$(( gw_after - gw_start )) -v hz="$hz" -v m="$measured" 'BEGIN {printf "%.3f", t / hz * 60 / m}')
  floor_polls=$(grep -o '[0-9]* polls' "$work/floor-$delay.log" | cut -d' ' -f1)
  floor_cpu=$(awk -v t=$(( floor_after - floor_start )) -v hz="$hz" -v m="$measured" 'BEGIN {printf "%.3f", t / hz * 60 / m}')
  for pid in "${dev_pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done

  awk -v d="$delay" -v gc="$gw_cpu" -v gk="$gw_peak" -v gp="$gw_polls" -v gs="$gw_seconds" \
      -v fc="$floor_cpu" -v fk="$floor_peak" -v fp="$floor_polls" -v fs=$(( WARMUP + measured + 5 )) 'BEGIN {
    printf "%-6s %-8s %-14.3f %-10s %-10.1f %.1f×\n", d "ms", "gateway", gc, sprintf("%.1f MiB", gk / 1024), gp / gs, gc / (fc > 0 ? fc : 0.001)
    printf "%-6s %-8s %-14.3f %-10s %-10.1f\n", d "ms", "floor", fc, sprintf("%.1f MiB", fk / 1024), fp / fs
  }'
done
echo
cat "$work/windows.txt"
