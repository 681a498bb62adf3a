#!/usr/bin/env bash
# kubebake recipe: the static busybox binary, taken unchanged from Debian
# bookworm's busybox-static package (no compilation).
#
# Source (non-tarball, placed unchanged in $KUBEBAKE_SOURCES by the builder):
#   https://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_amd64.deb
#   sha256 3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744
#   (apt: busybox-static=1:1.35.0-4+deb12u1+b1, 928188 bytes)
# No tarballs, no patches; cwd (the empty tree root) is not used.
#
# Environment: KUBEBAKE_SOURCES KUBEBAKE_OUT KUBEBAKE_VERSION (the upstream
# version 1.35.0 or the full Debian version 1:1.35.0-4+deb12u1+b1), PATH.
# Output in $KUBEBAKE_OUT: busybox. Needs only dpkg-deb and tar (essential).
set -euo pipefail

log() { printf '[busybox.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

: "${KUBEBAKE_OUT:?KUBEBAKE_OUT not set}"
: "${KUBEBAKE_SOURCES:?KUBEBAKE_SOURCES not set}"
: "${KUBEBAKE_VERSION:?KUBEBAKE_VERSION not set}"

shopt -s nullglob
debs=("$KUBEBAKE_SOURCES"/busybox-static_*_amd64.deb)
[ ${#debs[@]} -eq 1 ] || die "want exactly one busybox-static_*_amd64.deb in $KUBEBAKE_SOURCES, found ${#debs[@]}"
deb=${debs[0]}

pkg=$(dpkg-deb -f "$deb" Package)
ver=$(dpkg-deb -f "$deb" Version)
[ "$pkg" = busybox-static ] || die "$deb is package '$pkg', not busybox-static"
upstream=${ver#*:}
upstream=${upstream%-*}
[ "$KUBEBAKE_VERSION" = "$ver" ] || [ "$KUBEBAKE_VERSION" = "$upstream" ] ||
  die "KUBEBAKE_VERSION=$KUBEBAKE_VERSION but $deb is version $ver"

log "extracting ./bin/busybox from $(basename "$deb") ($ver)"
dpkg-deb --fsys-tarfile "$deb" | tar -xO -f - ./bin/busybox >"$KUBEBAKE_OUT/busybox"
chmod 0755 "$KUBEBAKE_OUT/busybox"
[ -s "$KUBEBAKE_OUT/busybox" ] || die "empty busybox"
# ELF magic, then run it (no `file`/readelf needed on the host).
[ "$(od -An -tx1 -N4 "$KUBEBAKE_OUT/busybox" | tr -d ' \n')" = 7f454c46 ] || die "busybox is not ELF"
"$KUBEBAKE_OUT/busybox" true 2>/dev/null || die "busybox does not run"
log "done: $(sha256sum "$KUBEBAKE_OUT/busybox")"
