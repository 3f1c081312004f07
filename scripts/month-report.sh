#!/usr/bin/env bash
# The example monthly report: replays the demo community through a month (a DMA burst, a
# voltage sag, a cold week in one sample flat, a four-hour gateway outage), writes the report to
# target/monthly-report-MONTH.html and screenshots it in headless Chromium (Debian `chromium`,
# `fonts-wqy-microhei` for the Chinese labels) to docs/monthly-report.png.
#
#   scripts/month-report.sh [YYYY-MM]   (default 2025-12, a heating-season month)
set -euo pipefail
cd "$(dirname "$0")/.."
month=${1:-2025-12}

if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi microhei; then
  echo "== installing chromium and fonts-wqy-microhei"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-microhei
fi
cargo build --release -q

data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
report="target/monthly-report-$month.html"
time ./target/release/retrofit-gateway demo-month --month "$month" --data-dir "$data" -o "$report"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size=1100,5600 --virtual-time-budget=2000 \
  --screenshot=docs/monthly-report.png "file://$PWD/$report" 2>/dev/null
echo "== docs/monthly-report.png"
