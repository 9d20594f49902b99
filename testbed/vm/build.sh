#!/usr/bin/env bash
# Build the testbed's VM host image: Debian 12 with systemd as PID 1 on a
# cgroup v2 kernel, Docker (docker.socket), containerd and podman (podman.socket),
# booted by testbed/vm/boot.sh under qemu (TCG) as a batch job: a oneshot unit
# runs /share/run.sh from the 9p share, its output goes to the share, then the
# guest powers off.
#
# Output, in $VM_DIR ($TESTBED_CACHE/vm): vmlinuz, initrd.img, root.img (raw
# ext4, booted with snapshot=on so it never changes) and root.stamp, which holds
# the sha256 of this script: the image is rebuilt when the recipe changes, and
# boot.sh and the tests refuse an image built from another recipe.
#
#   testbed/vm/build.sh          build unless the cached image is current
#   testbed/vm/build.sh --check  exit 0 when the cached image is current
#
# About 5 minutes (debootstrap from the Debian archive apt uses) and 1.5 GB.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/lib.sh
. "$here/../lib.sh"

VM_DIR=$TESTBED_CACHE/vm
want=$(sha256sum "$here/build.sh" | cut -d' ' -f1)
current() {
	[ -s "$VM_DIR/root.img" ] && [ -s "$VM_DIR/vmlinuz" ] && [ -s "$VM_DIR/initrd.img" ] &&
		[ "$(cat "$VM_DIR/root.stamp" 2>/dev/null)" = "$want" ]
}
if [ "${1:-}" = --check ]; then
	current
	exit
fi
current && exit 0

# One build at a time; a run that waited finds the other's result.
mkdir -p "$VM_DIR"
exec 9>"$VM_DIR/.build.lock"
flock 9
current && exit 0

[ -n "$DEBIAN_MIRROR" ] || die "no Debian archive in apt's sources (/etc/apt/sources.list.d): set AGENTD_DEBIAN_MIRROR"
command -v debootstrap >/dev/null || die "debootstrap is not installed (testbed/up.sh packages)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is not installed (e2fsprogs)"

start=$SECONDS
work=$TESTBED_DIR/vm-build
root=$work/root
buildlog=$TESTBED_LOG/vm-build.log
rm -rf "$work"
mkdir -p "$work"
log "building the VM host image (debootstrap, about 5 minutes; log in $buildlog)"
debootstrap --variant=minbase \
	--include=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,linux-image-amd64,initramfs-tools,kmod,udev,docker.io,containerd,podman,runc,crun,uidmap,slirp4netns,fuse-overlayfs,containernetworking-plugins,iptables,iproute2,procps,ca-certificates,curl,jq \
	bookworm "$root" "$DEBIAN_MIRROR" >"$buildlog" 2>&1 ||
	{ tail -20 "$buildlog" >&2; die "debootstrap of the VM root failed (see $buildlog)"; }

echo agentd-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 agentd-vm\n' >"$root/etc/hosts"
# A machine ID made at each boot (the image is booted read-only underneath).
: >"$root/etc/machine-id"
cat >"$root/etc/fstab" <<-'FSTAB'
	/dev/vda / ext4 rw,errors=remount-ro 0 1
	share /share 9p trans=virtio,version=9p2000.L,msize=262144,nofail 0 0
FSTAB
mkdir -p "$root/share"
printf '9p\n9pnet_virtio\n' >"$root/etc/modules-load.d/agentd-vm-share.conf"
# qemu's user network: DHCP from 10.0.2.2, which is also the host's loopback.
cat >"$root/etc/systemd/network/10-agentd-vm.network" <<-'NET'
	[Match]
	Name=en* eth*

	[Network]
	DHCP=ipv4
NET
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1

# Engines come up by socket activation (docker.socket, podman.socket), as on a
# default Debian host whose services were left to their sockets; containerd is
# a service of its own (Docker's and ctr's).
chroot "$root" systemctl disable docker.service podman.service >/dev/null 2>&1 || true
chroot "$root" systemctl enable docker.socket podman.socket containerd.service >/dev/null 2>&1
chroot "$root" systemctl mask getty@tty1.service serial-getty@ttyS0.service \
	systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
	e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer dpkg-db-backup.timer >/dev/null 2>&1 || true

# The batch job: run /share/run.sh once the system is up, keep its output and
# exit status on the share, power off.
cat >"$root/etc/systemd/system/agentd-vm-run.service" <<-'UNIT'
	[Unit]
	Description=agentd VM host: run /share/run.sh and power off
	After=multi-user.target share.mount network-online.target
	Wants=network-online.target
	Requires=share.mount
	ConditionPathExists=/share/run.sh

	[Service]
	Type=oneshot
	ExecStart=/bin/sh -c 'bash /share/run.sh >/share/run.log 2>&1; echo $? >/share/run.rc'
	# --force: no unit is stopped one by one (a container whose PID 1 ignores
	# SIGTERM would hold the shutdown for 90 s); processes are killed and the
	# file systems unmounted all the same, and the share has every byte already.
	ExecStopPost=/bin/systemctl --no-block --force poweroff
	TimeoutStartSec=infinity

	[Install]
	WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable agentd-vm-run.service >/dev/null 2>&1

rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
[ -s "$kernel" ] && [ -s "$initrd" ] || die "the VM root has no kernel or initrd in /boot"
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"
mkfs.ext4 -q -d "$root" -L root "$work/root.img" 8G >>"$buildlog" 2>&1 ||
	{ tail -20 "$buildlog" >&2; die "mkfs.ext4 of the VM root failed"; }
rm -rf "$root"
for f in vmlinuz initrd.img root.img; do mv -f "$work/$f" "$VM_DIR/$f"; done
echo "$want" >"$VM_DIR/root.stamp"
rm -rf "$work"
log "VM host image built in $((SECONDS - start))s: $VM_DIR"
