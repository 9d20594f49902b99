#!/usr/bin/env bash
# Provision the agentd testbed on a Debian 12 machine, as root. Idempotent: every
# step checks what is already there, and slow artefacts (the systemd host rootfs,
# the collector) are cached under $TESTBED_CACHE.
#
#   testbed/up.sh            all parts
#   testbed/up.sh PART...    only those: packages engines images systemd-host collector vm
#
# Parts, in order:
#   packages      Debian packages for engines, systemd host, rpm and D-Bus tools, Prometheus
#   engines       containerd and dockerd started on the host (no systemd here)
#   images        local/busybox in Docker and podman; the CRI pause image in k8s.io
#   systemd-host  a Debian rootfs booted with systemd as PID 1 in a Docker container,
#                 podman.socket and docker.socket listening and not yet activated
#   collector     the OpenTelemetry Collector built from the Go module proxy
#   vm            the VM host image (testbed/vm/build.sh): Debian 12 with systemd
#                 as PID 1 on cgroup v2, Docker, containerd and podman, for qemu;
#                 and the second engine set its tests put in place of Debian's
#                 (testbed/vm/engines.sh): containerd 2, runc 1.5, Docker 29's
#                 daemon, built from the Go module proxy
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/lib.sh
. "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "the testbed needs root (it installs packages and starts engines)"

# One provisioning at a time: a second up.sh (another test run, another
# terminal) waits here instead of racing apt, the engines and the caches.
# flock -o holds the lock in flock itself: the engines this script starts
# must not inherit it, or the lock would outlive the script.
if [ -z "${AGENTD_TESTBED_LOCKED:-}" ]; then
	export AGENTD_TESTBED_LOCKED=1
	lock=/run/agentd-testbed-up.lock
	rc=0
	flock -n -E 75 -o "$lock" bash "$0" "$@" || rc=$?
	if [ "$rc" = 75 ]; then
		log "another testbed/up.sh is running; waiting for it"
		exec flock -o "$lock" bash "$0" "$@"
	fi
	exit "$rc"
fi
command -v go >/dev/null || die "go is not on PATH: agentd and the collector need Go 1.26 (expected at /usr/local/go/bin)"

PACKAGES=(docker.io containerd podman runc busybox-static debootstrap systemd-container
	iptables uidmap slirp4netns containernetworking-plugins rpm dbus jq procps psmisc
	ca-certificates iproute2 gcc libc6-dev make git prometheus qemu-system-x86
	libseccomp-dev pkg-config)

part_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$TESTBED_LOG/apt.log" 2>&1 ||
			{ tail -20 "$TESTBED_LOG/apt.log" >&2; die "apt-get install failed (see $TESTBED_LOG/apt.log)"; }
	fi
	configure_podman /
}

# configure_podman ROOT: podman settings this kernel needs (cgroup v1 hybrid, no
# CAP_SYS_RESOURCE): runc instead of crun, and no default rlimits.
configure_podman() {
	local conf=$1/etc/containers/containers.conf
	mkdir -p "$(dirname "$conf")"
	if ! grep -q 'agentd testbed' "$conf" 2>/dev/null; then
		cat >"$conf" <<-'EOF'
			# agentd testbed: crun cannot run on a cgroup v1 hybrid host, and podman's
			# default rlimits need CAP_SYS_RESOURCE, which this machine does not grant.
			[containers]
			default_ulimits = []

			[engine]
			runtime = "runc"
		EOF
	fi
}

engine_answers() { ctr --address "$1" version; }

# The host containerd's configuration: Debian's, plus restrict_oom_score_adj,
# without which the CRI plugin cannot start a pod sandbox here (it lowers the
# sandbox's oom_score_adj, which needs CAP_SYS_RESOURCE).
containerd_config() {
	cat <<-'EOF'
		version = 2
		[plugins]
		  [plugins."io.containerd.grpc.v1.cri"]
		    restrict_oom_score_adj = true
		    [plugins."io.containerd.grpc.v1.cri".cni]
		      bin_dir = "/usr/lib/cni"
		      conf_dir = "/etc/cni/net.d"
		  [plugins."io.containerd.internal.v1.opt"]
		    path = "/var/lib/containerd/opt"
	EOF
}

# host_pid NAME: the PID of the host's NAME daemon (in our PID namespace, not
# one of the same name inside a container), if it runs.
host_pid() { pgrep -o -x "$1" --ns $$ --nslist pid; }

stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 60); do [ -d /proc/"$pid" ] || return 0; sleep 0.25; done
	kill -KILL "$pid" 2>/dev/null || true
}

