#!/usr/bin/env bash
# Runs the user-data parser fuzzer for N seconds (default 300) against the
# corpus kept in roles/fuzz/corpus/userdata: a thin wrapper of
# scripts/fuzz.sh, which installs the pinned cargo-fuzz and prints the
# executions and exec/s. A long run, keeping what it finds:
#   KEEP=1 nice roles/fuzz/run.sh 3600 && scripts/fuzz.sh cmin userdata
#   usage: roles/fuzz/run.sh [SECONDS] [extra libFuzzer args...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-300}
shift || true
exec "$here/../../scripts/fuzz.sh" userdata "$secs" "$@"
