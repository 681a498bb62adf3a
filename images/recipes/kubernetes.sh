#!/usr/bin/env bash
# kubebake recipe: Kubernetes binaries from Debian bookworm's `kubernetes`
# source package (upstream v1.20.2 with vendored dependencies + Debian patches).
#
# Sources the builder prepares (cwd = tree root):
#   kubernetes_1.20.5+really1.20.2.orig.tar.gz            --strip-components 1
#       (its top-level directory is kubernetes-1.20.2/)
#   kubernetes_1.20.5+really1.20.2-1.1+deb12u1.debian.tar.xz  --strip-components 0
#       (unpacks to debian/)
#   patches: debian/patches/series, in order, `patch -p1 --forward`
#       (three kubectl printing fixes incl. CVE-2021-25743; all apply cleanly)
#   golang-github-modern-go-reflect2_1.0.2.orig.tar.gz    not unpacked: swapped
#       into vendor/ below (the Go 1.18+ fix of reflect2)
#
# Environment (the builder clears everything else):
#   PATH HOME TMPDIR LANG SOURCE_DATE_EPOCH KUBEBAKE_OUT KUBEBAKE_VERSION
#   KUBEBAKE_JOBS
#
# Outputs in $KUBEBAKE_OUT: kubelet kube-proxy kube-apiserver
#   kube-controller-manager kube-scheduler kubeadm kubectl (static Go,
#   CGO_ENABLED=0) and pause (static C, from build/pause/linux/pause.c).
#
# Host packages: golang-1.19-go (=1.19.8-2), make, rsync, gcc, libc6-dev,
# binutils (strip); see scripts/setup-host.sh.
#
# Why not `make WHAT=...` for the Go binaries: hack/lib/golang.sh always adds
# `-gcflags -trimpath=$KUBE_ROOT` (and -asmflags), and Go >= 1.18 records
# -gcflags/-asmflags in the binary's build info, so the absolute path of the
# tree ends up in every binary and two builds in different temp dirs differ.
# So the recipe runs upstream's code generation (`make generated_files`) and
# upstream's GOPATH/version helpers (hack/run-in-gopath.sh,
# kube::version::ldflags), but calls `go install` itself with Go's own
# -trimpath, the same tags and the same ldflags as hack/lib/golang.sh.
set -euo pipefail