part_engines() {
	local conf=$TESTBED_DIR/containerd.toml pid
	if ! cmp -s <(containerd_config) "$conf"; then
		containerd_config >"$conf"
	fi
	if pid=$(host_pid containerd) && ! tr '\0' ' ' </proc/"$pid"/cmdline | grep -q -- "--config $conf"; then
		# Started with another configuration: dockerd depends on it, restart both.
		log "restarting containerd with $conf"
		if dpid=$(host_pid dockerd); then stop_pid "$dpid"; fi
		stop_pid "$pid"
	fi
	if ! engine_answers /run/containerd/containerd.sock >/dev/null 2>&1; then
		log "starting containerd"
		setsid containerd --config "$conf" >"$TESTBED_LOG/containerd.log" 2>&1 </dev/null &
		wait_for 60 "containerd on /run/containerd/containerd.sock" engine_answers /run/containerd/containerd.sock ||
			{ tail -20 "$TESTBED_LOG/containerd.log" >&2; die "containerd did not start"; }
	fi
	if ! docker version >/dev/null 2>&1; then
		log "starting dockerd"
		rm -f /var/run/docker.pid
		setsid dockerd --containerd=/run/containerd/containerd.sock >"$TESTBED_LOG/dockerd.log" 2>&1 </dev/null &
		wait_for 60 "dockerd on /run/docker.sock" docker version ||
			{ tail -20 "$TESTBED_LOG/dockerd.log" >&2; die "dockerd did not start"; }
	fi
	# A dockerd started with --bridge=none removes the host's docker0 (moby does
	# that on start); recreate it rather than restart dockerd and its containers.
	if ! ip link show docker0 >/dev/null 2>&1; then
		log "docker0 is gone: recreating the default bridge"
		ip link add docker0 type bridge && ip addr add 172.17.0.1/16 dev docker0 && ip link set docker0 up
	fi
}

