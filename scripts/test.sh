#!/usr/bin/env bash
# The README's test command: format and lint gates, then every test of the workspace against real
# services. InfluxDB 1.x, VictoriaMetrics and Mosquitto come from Debian packages (installed if missing) and
# are started here on loopback, on free ports, with their data in a temporary directory; the
# tests find them through RGW_TEST_* variables and fail (never skip) when those are missing.
# Everything started here is stopped again by PID on exit.
#
# Needs: a Rust toolchain (rust-version in Cargo.toml or newer), python3 and, when a service is
# missing, root (it is installed with apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
for tool in cargo python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "scripts/test.sh needs $tool on PATH" >&2
    exit 1
  fi
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Installs Debian packages whose command is missing.
need() {
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "scripts/test.sh needs root to install ${missing[*]} (or install them first)" >&2
      exit 1
    fi
    echo "== installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until a URL answers with the expected text, or fails after 30 s.
wait_for() {
  local url=$1 expect=$2 name=$3
  for _ in $(seq 1 300); do
    if curl -s -i "$url" 2>/dev/null | grep -q "$expect"; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not start; its log:" >&2
  cat "$work/$name.log" >&2 || true
  exit 1
}

need influxd influxdb victoria-metrics victoria-metrics curl curl mosquitto mosquitto openssl openssl systemd-analyze systemd

echo "== starting InfluxDB 1.x"
influx_port=$(free_port)
influx_rpc=$(free_port)
mkdir -p "$work/influxdb"
cat > "$work/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$influx_rpc"
[meta]
  dir = "$work/influxdb/meta"
[data]
  dir = "$work/influxdb/data"
  wal-dir = "$work/influxdb/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$influx_port"
  log-enabled = false
[monitor]
  store-enabled = false
EOF
influxd -config "$work/influxdb.conf" > "$work/influxdb.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$influx_port/ping" "204 No Content" influxdb

echo "== starting VictoriaMetrics"
vm_port=$(free_port)
victoria-metrics -storageDataPath "$work/victoria-metrics" -httpListenAddr "127.0.0.1:$vm_port" \
  -retentionPeriod 100y > "$work/victoria-metrics.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$vm_port/health" "OK" victoria-metrics

echo "== starting Mosquitto"
mqtt_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' "$mqtt_port" \
  > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null && break
  sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null; then
  echo "mosquitto did not start; its log:" >&2
  cat "$work/mosquitto.log" >&2
  exit 1
fi

export RGW_TEST_INFLUXDB1_URL="http://127.0.0.1:$influx_port"
export RGW_TEST_VICTORIA_URL="http://127.0.0.1:$vm_port"
# For tests that stop and restart a server of their own (outages).
RGW_TEST_VICTORIA_BIN=$(command -v victoria-metrics)
export RGW_TEST_VICTORIA_BIN
export RGW_TEST_MQTT_ADDR="127.0.0.1:$mqtt_port"
RGW_TEST_MOSQUITTO_BIN=$(command -v mosquitto)
export RGW_TEST_MOSQUITTO_BIN
export RGW_TEST_SERVICES=1

echo "== no import circle between the top-level modules of src/"
python3 scripts/module-cycles.py

echo "== the InfluxQL dashboards are what scripts/influxql-dashboards.py makes of the Flux ones"
python3 scripts/influxql-dashboards.py --check

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo clippy -D warnings, field build (no demo broker)"
cargo clippy --no-default-features -- -D warnings

echo "== cargo test"
cargo test --workspace

echo "== demo from a directory outside the repository (its config is built in)"
(cd "$work" && "$repo/target/debug/retrofit-gateway" demo --duration 5s --no-faults >"$work/demo.out" 2>"$work/demo.err") || {
  cat "$work/demo.out" "$work/demo.err" >&2
  exit 1
}
grep -q "Device summary" "$work/demo.out"
