#!/usr/bin/env bash
# The README's main command: on a fresh Debian 12 machine, install what the
# host needs, build the golden image (k8s-node-source) and boot it once under QEMU to a
# login prompt, then verify it with `kubebake inspect`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then bash scripts/setup-host.sh; else sudo bash scripts/setup-host.sh; fi

# Reproducible by default: timestamps come from the last commit.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)}"
OUT="${OUT:-out}"
DEF="${DEF:-images/k8s-node-source.yaml}"

cargo build --release -p kubebake -p rolectl
./target/release/kubebake build "$DEF" --out "$OUT"
name="$(basename "$DEF" .yaml)"
./target/release/kubebake inspect "$OUT/$name.qcow2"
./target/release/kubebake boot "$OUT/$name.qcow2" --until-login
