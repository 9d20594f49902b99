# shellcheck shell=bash
# Shared settings and helpers for the agentd testbed scripts. Sourced, not run.

set -euo pipefail

# Where cached artefacts (rootfs tarballs, the built collector) and state live.
# Override with AGENTD_TESTBED_DIR; internal/testbed reads the same variable.
TESTBED_DIR=${AGENTD_TESTBED_DIR:-/var/lib/agentd-testbed}
TESTBED_CACHE=${AGENTD_TESTBED_CACHE:-/var/cache/agentd-testbed}
TESTBED_LOG=$TESTBED_DIR/log

# The Docker container that boots a real systemd (the "systemd host").
SYSTEMD_HOST=${AGENTD_SYSTEMD_HOST:-agentd-th}
SYSTEMD_HOST_IMAGE=local/agentd-systemd-host:2
BUSYBOX_IMAGE=local/busybox:latest
PAUSE_IMAGE=registry.k8s.io/pause:3.6

COLLECTOR_VERSION=0.165.0
BUILDER_VERSION=v0.165.0
COLLECTOR_BIN=$TESTBED_CACHE/otelcol/otelcol-agentd

mkdir -p "$TESTBED_DIR" "$TESTBED_CACHE" "$TESTBED_LOG"

log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# apt_mirror prints the first Debian archive this machine's apt uses (deb822
# .sources files, then one-line .list files), security archives left out.
apt_mirror() {
	local uri
	uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -v -- '-security' | head -n 1 || true)
	if [ -z "$uri" ]; then
		uri=$(awk '$1 == "deb" && $2 !~ /-security/ { print $2; exit }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
	fi
	printf '%s' "$uri"
}

# The mirror debootstrap uses: AGENTD_DEBIAN_MIRROR, else apt's own.
DEBIAN_MIRROR=${AGENTD_DEBIAN_MIRROR:-$(apt_mirror)}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.5 s until it succeeds.
wait_for() {
	local secs=$1 what=$2; shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "timed out after ${secs}s waiting for $what"
			return 1
		fi
		sleep 0.5
	done
}

# docker here is always the Debian client talking to the host daemon.
docker() { command /usr/bin/docker "$@"; }

# th_exec runs a command inside the systemd host.
th_exec() { docker exec "$SYSTEMD_HOST" "$@"; }

# busybox_rootfs DIR: a minimal rootfs with the static busybox and a few applets.
busybox_rootfs() {
	local dir=$1
	rm -rf "$dir"
	mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc" "$dir/proc" "$dir/sys" "$dir/dev"
	cp /bin/busybox "$dir/bin/busybox"
	local c
	for c in sh sleep echo cat yes dd head tail wget nc ls ps true false kill env top mkdir rm; do
		ln -sf busybox "$dir/bin/$c"
	done
	echo 'root:x:0:0:root:/:/bin/sh' >"$dir/etc/passwd"
	echo 'root:x:0:' >"$dir/etc/group"
}

# cache_gate DIR CURRENT [--check]: the protocol of a script that builds a
# cached artefact in DIR, CURRENT being a command that succeeds when the
# artefact is there and from the script's present recipe. With --check it
# exits with CURRENT's status. Otherwise it exits 0 when the artefact is
# current, else takes DIR's build lock (fd 9, held until the script exits:
# one build at a time), exits 0 if a build it waited for made the artefact
# current, and returns for the caller to build it.
cache_gate() {
	local dir=$1 current=$2
	if [ "${3:-}" = --check ]; then
		"$current"
		exit
	fi
	"$current" && exit 0
	mkdir -p "$dir"
	exec 9>"$dir/.build.lock"
	flock 9
	"$current" && exit 0
	return 0
}
