#!/usr/bin/env bash
# Runs inside the VM host (testbed/vm) as /share/run.sh, started by the guest's
# agentd-vm-run.service once systemd reached multi-user.target; the guest powers
# off when it ends. TestVMHost... (vmhost_test.go) puts beside it:
#   agentd.deb    the package under test
#   agentd.yaml   agentd's configuration (OTLP to the test's collector on the host)
#   busybox.tar   the testbed's local/busybox:latest (docker save)
#   env           INTERVAL (agentd's export interval, seconds) and BLOB_URL (an
#                 HTTP server on the host that answers with a fixed body)
# and reads back what this script writes to /share/out: the engines' own
# figures at one moment (engine-*.json, cgroup-*.txt, recorded_at), agentd's
# journal, `agentd engines` and facts about the host (cgroup file system, PID 1).
set -uo pipefail
out=/share/out
mkdir -p "$out"
# shellcheck source=/dev/null
. /share/env
step() { printf '[guest %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { step "FAILED: $*"; exit 1; }
# collect keeps what explains a run, also a failed one: agentd's view, its
# journal, the guest's warnings.
collect() {
	agentd engines >"$out/agentd-engines.txt" 2>&1
	systemctl show -p ActiveState,NRestarts,MainPID agentd.service >"$out/agentd-unit.txt"
	journalctl -u agentd.service -o json --no-pager >"$out/journal.json"
	journalctl -b --no-pager -p warning >"$out/journal-warnings.txt"
	journalctl -u agentd.service --no-pager >"$out/journal.txt"
}
trap collect EXIT
waitfor() { # waitfor SECONDS WHAT COMMAND...
	local secs=$1 what=$2; shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || fail "timed out after ${secs}s waiting for $what"
		sleep 1
	done
}

step "host facts"
stat -fc %T /sys/fs/cgroup >"$out/cgroup-fstype"
cat /sys/fs/cgroup/cgroup.controllers >"$out/cgroup-controllers"
cat /proc/1/comm >"$out/pid1"
uname -r >"$out/kernel"

step "install agentd from its .deb, then configure and restart it as a user does"
DEBIAN_FRONTEND=noninteractive dpkg -i /share/agentd.deb </dev/null || fail "dpkg -i agentd.deb"
install -m 0644 /share/agentd.yaml /etc/agentd/agentd.yaml
systemctl restart agentd.service || fail "systemctl restart agentd"
systemctl is-active agentd.service agentd.socket >"$out/agentd-active" || true

# The same image for every engine, from the testbed (no registry is reachable).
step "load local/busybox:latest into Docker (activates docker.socket), podman and containerd"
docker load -q -i /share/busybox.tar || fail "docker load"
podman load -q -i /share/busybox.tar || fail "podman load"
ctr -n default images import /share/busybox.tar >/dev/null || fail "ctr images import"

# A steady, known load: 32 MiB in /dev/shm (shared memory, charged to the
# container and never reclaimed), 16 MiB written to the container's disk with
# an fsync, one download of the host's blob (the network), 5 s of CPU, then
# four processes asleep: nothing changes after /ready appears.
load='dd if=/dev/zero of=/dev/shm/hold bs=1M count=32 2>/dev/null
dd if=/dev/zero of=/written bs=1M count=16 conv=fsync 2>/dev/null
cat /bin/busybox >/dev/null
if [ -n "$BLOB_URL" ]; then wget -q -O /dev/null "$BLOB_URL"; fi
yes >/dev/null & b=$!; sleep 5; kill $b
sleep 1000000 & sleep 1000000 & sleep 1000000 &
echo ready >/ready
wait'
echo 3 >/proc/sys/vm/drop_caches
step "start the containers"
docker run -d --name vmh-docker -e BLOB_URL="$BLOB_URL" local/busybox:latest sh -c "$load" || fail "docker run"
podman run -d --name vmh-podman -e BLOB_URL="$BLOB_URL" local/busybox:latest sh -c "$load" || fail "podman run"
# ctr's containers have a network namespace of their own with loopback only:
# no download.
ctr -n default run -d --env BLOB_URL= docker.io/local/busybox:latest vmh-ctr sh -c "$load" || fail "ctr run"

# Rootless podman: a user with lingering, whose systemd --user has
# podman.socket enabled, runs the same load (no download: slirp4netns's
# 10.0.2.2 is the guest's own loopback). A failure here is recorded in
# rootless-failed and leaves the rest of the run alone.
rootless() {
	useradd -m -s /bin/bash vmuser || return 1
	uid=$(id -u vmuser)
	grep -q '^vmuser:' /etc/subuid || usermod --add-subuids 200000-265535 --add-subgids 200000-265535 vmuser || return 1
	loginctl enable-linger vmuser || return 1
	waitfor 300 "vmuser's systemd" systemctl is-active "user@$uid.service"
	as_user() { runuser -u vmuser -- env XDG_RUNTIME_DIR=/run/user/$uid DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus "$@"; }
	as_user systemctl --user enable --now podman.socket || return 1
	install -o vmuser -m 0600 /share/busybox.tar /home/vmuser/busybox.tar || return 1 # the share is root's
	as_user podman load -q -i /home/vmuser/busybox.tar || return 1
	as_user podman run -d --name vmh-rootless -e BLOB_URL= local/busybox:latest sh -c "$load" || return 1
	echo "$uid" >"$out/rootless-uid"
}
(rootless) || { step "rootless podman failed"; echo failed >"$out/rootless-failed"; }

# systemd in a container (podman --systemd=always): the guest's own systemd
# and the libraries it links, busybox, and two units of our own: hold.service
# puts 16 MiB in /dev/shm and keeps two processes asleep, outside systemd's
# init.scope, so the container's cgroup and its PID 1's differ. A failure is
# recorded in systemd-failed.
systemd_container() {
	local r=/var/tmp/vm-systemd f
	rm -rf "$r" && mkdir -p "$r" || return 1
	podman export "$(podman create local/busybox:latest sh)" | tar -x -C "$r" || return 1
	for f in /usr/lib/systemd/systemd $(ldd /usr/lib/systemd/systemd | grep -o '/[^ ]*'); do
		cp -L --parents "$f" "$r" || return 1
	done
	mkdir -p "$r/etc/systemd/system" "$r/run" "$r/var"
	cp /etc/os-release "$r/etc/os-release"
	cat >"$r/etc/systemd/system/default.target" <<-'UNIT'
		[Unit]
		Description=vmh: the load and nothing else
		Wants=hold.service
	UNIT
	cat >"$r/etc/systemd/system/hold.service" <<-'UNIT'
		[Service]
		ExecStart=/bin/sh -c 'dd if=/dev/zero of=/dev/shm/hold bs=1M count=16; sleep 1000000 & sleep 1000000 & touch /run/ready; wait'
	UNIT
	tar -C "$r" -c . | podman import -q - localhost/vm-systemd:latest >/dev/null || return 1
	podman run -d --name vmh-systemd --systemd=always localhost/vm-systemd:latest /usr/lib/systemd/systemd || return 1
}
(systemd_container) || { step "systemd in a container failed"; echo failed >"$out/systemd-failed"; }

docker_pid=$(docker inspect -f '{{.State.Pid}}' vmh-docker)
podman_pid=$(podman inspect -f '{{.State.Pid}}' vmh-podman)
ctr_pid=$(ctr -n default task ls | awk '$1 == "vmh-ctr" { print $2 }')
for p in "$docker_pid" "$podman_pid" "$ctr_pid"; do
	waitfor 300 "the load of PID $p to settle" test -e "/proc/$p/root/ready"
done
systemd_pid=
if [ ! -e "$out/systemd-failed" ]; then
	systemd_pid=$(podman inspect -f '{{.State.Pid}}' vmh-systemd)
	(waitfor 300 "hold.service in vmh-systemd" test -e "/proc/$systemd_pid/root/run/ready") ||
		echo failed >"$out/systemd-failed"
fi
rootless_pid=
if [ -s "$out/rootless-uid" ]; then
	uid=$(cat "$out/rootless-uid")
	rootless_pid=$(runuser -u vmuser -- env XDG_RUNTIME_DIR=/run/user/$uid podman inspect -f '{{.State.Pid}}' vmh-rootless)
	(waitfor 300 "the rootless load to settle" test -e "/proc/$rootless_pid/root/ready") ||
		echo failed >"$out/rootless-failed"
fi
step "loads settled"

step "wait for agentd to find the three engines"
engine_found() {
	journalctl -u agentd.service -o json "ENGINE_TYPE=$1" | jq -e 'select(.MESSAGE == "engine found")' >/dev/null
}
# Not fatal: the test says which engine agentd missed, from the journal.
for e in docker podman containerd; do (waitfor 300 "agentd to find $e" engine_found "$e"); done
rootless_found() {
	journalctl -u agentd.service -o json ENGINE_TYPE=podman |
		jq -e --arg sock "/run/user/$uid/podman/podman.sock" 'select(.MESSAGE == "engine found" and (.ENGINE_ID | endswith($sock)))' >/dev/null
}
if [ -n "$rootless_pid" ]; then
	(waitfor 300 "agentd to find the rootless podman" rootless_found) || echo failed >"$out/rootless-failed"
fi
# Two export rounds with every container known and its load steady.
sleep $((2 * INTERVAL + 2))

step "record the engines' own figures"
cgroup_of() { sed -n 's/^0:://p' "/proc/$1/cgroup"; }
date +%s.%N >"$out/recorded_at"
curl -sf --unix-socket /run/docker.sock 'http://d/containers/vmh-docker/stats?stream=false' >"$out/engine-docker.json" ||
	fail "Docker's stats API"
curl -sf --unix-socket /run/podman/podman.sock 'http://d/v4.0.0/libpod/containers/stats?stream=false&containers=vmh-podman' \
	>"$out/engine-podman.json" || fail "podman's stats API"
ctr -n default task metrics --format json vmh-ctr >"$out/engine-containerd.json" || fail "ctr task metrics"
if [ -n "$rootless_pid" ]; then
	curl -sf --unix-socket "/run/user/$uid/podman/podman.sock" \
		'http://d/v4.0.0/libpod/containers/stats?stream=false&containers=vmh-rootless' >"$out/engine-rootless.json" ||
		echo failed >"$out/rootless-failed"
fi
if [ -n "$systemd_pid" ]; then
	curl -sf --unix-socket /run/podman/podman.sock 'http://d/v4.0.0/libpod/containers/stats?stream=false&containers=vmh-systemd' \
		>"$out/engine-systemd.json" || echo failed >"$out/systemd-failed"
	cat "/proc/$systemd_pid/cgroup" >"$out/systemd-pid1-cgroup"
fi
for e in docker podman ctr ${rootless_pid:+rootless} ${systemd_pid:+systemd}; do
	pid_var=${e}_pid
	cg=/sys/fs/cgroup$(cgroup_of "${!pid_var}")
	{
		echo "cgroup $cg"
		for f in memory.current memory.stat cpu.stat pids.current io.stat; do echo "== $f"; cat "$cg/$f"; done
		echo "== net/dev"; cat "/proc/${!pid_var}/net/dev"
	} >"$out/cgroup-$e.txt" 2>&1
done
podman stats --no-stream --format json vmh-podman >"$out/podman-stats-cli.json" 2>&1 || true
step "recorded"

# One more round after the record, so agentd's figures frame it.
sleep $((INTERVAL + 2))
collect
trap - EXIT
# The containers' PID 1 is a shell that ignores SIGTERM: end them with
# SIGKILL now rather than have the shutdown wait for them.
docker rm -f vmh-docker >/dev/null 2>&1
podman rm -f vmh-podman vmh-systemd >/dev/null 2>&1
ctr -n default task kill -s SIGKILL vmh-ctr >/dev/null 2>&1
if [ -n "$rootless_pid" ]; then
	runuser -u vmuser -- env XDG_RUNTIME_DIR=/run/user/$uid podman rm -f vmh-rootless >/dev/null 2>&1
fi
step "done"
