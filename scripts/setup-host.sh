#!/usr/bin/env bash
# Installs everything kubebake needs on a fresh Debian 12 (bookworm) host.
# Idempotent: re-running it only installs what is missing.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host.sh: must run as root (apt-get install)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
BACKPORTS=/etc/apt/sources.list.d/bookworm-backports.sources
if [ ! -f "$BACKPORTS" ]; then
  cat >"$BACKPORTS" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

# Packages for building images (mmdebstrap, mkfs, syslinux, mtools),
# inspecting them (libguestfs), booting them (qemu from backports, to match
# the preinstalled qemu-utils 10), networking VM tests (iproute2, dnsmasq-free:
# the harness serves DNS itself) and generating user-data (cloud-init).
PKGS=(
  mmdebstrap e2fsprogs dosfstools mtools syslinux syslinux-common extlinux
  fdisk zstd xz-utils cpio busybox-static
  libguestfs-tools libguestfs-dev guestfs-tools linux-image-cloud-amd64
  iproute2 iptables curl ca-certificates
  cloud-init cloud-image-utils systemd
  pkg-config libclang-dev clang
  # Builds (builds: in images/*.yaml). Go builds run the host's `go`
  # (/usr/local/go, checked below), which fetches each build's pinned
  # toolchain from the module proxy; the C compiler and headers they pin:
  # gcc + libc6-dev (the static pause, runc's cgo), libseccomp-dev and
  # pkgconf (runc's seccomp), libpcap0.8-dev (weaver). Recipe builds: tar,
  # patch; busybox's compile: gcc-12, libc6-dev, make, bzip2 (its tarball).
  gcc-12=12.2.0-14+deb12u1 gcc libc6-dev=2.36-9+deb12u14 make=4.3-4.1
  bzip2=1.0.8-5+b1
  libseccomp-dev=2.5.4-1+deb12u1 pkgconf=1.8.1-1 binutils patch
  libpcap0.8-dev=1.10.3-1
  # cargo-fuzz (scripts/fuzz.sh): libfuzzer-sys compiles libFuzzer's C++.
  g++
)
missing=()
for p in "${PKGS[@]}"; do
  # NAME or NAME=VERSION (then that exact version must be installed)
  name=${p%%=*}
  have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
  case "$p" in
    *=*) [ "$have" = "install ok installed ${p#*=}" ] || missing+=("$p") ;;
    *) [[ "$have" == "install ok installed "* ]] || missing+=("$p") ;;
  esac
done
need_qemu=0
command -v qemu-system-x86_64 >/dev/null || need_qemu=1
if [ ${#missing[@]} -gt 0 ] || [ $need_qemu -eq 1 ]; then
  apt-get update -q
fi
if [ $need_qemu -eq 1 ]; then
  apt-get install -y -q -t bookworm-backports qemu-system-x86 qemu-utils
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# cloud-init is here only for `cloud-init devel make-mime` in tests: keep it
# from configuring this host at its next boot.
if [ -d /etc/cloud ] && [ ! -e /etc/cloud/cloud-init.disabled ]; then
  touch /etc/cloud/cloud-init.disabled
fi
# Go builds need a host `go` 1.21+ (it switches to each build's pinned
# GOTOOLCHAIN by itself). The project machines have Go at /usr/local/go; a
# host without one gets Debian's bookworm-backports Go, which is new enough.
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
  apt-get update -q
  apt-get install -y -q -t bookworm-backports golang-go
fi
echo "setup-host.sh: host ready"
