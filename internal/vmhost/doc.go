// Package vmhost holds no Go code of its own: it is the home of the tests
// that run agentd on the testbed's VM host (testbed/vm), a Debian 12 guest
// booted under qemu with systemd as PID 1 and a cgroup v2 hierarchy, where
// agentd is installed from its own .deb and its figures are checked against
// the engines' own (Docker, containerd, podman): Debian's engines, and in a
// second boot today's (containerd 2 with its CRI plugin, Docker 29) in their
// place.
//
// It does not provision the VM image or build the second engine set
// (testbed/vm/build.sh and engines.sh, run by `make testbed`) and does not
// test agentd's packaging life cycle (package packaging does, on the systemd
// host container).
package vmhost
