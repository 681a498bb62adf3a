#!/usr/bin/env bash
# The README's test command: installs what the host needs, then runs every
# test: formatting and lints, unit and integration tests of the builder,
# rolectl and the VM harness (definition, fetch against loopback HTTP,
# rendering, golden files, rolectl's user-data corpus and DNS tests, the
# harness's DNS/DHCP/IMDS/QMP units), the image build (twice, for
# reproducibility) with inspect, systemd-analyze verify, and the QEMU VM tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then bash scripts/setup-host.sh; else sudo bash scripts/setup-host.sh; fi
# The same epoch as the build tests, so the golden image and the tests share
# one cached base root filesystem (one mmdebstrap run per machine).
export SOURCE_DATE_EPOCH=1700000000
start=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - start )) s)"; }

stamp "fmt + clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

# rolectl is baked into every image (release: ≤ 2 MB); kubebake builds the
# golden image that the image and VM tests use.
stamp "build"
cargo build --release -p rolectl
cargo build -p kubebake
stamp "golden image"
./target/debug/kubebake build images/k8s-node-source.yaml --out out --rolectl target/release/rolectl

stamp "tests"
cargo test --workspace --exclude kubebake-vmtests
stamp "fuzz"
# Bounded runs of the fuzz targets over their committed corpora (~2 min
# warm); fails on a crash. Long runs: see docs/fuzzing.md.
bash scripts/fuzz.sh ci
stamp "VM tests"
# Each VM test file boots its VMs in parallel; the files run one after the
# other (2 cores). --nocapture prints the measured boot stages (TIME lines).
cargo test -p kubebake-vmtests --no-fail-fast -- --nocapture
stamp "done"
