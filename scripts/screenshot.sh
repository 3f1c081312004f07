#!/usr/bin/env bash
# Loads the status page of a running demo in headless Chromium (Debian `chromium`) and saves
# screenshots under docs/: a phone-sized one and a desktop one. The demo runs its fault
# scenario, so the page shows live values, published MQTT devices and raised alarms.
#
#   scripts/screenshot.sh [SECONDS_INTO_THE_DEMO]   (default 40: alarms are up by then)
set -euo pipefail
cd "$(dirname "$0")/.."
wait_s=${1:-40}

# Chromium, and a CJK font so the Chinese labels render (a phone has its own).
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi microhei; then
  echo "== installing chromium and fonts-wqy-microhei"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-microhei
fi
cargo build --release -q

log=$(mktemp)
./target/release/retrofit-gateway demo --duration "$((wait_s + 30))s" >"$log" 2>&1 &
demo=$!
trap 'kill "$demo" 2>/dev/null || true; rm -f "$log"' EXIT

url=""
for _ in $(seq 1 100); do
  url=$(grep -o 'http://[0-9.:]*/' "$log" | head -1 || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "the demo printed no status page address"; cat "$log"; exit 1; }
echo "== demo status page at $url; waiting ${wait_s}s for the scenario"
sleep "$wait_s"

shoot() {
  local size=$1 out=$2
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="$size" --virtual-time-budget=3000 \
    --screenshot="$out" "$url" 2>/dev/null
  echo "== $out"
}
shoot 430,1900 docs/status-page-phone.png
shoot 1280,1400 docs/status-page.png
