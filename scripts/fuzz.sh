#!/usr/bin/env bash
# Runs the cargo-fuzz targets against their corpora kept in the repository:
#   userdata    rolectl's user-data parser       (roles/fuzz, corpus roles/fuzz/corpus/userdata)
#   definition  kubebake's image definition parser (builder/fuzz, corpus builder/fuzz/corpus/definition)
#
#   usage: scripts/fuzz.sh ci                      userdata 60 s, then definition 45 s (CI)
#          scripts/fuzz.sh TARGET SECONDS [ARGS]   one target, e.g. a long run:
#                                                  nice scripts/fuzz.sh userdata 3600
#          scripts/fuzz.sh cmin TARGET             minimise the target's corpus in place
#
# Bounded by -max_total_time; fails (non-zero) on a crash, leak or timeout,
# leaving the input in <fuzz dir>/artifacts/TARGET/. Prints executions and
# exec/s per target from libFuzzer's final stats. New inputs found go into a
# scratch copy of the corpus (not the repository): to keep them, run a long
# run with KEEP=1, then `scripts/fuzz.sh cmin TARGET` and commit the corpus.
#
# cargo-fuzz needs nightly -Z flags: with only a stable toolchain,
# RUSTC_BOOTSTRAP=1 enables them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CARGO_FUZZ_VERSION=0.13.2
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

# Build outside the checkout: CI runs in a fresh clone, where in-tree
# fuzz/target directories would be empty (the definition target builds
# only the small definition/ crate and its dependencies, see its Cargo.toml).
# Registry dependencies stay built across clones; only the path crates
# rebuild. One directory per target (each project has its own lock file).
FUZZ_TARGET_ROOT=${KUBEBAKE_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubebake/fuzz-target}

# TARGET -> crate dir (the one holding the fuzz project), libFuzzer max_len.
crate_dir() {
  case "$1" in
    userdata) echo "$root/roles" ;;
    definition) echo "$root/builder" ;;
    *) echo "unknown fuzz target $1 (userdata, definition)" >&2; exit 2 ;;
  esac
}
max_len() {
  case "$1" in
    userdata) echo 65536 ;;
    # Larger definitions parse slowly (~200 exec/s at 24 KB); 8 KB holds
    # every section and keeps ~1,000 exec/s.
    definition) echo 8192 ;;
  esac
}

# run TARGET SECONDS [libFuzzer args...]
run() {
  local target=$1 secs=$2
  shift 2
  local dir corpus work log rc=0
  dir=$(crate_dir "$target")
  corpus="$dir/fuzz/corpus/$target"
  if [ "${KEEP:-0}" = 1 ]; then
    work=$corpus
  else
    work=$(mktemp -d)
    cp -r "$corpus/." "$work/"
  fi
  log=$(mktemp)
  echo "== fuzz $target for ${secs} s (corpus: $(ls "$corpus" | wc -l) inputs)"
  (cd "$dir" && cargo fuzz build --fuzz-dir fuzz --target-dir "$FUZZ_TARGET_ROOT/$target" "$target")
  (cd "$dir" && cargo fuzz run --fuzz-dir fuzz --target-dir "$FUZZ_TARGET_ROOT/$target" "$target" "$work" -- \
    -max_total_time="$secs" -max_len="$(max_len "$target")" \
    -print_final_stats=1 "$@") >"$log" 2>&1 || rc=$?
  [ "${KEEP:-0}" = 1 ] || rm -rf "$work"
  local execs rate
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$log"
    echo "FUZZ FAILED: $target (exit $rc); input in $dir/fuzz/artifacts/$target/" >&2
    rm -f "$log"
    return "$rc"
  fi
  rm -f "$log"
  echo "fuzz $target: ${execs:-?} executions in ${secs} s, ${rate:-?} exec/s, no crash"
}

cmin() {
  local target=$1 dir corpus
  dir=$(crate_dir "$target")
  corpus="$dir/fuzz/corpus/$target"
  (cd "$dir" && cargo fuzz cmin --fuzz-dir fuzz --target-dir "$FUZZ_TARGET_ROOT/$target" "$target" "$corpus" -- \
    -max_len="$(max_len "$target")")
  echo "corpus $target: $(ls "$corpus" | wc -l) inputs, $(du -sh "$corpus" | cut -f1)"
}

case "${1:-}" in
  ci)
    run userdata 60
    run definition 45
    ;;
  cmin)
    cmin "${2:?usage: scripts/fuzz.sh cmin TARGET}"
    ;;
  userdata | definition)
    run "$1" "${2:?usage: scripts/fuzz.sh TARGET SECONDS}" "${@:3}"
    ;;
  *)
    sed -n '2,18p' "$0" >&2
    exit 2
    ;;
esac
