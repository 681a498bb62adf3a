#!/usr/bin/env bash
# kubebake recipe: a static busybox compiled from upstream's release source,
# upstream's default configuration, no distribution patches.
#
# Source (a tarball, unpacked into the tree root by the builder with
# --strip-components 1): Debian's copy of upstream's release tarball, byte
# for byte the one busybox.net publishes,
#   https://deb.debian.org/debian/pool/main/b/busybox/busybox_1.37.0.orig.tar.bz2
#   sha256 3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4
# No patches. Why not Debian's busybox-static: Debian reverts upstream commit
# 9c143ce5 (ash passes on environment variables whose names are not shell
# identifiers, such as `data-1`), so `sh -c env` there drops the variables
# Kubernetes' conformance tests give a pod through `envFrom`.
#
# Configuration: `make defconfig`, then CONFIG_STATIC=y (a container image
# with no libc) and nothing else. Reproducible: kconfig's AUTOCONF_TIMESTAMP
# (the version banner) comes from SOURCE_DATE_EPOCH, the tree's path does
# not reach the stripped binary.
#
# Environment: KUBEBAKE_OUT KUBEBAKE_VERSION (1.37.0, checked against the
# tree's Makefile) KUBEBAKE_JOBS SOURCE_DATE_EPOCH, PATH.
# Toolchain (pinned in the definition): gcc-12, libc6-dev (static glibc),
# make, bzip2 (for the builder's tar).
# Output in $KUBEBAKE_OUT: busybox.
set -euo pipefail

log() { printf '[busybox.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

: "${KUBEBAKE_OUT:?KUBEBAKE_OUT not set}"
: "${KUBEBAKE_VERSION:?KUBEBAKE_VERSION not set}"
: "${SOURCE_DATE_EPOCH:?SOURCE_DATE_EPOCH not set: the version banner would carry the build time}"
jobs=${KUBEBAKE_JOBS:-1}

[ -f Makefile ] && [ -f Config.in ] || die "no busybox tree in $(pwd) (want the release tarball unpacked with strip-components 1)"
mk() { sed -n "s/^$1 = //p" Makefile; }
tree_version="$(mk VERSION).$(mk PATCHLEVEL).$(mk SUBLEVEL)$(mk EXTRAVERSION)"
[ "$tree_version" = "$KUBEBAKE_VERSION" ] ||
  die "KUBEBAKE_VERSION=$KUBEBAKE_VERSION but the source tree is busybox $tree_version"

# gcc-12 by name: the version the definition pins, whatever `cc` points at.
export CC=gcc-12 HOSTCC=gcc-12
log "configuring busybox $tree_version: defconfig + CONFIG_STATIC=y ($($CC --version | head -n1))"
make -s CC="$CC" HOSTCC="$HOSTCC" defconfig >/dev/null
sed -i 's/^# CONFIG_STATIC is not set$/CONFIG_STATIC=y/' .config
grep -qx 'CONFIG_STATIC=y' .config || die "defconfig has no CONFIG_STATIC line to turn on"
make -s CC="$CC" HOSTCC="$HOSTCC" oldconfig </dev/null >/dev/null
grep -qx 'CONFIG_STATIC=y' .config || die "oldconfig turned CONFIG_STATIC off"

log "compiling with $jobs jobs"
# busybox's own link step strips busybox_unstripped into busybox. Its
# warnings (getpwnam in a static glibc binary and the like) are expected.
make -s -j"$jobs" CC="$CC" HOSTCC="$HOSTCC" KCONFIG_NOTIMESTAMP=1 busybox 2>&1 |
  grep -v -e 'statically linked applications requires at runtime' -e 'in function' >&2 || true
[ -x busybox ] || die "make produced no busybox binary"

install -m 0755 busybox "$KUBEBAKE_OUT/busybox"
# ELF magic, static, and it runs (no `file`/readelf needed on the host).
[ "$(od -An -tx1 -N4 "$KUBEBAKE_OUT/busybox" | tr -d ' \n')" = 7f454c46 ] || die "busybox is not ELF"
"$KUBEBAKE_OUT/busybox" true || die "busybox does not run"
banner=$("$KUBEBAKE_OUT/busybox" --help 2>&1 | head -n1 || true)
case "$banner" in
  "BusyBox v$KUBEBAKE_VERSION "*) ;;
  *) die "unexpected version banner: $banner" ;;
esac
# The reason for this build: ash passes on variables that are not shell
# identifiers (upstream 9c143ce5).
got=$(env -i data-1=value-1 "$KUBEBAKE_OUT/busybox" sh -c "$KUBEBAKE_OUT/busybox env" | grep -c '^data-1=value-1$' || true)
[ "$got" = 1 ] || die "ash drops the variable data-1: not upstream's behaviour"
log "done: $banner; $(sha256sum "$KUBEBAKE_OUT/busybox")"
