#!/usr/bin/env bash
# Runs inside the VM host (testbed/vm) as /share/run.sh, like guest.sh, on a
# host whose engines are today's: the second engine set (testbed/vm/engines.sh:
# containerd 2 with its runc shim and ctr, the Docker 29-era dockerd; runc 1.5
# not yet, see below) replaces Debian's binaries before containerd.service and
# docker.socket start them at their usual sockets, then agentd is installed
# from its .deb. TestVMHost... (vmhost_test.go) puts beside it:
#   lib.sh        the helpers, the load and the steps every guest run takes
#   engines2/     containerd, containerd-shim-runc-v2, ctr, runc, dockerd, versions
#   agentd.deb, agentd.yaml, busybox.tar, env   as for guest.sh
#   pause.tar     the testbed's CRI sandbox image (registry.k8s.io/pause:3.6)
#   cripod        the testbed's static CRI client (testbed/cripod)
# and reads back from /share/out: the engines' own figures at one moment
# (engine-docker.json from Docker's stats API, engine-containerd.json from ctr
# task metrics, engine-cri.json from CRI ContainerStats, recorded_at),
# docker-version.json, containerd-version.txt and containerd-plugins.txt
# (what the engines say they are), cri-ids (the CRI pod sandbox's and
# container's IDs), agentd's journal and the host facts.
#
# Docker is driven over its socket with curl at API 1.44, not with Debian's
# docker CLI (API 1.41): Docker 29.0 refuses anything older than 1.44 (later
# daemons of the line accept 1.40 again), and the run must not depend on it.
# shellcheck source=internal/vmhost/testdata/lib.sh
. /share/lib.sh
trap collect EXIT

host_facts

