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
# Private daemons that tests may have left behind if they were killed.
pkill -f 'dockerd .*agentd-test' 2>/dev/null
pkill -f 'otelcol-agentd' 2>/dev/null

stop() {
	local name=$1
	pgrep -x "$name" >/dev/null || return 0
	log "stopping $name"
	pkill -TERM -x "$name"
	for _ in $(seq 1 40); do pgrep -x "$name" >/dev/null || return 0; sleep 0.25; done
	pkill -KILL -x "$name"
}
stop dockerd
# containerd-shim processes of stopped containers exit with their tasks.
stop containerd
left=$(pgrep -a -x 'dockerd|containerd|otelcol-agentd')
if [ -n "$left" ]; then
	log "still running: $left"
	exit 1
fi
log "testbed is down (caches kept in $TESTBED_CACHE)"
