// Package discovery finds the container engines running on a host and how they
// nest: which engine runs inside which container of which other engine.
//
// It owns three things. The process table (ProcFS): a cheap reader of a procfs
// tree (by default /proc, any root for tests and containerised deployments) that
// reads /proc/PID/stat for every process and parses the rest (cmdline, NSpid,
// PID and mount namespaces, cgroup) only for engine candidates and their
// ancestors. The endpoints: for each candidate its listening unix stream sockets,
// found by matching socket:[INODE] links in /proc/PID/fd with the rows of
// /proc/PID/net/unix, reached from the host through /proc/PID/root with symlinks
// resolved inside that root. The probes: each socket is asked by the engine
// families whose process names matched (an explicit engine.Families list;
// containerd's socket is asked by the containerd and the cri family) who it
// is; the answers become model.Engine values. The hierarchy (Prefix,
// ParentContainerID, ParentEngineID) comes from matching each engine's
// ancestor processes against the host PIDs of the other engines' containers,
// which the workload model holds (Containers); discovery asks no engine for
// its containers.
//
// The Discoverer rescans on an interval, probes only new processes, retries
// failed probes with backoff, prunes engines whose process is gone and publishes
// found/lost/updated changes to subscribers without ever blocking. Probes run
// in the background (Config.ProbeTimeout, 30 s): a scan of Run waits at most
// Config.ScanWait (2 s) for them and a later scan takes the results of the
// slow ones, so a socket that accepts and never answers stalls neither the
// scans nor the other engines. A socket of an engine process that does not
// answer as an engine (it hangs, or something else listens on a docker.sock
// under an engine's process name) is warned about once per process and
// socket; its retries are logged at Debug.
//
// It knows no engine API (the engine packages do), does not watch containers
// (package watch does), activate socket units
// (package activation hands such engines in through Discoverer.Add), or read
// container statistics.
package discovery
