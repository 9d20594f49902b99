# shellcheck shell=bash
# Sourced by the guest scripts of TestVMHost... (guest.sh, engines2.sh) as
# /share/lib.sh inside the VM host: the output folder, the run's settings, the
# container load and the steps every run takes (host facts, agentd from its
# .deb, agentd's journal at the end).
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
waitfor() { # waitfor SECONDS WHAT COMMAND...
	local secs=$1 what=$2; shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || fail "timed out after ${secs}s waiting for $what"
		sleep 1
	done
}

# host_facts records the cgroup file system, its controllers, PID 1 and the
# kernel.
host_facts() {
	step "host facts"
	stat -fc %T /sys/fs/cgroup >"$out/cgroup-fstype"
	cat /sys/fs/cgroup/cgroup.controllers >"$out/cgroup-controllers"
	cat /proc/1/comm >"$out/pid1"
	uname -r >"$out/kernel"
}

# install_agentd installs agentd from its .deb, then configures and
# restarts it as a user does.
install_agentd() {
	step "install agentd from its .deb, then configure and restart it as a user does"
	DEBIAN_FRONTEND=noninteractive dpkg -i /share/agentd.deb </dev/null || fail "dpkg -i agentd.deb"
	install -m 0644 /share/agentd.yaml /etc/agentd/agentd.yaml
	systemctl restart agentd.service || fail "systemctl restart agentd"
	systemctl is-active agentd.service agentd.socket >"$out/agentd-active" || true
}

# A steady, known load: 32 MiB in /dev/shm (shared memory, charged to the
# container and never reclaimed), 16 MiB written to the container's disk with
# an fsync, one download of the host's blob (the network), 5 s of CPU, then
# four processes asleep: nothing changes after /ready appears.
# shellcheck disable=SC2034 # used by the scripts that source this one
load='dd if=/dev/zero of=/dev/shm/hold bs=1M count=32 2>/dev/null
dd if=/dev/zero of=/written bs=1M count=16 conv=fsync 2>/dev/null
cat /bin/busybox >/dev/null
if [ -n "$BLOB_URL" ]; then wget -q -O /dev/null "$BLOB_URL"; fi
yes >/dev/null & b=$!; sleep 5; kill $b
sleep 1000000 & sleep 1000000 & sleep 1000000 &
echo ready >/ready
wait'

# engine_found TYPE: agentd's journal has an "engine found" entry of TYPE.
# The entries are slurped into one answer: Debian 12's jq 1.6 sets -e's
# status from the last input alone, so a select over the stream fails as
# soon as any later entry of TYPE is another message (as the CRI engine's
# are), however early the engine was found.
engine_found() {
	journalctl -u agentd.service -o json "ENGINE_TYPE=$1" | jq -s -e 'any(.[]; .MESSAGE == "engine found")' >/dev/null
}

# record_cgroup NAME PID: the cgroup files of PID's cgroup and its network
# counters, in cgroup-NAME.txt, beside the engines' figures.
record_cgroup() {
	local cg
	cg=/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$2/cgroup")
	{
		echo "cgroup $cg"
		for f in memory.current memory.stat cpu.stat pids.current io.stat; do echo "== $f"; cat "$cg/$f"; done
		echo "== net/dev"; cat "/proc/$2/net/dev"
	} >"$out/cgroup-$1.txt" 2>&1
}