log() { printf '[kubernetes.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

: "${KUBEBAKE_OUT:?KUBEBAKE_OUT not set}"
: "${KUBEBAKE_VERSION:?KUBEBAKE_VERSION not set}"
: "${SOURCE_DATE_EPOCH:?SOURCE_DATE_EPOCH not set}"
: "${HOME:?HOME not set}"
: "${TMPDIR:?TMPDIR not set}"
jobs=${KUBEBAKE_JOBS:-1}
umask 0022

GO_BIN=/usr/lib/go-1.19/bin
GO_WANT=go1.19.8
[ -x "$GO_BIN/go" ] || die "$GO_BIN/go missing: apt-get install golang-1.19-go=1.19.8-2"
export PATH="$GO_BIN:$PATH"
for tool in make rsync gcc strip; do
  command -v "$tool" >/dev/null || die "host tool '$tool' missing (scripts/setup-host.sh installs it)"
done
go_have=$(GOFLAGS='' go env GOVERSION)
[ "$go_have" = "$GO_WANT" ] || die "go toolchain is $go_have, this recipe is pinned to $GO_WANT"

[ -f hack/lib/version.sh ] && [ -f build/pause/linux/pause.c ] ||
  die "cwd $(pwd) is not a kubernetes source tree"

# --- version stamping --------------------------------------------------------
# The orig tarball is a `git archive` export: hack/lib/version.sh carries the
# export-subst values (commit and tag). That block *overwrites* any
# KUBE_GIT_COMMIT/KUBE_GIT_VERSION/KUBE_GIT_TREE_STATE from the environment,
# so the only way to control the stamp is KUBE_GIT_VERSION_FILE.
version="v${KUBEBAKE_VERSION}"
tree_commit=$(sed -n "s/^ *KUBE_GIT_COMMIT='\([0-9a-f]\{40\}\)'\$/\1/p" hack/lib/version.sh)
tree_tag=$(sed -n "s/^ *if \[\[ '\(.*\)' =~ tag:.*\$/\1/p" hack/lib/version.sh |
  grep -o 'tag: v[^ ,]*' | head -n1 | sed 's/^tag: //' || true)
if [ -n "$tree_tag" ] && [ "$tree_tag" != "$version" ]; then
  die "KUBEBAKE_VERSION=$KUBEBAKE_VERSION but the tree was exported from tag $tree_tag"
fi
[[ "$version" =~ ^v([0-9]+)\.([0-9]+)(\.[0-9]+)?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]] ||
  die "KUBEBAKE_VERSION=$KUBEBAKE_VERSION is not a semantic version"
major=${BASH_REMATCH[1]}
minor=${BASH_REMATCH[2]}
[ -z "${BASH_REMATCH[4]}" ] || minor+="+"
# Tree state: "archive" is what upstream's own scripts stamp for this exported
# tree (and what Debian's kubectl from this source package reports). "clean"
# would claim the code is exactly $tree_commit, but Debian's patches are
# applied on top; "dirty" is not used because it reads like a local hack.
version_file="$TMPDIR/kube-version-vars"
cat >"$version_file" <<EOF
KUBE_GIT_COMMIT='${tree_commit}'
KUBE_GIT_TREE_STATE='${tree_commit:+archive}'
KUBE_GIT_VERSION='${version}'
KUBE_GIT_MAJOR='${major}'
KUBE_GIT_MINOR='${minor}'
EOF
export KUBE_GIT_VERSION_FILE="$version_file"
log "version: $version commit: ${tree_commit:-<none recorded>} build date: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"

# --- Go environment ------------------------------------------------------------
# hack/lib/init.sh forces GO111MODULE=off (GOPATH mode with vendor/), and
# kube::golang::setup_env puts GOPATH and GOCACHE under _output/local/go in
# the tree (a fresh temp dir per build). No network, no user config.
export CGO_ENABLED=0
export GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOENV=off GOFLAGS=''
export KUBE_VERBOSE=1

# --- vendored reflect2: v1.0.1 -> v1.0.2 -----------------------------------------
# The tree vendors github.com/modern-go/reflect2 v1.0.1 (used by json-iterator
# for every JSON encode in the API server, kubelet, ...). v1.0.1 calls
# reflect.mapiterinit through go:linkname with its pre-Go-1.18 signature; Go
# 1.18 made the caller pass the iterator, so under Go 1.19 the runtime writes
# the map iterator through a garbage pointer. Built as-is, kube-apiserver dies
# every few minutes with "unexpected fault address 0x0 / SIGSEGV" in
# aeshashbody <- mapiternext <- reflect2.(*UnsafeMapType).UnsafeIterate
# <- json-iterator's sortKeysMapEncoder (docs/bootstrap.md). Upstream fixed it
# in v1.0.2 (go_above_118.go), API-compatible; Kubernetes moved to it in 1.24.
# Debian packages v1.0.2 (golang-github-modern-go-reflect2); its orig tarball
# is a source of this build, swapped into vendor/ here. GOPATH mode (see
# below) does not check vendor/modules.txt, which still names v1.0.1.
reflect2_tar="$KUBEBAKE_SOURCES/golang-github-modern-go-reflect2_1.0.2.orig.tar.gz"
[ -f "$reflect2_tar" ] || die "source $reflect2_tar missing (see the definition's builds[].sources)"
reflect2_dir=vendor/github.com/modern-go/reflect2
[ -d "$reflect2_dir" ] || die "$reflect2_dir not in the tree: is this still Kubernetes 1.20?"
rm -rf "$reflect2_dir"
mkdir -p "$reflect2_dir"
tar -xzf "$reflect2_tar" --strip-components 1 -C "$reflect2_dir" --wildcards \
  '*/LICENSE' '*/*.go' '*/*.s'
rm -f "$reflect2_dir"/*_test.go
[ -f "$reflect2_dir/go_above_118.go" ] || die "$reflect2_tar is not reflect2 v1.0.2"
log "vendored reflect2 replaced by v1.0.2: $(cd "$reflect2_dir" && ls | tr '\n' ' ')"

# --- code generation (deepcopy, conversion, openapi, bindata ...) --------------
log "make generated_files"
make generated_files

# --- Go binaries ---------------------------------------------------------------
targets=(kubelet kube-proxy kube-apiserver kube-controller-manager kube-scheduler kubeadm kubectl)
pkgs=()
for t in "${targets[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
# -X flags for k8s.io/{client-go/pkg,component-base}/version (gitVersion,
# gitCommit, gitTreeState, gitMajor/Minor, buildDate from SOURCE_DATE_EPOCH).
version_ldflags=$(bash -c 'set -euo pipefail; source hack/lib/init.sh; kube::version::ldflags')
# Same flags as hack/lib/golang.sh for static binaries, except Go's own
# -trimpath instead of -gcflags/-asmflags -trimpath=$KUBE_ROOT.
log "go install ${targets[*]} (-p $jobs)"
hack/run-in-gopath.sh go install -v -p "$jobs" -trimpath -buildvcs=false \
  -installsuffix static -tags selinux,notest \
  -ldflags "-s -w -buildid= ${version_ldflags}" \
  "${pkgs[@]}"

gobin="_output/local/go/bin"
for t in "${targets[@]}"; do
  [ -f "$gobin/$t" ] || die "go install produced no $gobin/$t"
  cp "$gobin/$t" "$KUBEBAKE_OUT/$t"
  chmod 0755 "$KUBEBAKE_OUT/$t"
done

# --- pause -----------------------------------------------------------------------
# build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV)
# with REV = `git describe --contains` (the release tag for a tagged tree).
pause_tag=$(sed -n 's/^TAG *= *\([^ ]*\) *$/\1/p' build/pause/Makefile)
[ -n "$pause_tag" ] || die "no TAG in build/pause/Makefile"
log "gcc pause (VERSION=v${pause_tag}-${version})"
pause_tmp="$TMPDIR/pause"
gcc -Os -Wall -Werror -static "-DVERSION=v${pause_tag}-${version}" \
  -o "$pause_tmp" build/pause/linux/pause.c
strip "$pause_tmp"
cp "$pause_tmp" "$KUBEBAKE_OUT/pause"
chmod 0755 "$KUBEBAKE_OUT/pause"

# --- sanity ------------------------------------------------------------------------
got=$("$KUBEBAKE_OUT/kubelet" --version)
[ "$got" = "Kubernetes $version" ] || die "kubelet --version printed '$got', want 'Kubernetes $version'"
"$KUBEBAKE_OUT/pause" -v
log "done:"
(cd "$KUBEBAKE_OUT" && ls -l && sha256sum -- *) >&2
