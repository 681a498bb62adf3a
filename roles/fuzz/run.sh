#!/usr/bin/env bash
# Runs the user-data parser fuzzer for N seconds (default 300).
# Seeds the corpus from tests/fixtures/userdata/*/*/user-data.
# Stable toolchains work through RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags).
#   usage: roles/fuzz/run.sh [SECONDS] [extra libFuzzer args...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-300}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
corpus="$here/corpus/userdata"
mkdir -p "$corpus"
for f in "$here"/../tests/fixtures/userdata/*/*/user-data; do
  case_name=$(basename "$(dirname "$f")")
  cp "$f" "$corpus/seed-$case_name"
done
cd "$here/.."
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir "$here" userdata "$corpus" -- \
  -max_total_time="$secs" -max_len=65536 -print_final_stats=1 "$@"
