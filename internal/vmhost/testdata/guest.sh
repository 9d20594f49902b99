#!/usr/bin/env bash
# Runs inside the VM host (testbed/vm) as /share/run.sh, started by the guest's
# agentd-vm-run.service once systemd reached multi-user.target; the guest powers
# off when it ends. TestVMHost... (vmhost_test.go) puts beside it:
#   lib.sh        the helpers, the load and the steps every guest run takes
#   agentd.deb    the package under test
#   agentd.yaml   agentd's configuration (OTLP to the test's collector on the host)
#   busybox.tar   the testbed's local/busybox:latest (docker save)
#   env           INTERVAL (agentd's export interval, seconds) and BLOB_URL (an
#                 HTTP server on the host that answers with a fixed body)
# and reads back what this script writes to /share/out: the engines' own
# figures at one moment (engine-*.json, cgroup-*.txt, recorded_at), agentd's
# journal, `agentd engines` and facts about the host (cgroup file system, PID 1).
# The helpers, the load and the common steps: lib.sh beside this script.
# shellcheck source=internal/vmhost/testdata/lib.sh
. /share/lib.sh
trap collect EXIT

host_facts
install_agentd

# The same image for every engine, from the testbed (no registry is reachable).
step "load local/busybox:latest into Docker (activates docker.socket), podman and containerd"
docker load -q -i /share/busybox.tar || fail "docker load"
podman load -q -i /share/busybox.tar || fail "podman load"
ctr -n default images import /share/busybox.tar >/dev/null || fail "ctr images import"

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
# Not fatal: the test says which engine agentd missed, from the journal.
for e in docker podman containerd; do (waitfor 300 "agentd to find $e" engine_found "$e"); done
rootless_found() {
	journalctl -u agentd.service -o json ENGINE_TYPE=podman |
		jq -s -e --arg sock "/run/user/$uid/podman/podman.sock" 'any(.[]; .MESSAGE == "engine found" and ((.ENGINE_ID // "") | endswith($sock)))' >/dev/null
}
if [ -n "$rootless_pid" ]; then
	(waitfor 300 "agentd to find the rootless podman" rootless_found) || echo failed >"$out/rootless-failed"
fi
# Two export rounds with every container known and its load steady.
sleep $((2 * INTERVAL + 2))

step "record the engines' own figures"
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
	record_cgroup "$e" "${!pid_var}"
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
