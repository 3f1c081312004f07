#!/usr/bin/env bash
# The README's test command: format and lint gates, then every test of the workspace.
# Services that tests need (none yet: the Modbus simulators run inside the tests) are installed
# from Debian packages and started on loopback here, and stopped again on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace
