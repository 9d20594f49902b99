#!/usr/bin/env bash
# Tear the testbed down: the systemd host and every test container are removed,
# and host dockerd and containerd are stopped. Caches (rootfs tarball, the built
# collector, imported images) stay, so the next `make testbed` is fast.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/lib.sh
. "$here/lib.sh"
set +e

if docker version >/dev/null 2>&1; then
	log "removing $SYSTEMD_HOST and test containers"
	docker rm -f "$SYSTEMD_HOST" >/dev/null 2>&1
	ids=$(docker ps -aq --filter label=agentd.test)
	[ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
fi
if command -v podman >/dev/null; then
	ids=$(podman ps -aq --filter label=agentd.test 2>/dev/null)
	[ -n "$ids" ] && podman rm -f $ids >/dev/null 2>&1
fi
pkill -f 'otelcol-agentd' 2>/dev/null

# stop NAME SECONDS: SIGTERM every process named NAME, SIGKILL after SECONDS.
# (pgrep/pkill see containers' processes too; the systemd host is gone by now.)
stop() {
	local name=$1 secs=$2
	pgrep -x "$name" >/dev/null || return 0
	log "stopping $name"
	pkill -TERM -x "$name"
	for _ in $(seq 1 $((secs * 4))); do pgrep -x "$name" >/dev/null || return 0; sleep 0.25; done
	pkill -KILL -x "$name"
}
# dockerd stops its containers on SIGTERM (up to 15 s with running ones).
stop dockerd 30
# containerd's tasks outlive containerd in their shims: kill the tasks of
# every namespace (test namespaces, CRI's k8s.io, moby leftovers) first.
if command -v ctr >/dev/null && ctr version >/dev/null 2>&1; then
	for ns in $(ctr namespaces ls -q 2>/dev/null); do
		for id in $(ctr -n "$ns" tasks ls -q 2>/dev/null); do
			ctr -n "$ns" tasks kill -s KILL "$id" >/dev/null 2>&1
		done
		for _ in $(seq 1 20); do
			[ -z "$(ctr -n "$ns" tasks ls -q 2>/dev/null | head -1)" ] || { sleep 0.25; continue; }
			break
		done
		for id in $(ctr -n "$ns" tasks ls -q 2>/dev/null); do
			ctr -n "$ns" tasks rm -f "$id" >/dev/null 2>&1
		done
		case $ns in
		agentd-*)
			for id in $(ctr -n "$ns" containers ls -q 2>/dev/null); do
				ctr -n "$ns" containers rm "$id" >/dev/null 2>&1
			done
			;;
		esac
	done
fi
stop containerd 10
stop containerd-shim 5
stop conmon 5
# (comm is at most 15 characters: containerd-shim-runc-v2 shows as containerd-shim)
left=$(ps -eo pid=,comm= | awk '$2 ~ /^(dockerd|containerd|containerd-shim|conmon|otelcol-agentd|otelcol-peer)$/')
if [ -n "$left" ]; then
	log "still running: $left"
	exit 1
fi
log "testbed is down (caches kept in $TESTBED_CACHE)"
