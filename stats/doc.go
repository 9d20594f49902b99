// Package stats reads per-container resource usage straight from the kernel:
// cgroup v1 or v2 files under a cgroupfs root and the container's network
// namespace counters in /proc/<pid>/net/dev under a procfs root.
//
// It owns locating a container's cgroup from its host PID, parsing the cgroup
// and net/dev files (with a clear error naming a malformed file), turning
// cumulative CPU time into a CPU usage rate between two samples, and falling
// back to an engine's one-shot stats API where the cgroup cannot be read
// (Fallback, which the engine packages implement and the caller wires per
// engine). It does not know engines, the workload model's bookkeeping, or OTLP.
//
// # Locating the cgroup
//
// /proc/<pid>/cgroup lists one line per hierarchy: "ID:controllers:path". On
// cgroup v1 (and the v1 half of a hybrid host such as this project's testbed)
// each controller has its own hierarchy mounted at <cgroupfs>/<controller>, or
// at a co-mounted directory named after the list ("cpu,cpuacct"); both are
// tried. A pure cgroup v2 host has only the "0::path" line, and the unified
// hierarchy is <cgroupfs> itself (or <cgroupfs>/unified on a hybrid host).
//
// The kernel prints each path relative to the cgroup namespace of the process
// READING the file, not of the container. agentd reads from the host cgroup
// namespace, so a container of a nested engine (podman inside the Docker
// container agentd-th, started with --cgroupns=host and /sys/fs/cgroup
// bind-mounted) shows its full host path such as
// /docker/<th-id>/machine.slice/libpod-<id>.scope, verified on the testbed. A
// path starting with "/.." means the cgroup lies outside the reader's cgroup
// namespace (agentd itself in a private cgroupns): it is reported as
// ErrCgroupOutsideNamespace, and the engine fallback takes over.
//
// # Network
//
// /proc/<pid>/net/dev shows the interfaces of the network namespace of pid,
// so reading it through the container's init process gives the container's
// interfaces. Loopback is skipped. A container sharing the host's network
// namespace (--network host) would report the host's interfaces, so network
// counters are left out for it.
//
// # Throttling, OOM kills, pressure and devices
//
// The CFS counters are in cpu.stat: v2's own, v1's in the cpu controller
// (not cpuacct). OOM kills are oom_kill of v2 memory.events, or of v1
// memory.oom_control from Linux 4.13. Pressure stall information lives only
// in the cgroup v2 hierarchy, which a hybrid host has as well: a v1
// container's pressure files are read from its "0::" path under the cgroup2
// mount. A file a kernel lacks is tried once per cgroup, not every round.
// Block devices of io.stat and blkio are MAJ:MIN; their names come from
// DEVNAME in <sysfs>/dev/block/MAJ:MIN/uevent, read once per device and
// cached (see Reader.SetSysRoot).
//
// # Cost
//
// File paths are computed once per container and cached; files are read with
// raw open/read syscalls into a per-worker buffer and parsed in place without
// allocations. Sampler.Sample reads containers with a bounded number of
// workers (no goroutine per read); concurrency is spelled out on each type.
package stats
