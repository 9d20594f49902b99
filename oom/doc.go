// Package oom detects containers killed by the kernel's OOM killer by reading
// the kernel log (/dev/kmsg), for hosts where no engine reports them: on cgroup
// v1 with Docker 20.10 and containerd 1.6 a memory-limited container dies with
// exit code 137 while Docker sends no "oom" event, inspect says
// OOMKilled=false and containerd publishes no /tasks/oom. cAdvisor solves the
// same problem the same way.
//
// It owns: reading and parsing kernel log records (ParseRecord, Parser),
// turning the OOM killer's report into a Kill (the killed host PID, its task
// name and memory cgroups), matching a Kill to a container of the workload
// model, marking that container OOMKilled in the Store and emitting its
// container.oom event (Detector).
//
// It does not own: the containers (the watchers keep them in model.Store), the
// telemetry of the events (telemetry turns container.oom into a WARN log
// record, and a die of a container marked OOMKilled into one with
// agentd.container.oom_killed=true), nor the permission to read the log:
// /dev/kmsg needs CAP_SYSLOG (or root with kernel.dmesg_restrict=0). Without
// it the Detector says so once and agentd runs without OOM detection.
//
// # What is detected
//
// Only kills logged while the Detector runs: it starts at the current end of
// the log (lseek(fd, 0, SEEK_END) on /dev/kmsg), so the kernel's ring buffer,
// which holds everything since boot, is not replayed, and a container killed
// while agentd was not running gets no container.oom from here (an engine that
// reports OOMKilled itself still says so on the next list).
package oom
