#!/usr/bin/env bash
# Builds the field binary (no demo broker) for Raspberry Pi gateways, runs the aarch64 unit
# tests under qemu-user, and prints the stripped binary sizes; fails when the aarch64 one is
# above its budget of 6 MB (issue "One pipeline on one thread"):
#   aarch64-unknown-linux-gnu       Pi 3/4/5 with a 64-bit OS
#   armv7-unknown-linux-gnueabihf   Pi 2/3/4 with a 32-bit OS
# Needs rustup (targets are added) and installs Debian's cross compilers and qemu-user-static.
# With --deb, also builds the Debian packages (cargo-deb) into target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A gcc=([aarch64-unknown-linux-gnu]=aarch64-linux-gnu [armv7-unknown-linux-gnueabihf]=arm-linux-gnueabihf)
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v arm-linux-gnueabihf-gcc >/dev/null || missing+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

for target in "${!gcc[@]}"; do
  rustup target add "$target" >/dev/null
  echo "== building $target"
  cargo build --release --no-default-features --target "$target" --bin retrofit-gateway
  bin=target/$target/release/retrofit-gateway
  "${gcc[$target]}-strip" -o "$bin.stripped" "$bin"
  file "$bin.stripped" 2>/dev/null || true
  echo "$target: $(stat -c %s "$bin.stripped") bytes stripped ($(( $(stat -c %s "$bin.stripped") / 1024 )) KiB)"
done
budget=6000000
size=$(stat -c %s target/aarch64-unknown-linux-gnu/release/retrofit-gateway.stripped)
if [ "$size" -gt "$budget" ]; then
  echo "aarch64 field binary: $size bytes, above the budget of $budget" >&2
  exit 1
fi

# The unit tests in a debug build: the release profile's LTO would take longer to build than
# the tests take to run under emulation.
echo "== aarch64 unit tests under qemu-aarch64-static"
cargo test --no-default-features --target aarch64-unknown-linux-gnu --lib \
  -p retrofit-gateway -p meter-frames

if [ "${1:-}" = "--deb" ]; then
  command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
  for target in "${!gcc[@]}"; do
    cargo deb --no-build --target "$target"
  done
  ls -l target/*/debian/*.deb
fi
