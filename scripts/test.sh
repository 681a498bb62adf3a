#!/usr/bin/env bash
# The README's test command: installs what the host needs, then runs every
# test: lints, unit and integration tests of both crates, the image build
# (twice, for reproducibility) with inspect, and the QEMU VM tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then bash scripts/setup-host.sh; else sudo bash scripts/setup-host.sh; fi
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# rolectl is baked into the images the tests build; kubebake builds the
# golden image the VM tests boot.
cargo build --release -p rolectl -p kubebake
if [ ! -f out/k8s-node-offline.qcow2 ] || [ -n "${KUBEBAKE_REBUILD:-}" ]; then
  ./target/release/kubebake build images/k8s-node-offline.yaml --out out
fi
# VM tests run one cluster at a time (2 cores); the rest run in parallel.
cargo test --workspace --release -- --test-threads=2
