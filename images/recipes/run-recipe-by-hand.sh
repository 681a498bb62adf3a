#!/usr/bin/env bash
# Dev tool: run a kubebake build recipe by hand the way the builder does.
#
#   1. make a fresh work dir: tree/ home/ tmp/ sources/ (under --work or mktemp)
#   2. verify and unpack each --tar into tree/ (tar --strip-components N),
#      copy each --file unchanged into sources/ ($KUBEBAKE_SOURCES)
#   3. apply --series (a quilt series file inside the unpacked tree; comments,
#      blank lines and a -p1 option ignored) and --patch files, in order, with
#      `patch -p1 --forward --no-backup-if-mismatch` from the tree root
#   4. `env -i ... bash RECIPE` with cwd = tree root and only the contract's
#      variables: PATH HOME TMPDIR SOURCE_DATE_EPOCH KUBEBAKE_OUT
#      KUBEBAKE_VERSION KUBEBAKE_JOBS LANG KUBEBAKE_SOURCES
#   5. check OUTDIR holds exactly the --output names as plain files and
#      print their sha256
#
# Usage: run-recipe-by-hand.sh [options] RECIPE OUTDIR
#   --version V            KUBEBAKE_VERSION (required)
#   --epoch N              SOURCE_DATE_EPOCH (default 1700000000)
#   --jobs N               KUBEBAKE_JOBS (default: nproc)
#   --tar FILE[:N[:SHA]]   tarball, --strip-components N (default 0),
#                          optional sha256 to verify; repeatable, in order
#   --file FILE[:SHA]      non-tarball source for $KUBEBAKE_SOURCES; repeatable
#   --series PATH          quilt series file, path relative to the tree root
#   --patch FILE           one more patch (applied after --series); repeatable
#   --output NAME          declared output; repeatable (then checked exactly)
#   --work DIR             parent for the work dir (default $TMPDIR or /tmp)
#   --keep                 keep the work dir (tree, home, tmp) afterwards
#
# Example (the busybox release tarball in /tmp/kb/src; a file for
# $KUBEBAKE_SOURCES would be --file FILE:SHA, a quilt series inside the tree
# --series debian/patches/series):
#   S=/tmp/kb/src
#   images/recipes/run-recipe-by-hand.sh --version 1.37.0 \
#     --tar $S/busybox_1.37.0.orig.tar.bz2:1:3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4 \
#     --output busybox images/recipes/busybox.sh /tmp/kb/out-busybox
set -euo pipefail

die() { echo "run-recipe-by-hand: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

version= epoch=1700000000 jobs=$(nproc) series= work_parent=${TMPDIR:-/tmp} keep=0
tars=() files=() patches=() outputs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=$2; shift 2 ;;
    --epoch) epoch=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --tar) tars+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --series) series=$2; shift 2 ;;
    --patch) patches+=("$(realpath "$2")"); shift 2 ;;
    --output) outputs+=("$2"); shift 2 ;;
    --work) work_parent=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || usage
[ -n "$version" ] || die "--version is required"
recipe=$(realpath "$1")
[ -f "$recipe" ] || die "no recipe $1"
mkdir -p "$2"
out=$(realpath "$2")
[ -z "$(ls -A "$out")" ] || die "OUTDIR $out is not empty"

mkdir -p "$work_parent"
work=$(mktemp -d "$(realpath "$work_parent")/kubebake-recipe.XXXXXX")
cleanup() { if [ "$keep" = 1 ]; then echo "run-recipe-by-hand: kept $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT
mkdir "$work/tree" "$work/home" "$work/tmp" "$work/sources"
echo "run-recipe-by-hand: work dir $work" >&2

check_sha() { # FILE SHA
  [ -z "$2" ] && return 0
  local have
  have=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$have" = "$2" ] || die "sha256 mismatch for $1: have $have want $2"
}

for spec in "${tars[@]}"; do
  IFS=: read -r f strip sha <<<"$spec"
  [ -f "$f" ] || die "no tarball $f"
  check_sha "$f" "${sha:-}"
  echo "run-recipe-by-hand: unpack $(basename "$f") (strip ${strip:-0})" >&2
  tar -x -f "$f" -C "$work/tree" --strip-components "${strip:-0}" --no-same-owner
done
for spec in "${files[@]}"; do
  IFS=: read -r f sha <<<"$spec"
  [ -f "$f" ] || die "no file $f"
  check_sha "$f" "${sha:-}"
  cp "$f" "$work/sources/"
done

apply() { # PATCHFILE
  echo "run-recipe-by-hand: patch $1" >&2
  (cd "$work/tree" && patch -p1 --forward --no-backup-if-mismatch -s <"$1") ||
    die "patch $1 does not apply"
}
if [ -n "$series" ]; then
  sfile="$work/tree/$series"
  [ -f "$sfile" ] || die "no series file $series in the tree"
  pdir=$(dirname "$sfile")
  while read -r line; do
    line=${line%%#*}
    read -r -a words <<<"$line"
    [ ${#words[@]} -gt 0 ] || continue
    for opt in "${words[@]:1}"; do
      [ "$opt" = -p1 ] || die "series entry '$line': option $opt not supported (contract is -p1)"
    done
    apply "$pdir/${words[0]}"
  done <"$sfile"
fi
for p in "${patches[@]}"; do apply "$p"; done

echo "run-recipe-by-hand: bash $recipe (SOURCE_DATE_EPOCH=$epoch KUBEBAKE_VERSION=$version)" >&2
start=$(date +%s)
(cd "$work/tree" && env -i \
  PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  HOME="$work/home" \
  TMPDIR="$work/tmp" \
  SOURCE_DATE_EPOCH="$epoch" \
  KUBEBAKE_OUT="$out" \
  KUBEBAKE_VERSION="$version" \
  KUBEBAKE_JOBS="$jobs" \
  KUBEBAKE_SOURCES="$work/sources" \
  LANG=C.UTF-8 \
  bash "$recipe") || die "recipe failed (exit $?)"
echo "run-recipe-by-hand: recipe took $(( $(date +%s) - start ))s" >&2

for f in "$out"/* "$out"/.[!.]*; do
  [ -e "$f" ] || continue
  [ -f "$f" ] && [ ! -L "$f" ] || die "output $(basename "$f") is not a plain file"
done
if [ ${#outputs[@]} -gt 0 ]; then
  want=$(printf '%s\n' "${outputs[@]}" | sort)
  have=$(cd "$out" && ls -A | sort)
  [ "$want" = "$have" ] || die "outputs differ from the declared ones: want [$(echo $want)] have [$(echo $have)]"
fi
(cd "$out" && sha256sum -- *)
