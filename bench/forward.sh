#!/usr/bin/env bash
# Store-and-forward benchmark: encode + append rate of the telemetry log, backlog drain rate into
# VictoriaMetrics (v2 write API, gzip, 5 000-line batches) and end-to-end throughput. Starts its
# own VictoriaMetrics on a free loopback port (Debian package victoria-metrics).
#
#   bench/forward.sh            # 200 000 samples of 20 fields
#   bench/forward.sh 500000
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${1:-200000}
command -v victoria-metrics >/dev/null || { echo "needs the victoria-metrics package" >&2; exit 1; }

cargo build --release -q --example forward_bench
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
victoria-metrics -storageDataPath "$work/vm" -httpListenAddr "127.0.0.1:$port" -retentionPeriod 100y \
  > "$work/vm.log" 2>&1 &
vm_pid=$!
trap 'kill $vm_pid 2>/dev/null || true; wait $vm_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do curl -s "http://127.0.0.1:$port/health" | grep -q OK && break; sleep 0.1; done

target/release/examples/forward_bench "http://127.0.0.1:$port" "$SAMPLES"
