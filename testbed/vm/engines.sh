#!/usr/bin/env bash
# Build the VM host's second engine set from the Go module proxy: today's
# containerd (2.x, with its runc shim and ctr), runc (1.5) and Docker's
# Docker 29-era daemon (moby/moby/v2). TestVMHost... puts them in place of
# Debian's engines in a second boot of the VM host image (testbed/vm/build.sh),
# so that containerd.service and docker.socket run them at their usual sockets.
#
# Output, in $ENGINES2_DIR ($TESTBED_CACHE/engines2): containerd,
# containerd-shim-runc-v2, ctr, runc, dockerd, versions (one "name version"
# line each) and engines.stamp, which holds the sha256 of this script: the
# set is rebuilt when the version list (or anything else here) changes, and
# the tests refuse a set built from another recipe.
#
#   testbed/vm/engines.sh          build unless the cached set is current
#   testbed/vm/engines.sh --check  exit 0 when the cached set is current
#
# About 5 minutes on 2 cores with an empty module cache; nothing when current.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/lib.sh
. "$here/../lib.sh"

CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
# The moby/moby/v2 module's version: a daemon of the Docker 29 line (its
# Engine API goes up to 1.56; Docker 29.0's was 1.52).
MOBY_VERSION=v2.0.0-beta.24
# What the daemon reports as its version (it says "library-import" unless
# told): the module version it was built from, as the module does not say
# which Docker release it is.
DOCKER_VERSION=$MOBY_VERSION

ENGINES2_DIR=$TESTBED_CACHE/engines2
want=$(sha256sum "$here/engines.sh" | cut -d' ' -f1)
current() {
	local f
	for f in containerd containerd-shim-runc-v2 ctr runc dockerd; do
		[ -x "$ENGINES2_DIR/$f" ] || return 1
	done
	[ "$(cat "$ENGINES2_DIR/engines.stamp" 2>/dev/null)" = "$want" ]
}
cache_gate "$ENGINES2_DIR" current "$@"

command -v go >/dev/null || die "go is not on PATH (expected at /usr/local/go/bin)"
# runc's seccomp support is cgo against libseccomp: without it Docker's
# default seccomp profile could not be applied to any container.
pkg-config --exists libseccomp || die "libseccomp's headers are missing (Debian package libseccomp-dev; testbed/up.sh packages)"

start=$SECONDS
work=$TESTBED_DIR/engines2-build
buildlog=$TESTBED_LOG/engines2-build.log
rm -rf "$work"
mkdir -p "$work/bin"
log "building containerd $CONTAINERD_VERSION, runc $RUNC_VERSION and dockerd $DOCKER_VERSION (about 5 minutes; log in $buildlog)"
# The build is the modules' own: no GOFLAGS from a caller (make exports
# agentd's build tags), static where the upstream releases are.
build() { # build PACKAGE@VERSION [go install flags...]
	local pkg=$1; shift
	log "go install $pkg"
	env GOFLAGS= GOBIN="$work/bin" go install -trimpath "$@" "$pkg" >>"$buildlog" 2>&1 ||
		{ tail -20 "$buildlog" >&2; die "go install $pkg failed (see $buildlog)"; }
}
: >"$buildlog"
cdv=github.com/containerd/containerd/v2
for cmd in containerd containerd-shim-runc-v2 ctr; do
	CGO_ENABLED=0 build "$cdv/cmd/$cmd@$CONTAINERD_VERSION" \
		-ldflags "-s -w -X $cdv/version.Version=$CONTAINERD_VERSION -X $cdv/version.Revision=module-proxy"
done
CGO_ENABLED=1 build "github.com/opencontainers/runc@$RUNC_VERSION" -tags seccomp \
	-ldflags "-s -w -X main.version=${RUNC_VERSION#v} -X main.gitCommit=module-proxy"
CGO_ENABLED=0 build "github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION" \
	-ldflags "-s -w -X github.com/moby/moby/v2/dockerversion.Version=$DOCKER_VERSION -X github.com/moby/moby/v2/dockerversion.GitCommit=module-proxy"

{
	echo "containerd $("$work/bin/containerd" --version | awk '{print $3}')"
	echo "runc $("$work/bin/runc" --version | awk 'NR == 1 {print $3}')"
	echo "dockerd $("$work/bin/dockerd" --version | sed -n 's/^Docker version \([^,]*\),.*/\1/p')"
} >"$work/bin/versions"
grep -q "^dockerd $DOCKER_VERSION$" "$work/bin/versions" ||
	die "dockerd reports $(grep '^dockerd' "$work/bin/versions"), not $DOCKER_VERSION: its version variable moved"
"$work/bin/runc" --version | grep -q 'seccomp' || die "runc was built without seccomp"

for f in containerd containerd-shim-runc-v2 ctr runc dockerd versions; do mv -f "$work/bin/$f" "$ENGINES2_DIR/$f"; done
echo "$want" >"$ENGINES2_DIR/engines.stamp"
rm -rf "$work"
log "second engine set built in $((SECONDS - start))s: $(tr '\n' ' ' <"$ENGINES2_DIR/versions")"