step "put the second engine set in place of Debian's engines"
# Stopped before the swap; containerd's state from its start at boot goes,
# so that containerd 2 starts as on a host it was installed on.
systemctl stop docker.service docker.socket containerd.service || fail "stop Debian's engines"
rm -rf /var/lib/containerd /var/lib/docker
lib=/usr/local/lib/agentd-engines2
install -d "$lib"
# Copied off the share: the binaries run from the guest's own disk.
cp /share/engines2/* "$lib/" || fail "copy the engines off the share"
swap() { # swap BINARY PATH: BINARY of the set is what runs as PATH
	mount --bind "$lib/$1" "$2" || fail "bind $lib/$1 over $2"
}
swap containerd /usr/bin/containerd
swap containerd-shim-runc-v2 /usr/bin/containerd-shim-runc-v2
swap ctr /usr/bin/ctr
swap dockerd /usr/sbin/dockerd
# runc 1.5 of the set is not swapped in: on this guest (Debian 12's kernel
# 6.1 under TCG) it starts no container of Docker's ("runc create failed:
# unable to start container process: can't get final child's PID from pipe:
# invalid character '\x00'"), with or without a time namespace, where on the
# testbed machine's kernel 6.18 it does. Debian's runc 1.1 runs the
# containers of Docker and containerd 2; it knows no time namespace, which
# this Docker gives every container where the kernel has them ("namespace
# time does not exist"): the daemon's documented escape hatch turns them off.
install -d /etc/docker
echo '{"features": {"time-namespaces": false}}' >/etc/docker/daemon.json
# containerd 2's configuration (version 3) in place of Debian's (version 2,
# for containerd 1.6): its CRI plugin (io.containerd.grpc.v1.cri, with
# io.containerd.cri.v1.runtime and .images) is on by default; its sandbox
# image is the testbed's local pause image, imported below, as no registry is
# reachable. Pods use the host's network: no CNI configuration is needed.
printf '%s\n' 'version = 3' "[plugins.'io.containerd.cri.v1.images'.pinned_images]" \
	"  sandbox = 'registry.k8s.io/pause:3.6'" >/etc/containerd/config.toml
systemctl start containerd.service docker.socket || fail "start containerd.service and docker.socket"
containerd --version >"$out/containerd-version.txt"
ctr plugins ls >"$out/containerd-plugins.txt"
runc --version >"$out/runc-version.txt"

install_agentd

dockerapi() { # dockerapi METHOD PATH [curl args...]: Docker's API 1.44; an error's message goes to stderr
	local method=$1 path=$2 rc=0; shift 2
	curl -sS --fail-with-body --unix-socket /run/docker.sock -X "$method" "$@" "http://d/v1.44$path" >/tmp/dockerapi.out || rc=$?
	if ((rc)); then
		printf 'Docker API %s %s: %s\n' "$method" "$path" "$(cat /tmp/dockerapi.out)" >&2
	else
		cat /tmp/dockerapi.out
	fi
	return "$rc"
}
# engines_log keeps the engines' journal of a failed run in run.log.
engines_log() { journalctl -b --no-pager -u containerd.service -u docker.service -n 40; }
trap 'engines_log; collect' EXIT
step "Docker's version (activates docker.socket)"
waitfor 120 "Docker 29 on docker.socket" dockerapi GET /_ping
dockerapi GET /version >"$out/docker-version.json" || fail "Docker's version"
step "load local/busybox:latest into Docker and containerd"
dockerapi POST '/images/load?quiet=1' -H 'Content-Type: application/x-tar' --data-binary @/share/busybox.tar >/dev/null ||
	fail "Docker's image load"
ctr -n default images import /share/busybox.tar >/dev/null || fail "ctr images import"
step "load local/busybox:latest and the pause image into containerd's CRI namespace k8s.io"
for img in busybox pause; do
	ctr -n k8s.io images import "/share/$img.tar" >/dev/null || fail "ctr -n k8s.io images import $img.tar"
done

echo 3 >/proc/sys/vm/drop_caches
step "start the containers"
jq -n --arg load "$load" --arg url "$BLOB_URL" \
	'{Image: "local/busybox:latest", Cmd: ["sh", "-c", $load], Env: ["BLOB_URL=" + $url]}' >/tmp/create.json
dockerapi POST '/containers/create?name=vmh-docker2' -H 'Content-Type: application/json' --data-binary @/tmp/create.json >/dev/null ||
	fail "Docker's container create"
dockerapi POST /containers/vmh-docker2/start || fail "Docker's container start"
# ctr's containers have a network namespace of their own with loopback only:
# no download.
ctr -n default run -d --env BLOB_URL= docker.io/local/busybox:latest vmh-ctr2 sh -c "$load" || fail "ctr run"
# A pod of containerd 2's CRI plugin, made as the kubelet makes one: the
# kubelet's labels, and the cgroup parent the kubelet gives a BestEffort pod
# with the cgroupfs driver (containerd's default runc options), under which
# runc puts each of the pod's containers (without one, runc 1.1 would nest
# them in the shim's own cgroup, containerd.service). Host network, so no
# download either.
ids=$(/share/cripod run -pod vmh-pod2 -namespace vmh -uid vmh-pod2-uid -name vmh-cri2 -image local/busybox:latest \
	-cgroup-parent /kubepods/besteffort/podvmh-pod2-uid -env BLOB_URL= -- sh -c "$load") ||
	fail "cripod run: a CRI pod sandbox and container"
echo "$ids" >"$out/cri-ids"
read -r cri_pod cri_id <<<"$ids"
step "CRI pod sandbox $cri_pod runs container $cri_id"

docker_pid=$(dockerapi GET /containers/vmh-docker2/json | jq -r .State.Pid)
ctr_pid=$(ctr -n default task ls | awk '$1 == "vmh-ctr2" { print $2 }')
cri_pid=$(ctr -n k8s.io task ls | awk -v id="$cri_id" '$1 == id { print $2 }')
[ -n "$cri_pid" ] || fail "no task of the CRI container $cri_id in containerd's namespace k8s.io"
for p in "$docker_pid" "$ctr_pid" "$cri_pid"; do
	waitfor 300 "the load of PID $p to settle" test -e "/proc/$p/root/ready"
done
step "loads settled"

step "wait for agentd to find Docker, containerd and containerd's CRI plugin"
# Not fatal: the test says which engine agentd missed, from the journal.
for e in docker containerd cri; do (waitfor 300 "agentd to find $e" engine_found "$e"); done
# Two export rounds with every container known and its load steady.
sleep $((2 * INTERVAL + 2))

step "record the engines' own figures"
date +%s.%N >"$out/recorded_at"
dockerapi GET '/containers/vmh-docker2/stats?stream=false' >"$out/engine-docker.json" || fail "Docker's stats API"
ctr -n default task metrics --format json vmh-ctr2 >"$out/engine-containerd.json" || fail "ctr task metrics"
/share/cripod stats "$cri_id" >"$out/engine-cri.json" || fail "cripod stats: CRI ContainerStats"
record_cgroup docker "$docker_pid"
record_cgroup ctr "$ctr_pid"
record_cgroup cri "$cri_pid"
step "recorded"

# One more round after the record, so agentd's figures frame it.
sleep $((INTERVAL + 2))
collect
trap - EXIT
# The containers' PID 1 is a shell that ignores SIGTERM: end them with
# SIGKILL now rather than have the shutdown wait for them.
dockerapi DELETE '/containers/vmh-docker2?force=1' >/dev/null
ctr -n default task kill -s SIGKILL vmh-ctr2 >/dev/null 2>&1
/share/cripod rm -timeout 30s "$cri_pod" >/dev/null 2>&1
step "done"
