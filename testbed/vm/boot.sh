#!/usr/bin/env bash
# Boot the VM host image (testbed/vm/build.sh) once, as a batch job: SHARE is
# the guest's /share (9p); the guest runs SHARE/run.sh and writes SHARE/run.log
# and SHARE/run.rc, which ends this script (and qemu). A guest that powers off
# or crashes first ends it with qemu's exit status. The serial console goes
# to SHARE/console.log. The image is booted with snapshot=on: what the guest
# writes to its disk is gone when it powers off, and runs never see each other.
#
#   testbed/vm/boot.sh SHARE
#
# qemu runs with TCG (no usable KVM on these machines): 2 CPUs, 4 GiB, user
# networking, on which the guest reaches the host's loopback as 10.0.2.2.
# Units and the final kill get 15 s to stop, not 90: a batch job has nothing
# to save, and a process that ignores SIGTERM must not hold the power-off.
# VM_CPUS and VM_MEMORY (MiB) change the size.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/lib.sh
. "$here/../lib.sh"

share=${1:?usage: boot.sh SHARE}
[ -f "$share/run.sh" ] || die "$share/run.sh is missing: the guest would have nothing to run"
VM_DIR=$TESTBED_CACHE/vm
bash "$here/build.sh" --check || die "the VM host image in $VM_DIR is missing or from another recipe: run make testbed"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"

rm -f "$share/run.rc" "$share/run.log"
qemu-system-x86_64 -machine q35,accel=tcg -cpu max -smp "${VM_CPUS:-2}" -m "${VM_MEMORY:-4096}" \
	-kernel "$VM_DIR/vmlinuz" -initrd "$VM_DIR/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 quiet apparmor=0 systemd.show_status=0 systemd.default_timeout_stop_sec=15" \
	-drive "file=$VM_DIR/root.img,if=virtio,format=raw,snapshot=on" \
	-virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" \
	-nic user,model=virtio-net-pci \
	-display none -serial "file:$share/console.log" -monitor none -no-reboot &
qemu=$!
trap 'kill "$qemu" 2>/dev/null || true' EXIT
# The run is over when run.rc is on the share (written after run.sh's last
# byte): end qemu then instead of waiting for the guest's shutdown, which
# under TCG takes a minute or more and keeps nothing we need.
while kill -0 "$qemu" 2>/dev/null; do
	if [ -s "$share/run.rc" ]; then
		kill "$qemu"
		wait "$qemu" 2>/dev/null || true
		exit 0
	fi
	sleep 1
done
wait "$qemu"