part_images() {
	local work=$TESTBED_DIR/build
	mkdir -p "$work"
	if ! docker image inspect "$BUSYBOX_IMAGE" >/dev/null 2>&1 || ! podman image exists "$BUSYBOX_IMAGE"; then
		log "importing $BUSYBOX_IMAGE into Docker and podman"
		busybox_rootfs "$work/busybox"
		tar -C "$work/busybox" -c . >"$TESTBED_CACHE/busybox.tar"
		docker import - "$BUSYBOX_IMAGE" <"$TESTBED_CACHE/busybox.tar" >/dev/null
		podman import -q - "$BUSYBOX_IMAGE" <"$TESTBED_CACHE/busybox.tar" >/dev/null
	fi
	if ! ctr -n k8s.io images check "name==$PAUSE_IMAGE" 2>/dev/null | grep -q "$PAUSE_IMAGE"; then
		log "building the CRI pause image $PAUSE_IMAGE"
		rm -rf "$work/pause" && mkdir -p "$work/pause"
		(cd "$here/pause" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/pause/pause" .)
		tar -C "$work/pause" -c pause | docker import -c 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
		docker save "$PAUSE_IMAGE" >"$work/pause.tar"
		ctr -n k8s.io images import "$work/pause.tar" >/dev/null
		ctr -n k8s.io images check "name==$PAUSE_IMAGE" | grep -q complete || die "pause image not complete in k8s.io"
	fi
}

# The systemd host: Debian with systemd, dbus, podman and docker.io, booted as
# PID 1 in a Docker container. Only podman.socket and docker.socket are enabled.
part_systemd_host() {
	local rootfs=$TESTBED_DIR/systemd-host-rootfs tarball=$TESTBED_CACHE/systemd-host-2.tar
	if ! docker image inspect "$SYSTEMD_HOST_IMAGE" >/dev/null 2>&1; then
		if [ ! -s "$tarball" ]; then
			log "debootstrap of the systemd host rootfs (about 2 minutes)"
			[ -n "$DEBIAN_MIRROR" ] || die "no Debian archive in apt's sources (/etc/apt/sources.list.d): set AGENTD_DEBIAN_MIRROR"
			rm -rf "$rootfs"
			debootstrap --variant=minbase \
				--include=systemd,systemd-sysv,dbus,libpam-systemd,dbus-user-session,podman,runc,containernetworking-plugins,ca-certificates,docker.io,iptables,busybox-static,procps,uidmap \
				bookworm "$rootfs" "$DEBIAN_MIRROR" >"$TESTBED_LOG/debootstrap.log" 2>&1 ||
				{ tail -20 "$TESTBED_LOG/debootstrap.log" >&2; die "debootstrap failed"; }
			configure_podman "$rootfs"
			# Only the sockets start at boot; the services come by activation.
			chroot "$rootfs" systemctl disable docker.service containerd.service podman.service >/dev/null 2>&1 || true
			chroot "$rootfs" systemctl enable docker.socket podman.socket >/dev/null 2>&1
			# Units that cannot work in a container and would leave the system degraded.
			chroot "$rootfs" systemctl mask systemd-udevd.service systemd-udevd-control.socket \
				systemd-udevd-kernel.socket getty@tty1.service console-getty.service \
				systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
				e2scrub_all.timer e2scrub_reap.service fstrim.timer >/dev/null 2>&1 || true
			echo agentd-th >"$rootfs/etc/hostname"
			mkdir -p "$rootfs/opt/agentd-testbed"
			busybox_rootfs "$TESTBED_DIR/build/busybox-th"
			tar -C "$TESTBED_DIR/build/busybox-th" -c . >"$rootfs/opt/agentd-testbed/busybox.tar"
			rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
			tar -C "$rootfs" -c . >"$tarball.tmp" && mv "$tarball.tmp" "$tarball"
			rm -rf "$rootfs"
		fi
		log "importing $SYSTEMD_HOST_IMAGE"
		docker import -c 'CMD ["/lib/systemd/systemd"]' - "$SYSTEMD_HOST_IMAGE" <"$tarball" >/dev/null
	fi

	if [ "$(docker inspect -f '{{.State.Running}}' "$SYSTEMD_HOST" 2>/dev/null)" != true ]; then
		docker rm -f "$SYSTEMD_HOST" >/dev/null 2>&1 || true
		log "booting the systemd host $SYSTEMD_HOST"
		docker run -d --name "$SYSTEMD_HOST" --hostname "$SYSTEMD_HOST" \
			--cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add SYS_PTRACE --cap-add MKNOD \
			--security-opt seccomp=unconfined --security-opt apparmor=unconfined \
			--cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
			-v agentd-th-containers:/var/lib/containers -v agentd-th-docker:/var/lib/docker \
			--tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
			"$SYSTEMD_HOST_IMAGE" /lib/systemd/systemd >/dev/null
	fi
	wait_for 120 "systemd in $SYSTEMD_HOST to finish booting" th_booted || {
		th_exec systemctl --failed --no-pager >&2 || true
		die "systemd host did not boot"
	}
	local state
	state=$(th_exec systemctl is-system-running 2>/dev/null || true)
	log "systemd host is $state"
	if th_exec systemctl --failed --plain --no-legend 2>/dev/null | grep -Eq 'podman|docker|containerd'; then
		th_exec systemctl --failed --no-pager >&2
		die "engine units failed in the systemd host"
	fi
	th_exec busctl --system --no-pager status org.freedesktop.systemd1 >/dev/null ||
		die "systemd host: org.freedesktop.systemd1 does not answer on the system bus"

	# Images inside: podman's CLI works without its service; Docker's import needs
	# dockerd, so it activates docker.service once and stops it again below.
	if ! th_exec podman image exists "$BUSYBOX_IMAGE"; then
		log "importing $BUSYBOX_IMAGE into podman inside $SYSTEMD_HOST"
		th_exec sh -c "podman import -q - $BUSYBOX_IMAGE </opt/agentd-testbed/busybox.tar >/dev/null"
	fi
	if ! th_exec docker image inspect "$BUSYBOX_IMAGE" >/dev/null 2>&1; then
		log "importing $BUSYBOX_IMAGE into Docker inside $SYSTEMD_HOST"
		th_exec sh -c "docker import - $BUSYBOX_IMAGE </opt/agentd-testbed/busybox.tar >/dev/null"
	fi
	# Hand over with the engines behind their sockets only: nothing activated.
	th_exec systemctl stop podman.service docker.service containerd.service >/dev/null 2>&1 || true
	th_exec systemctl start podman.socket docker.socket
	wait_for 30 "podman.socket and docker.socket listening" th_sockets_listening ||
		die "podman.socket/docker.socket are not listening in $SYSTEMD_HOST"
}

th_booted() {
	local s
	s=$(th_exec systemctl is-system-running 2>/dev/null) || true
	[ "$s" = running ] || [ "$s" = degraded ]
}

th_sockets_listening() {
	[ "$(th_exec systemctl is-active podman.socket docker.socket | sort -u)" = active ]
}

part_collector() { "$here/collector.sh"; }

# The VM host image, cached under $TESTBED_CACHE/vm and rebuilt only when
# testbed/vm/build.sh changes; the second engine set, cached under
# $TESTBED_CACHE/engines2 and rebuilt only when testbed/vm/engines.sh (its
# version list) changes.
part_vm() {
	bash "$here/vm/build.sh"
	bash "$here/vm/engines.sh"
}

parts=("$@")
((${#parts[@]})) || parts=(packages engines images systemd-host collector vm)
start=$SECONDS
for p in "${parts[@]}"; do
	case $p in
	packages | engines | images | systemd-host | collector | vm) "part_${p//-/_}" ;;
	*) die "unknown part $p (want packages, engines, images, systemd-host, collector, vm)" ;;
	esac
done
log "ready in $((SECONDS - start))s: ${parts[*]}"
