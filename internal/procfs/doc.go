// Package procfs parses the files of procfs(5) that agentd reads: a process's
// stat, status (Pid, PPid, NSpid), comm, cgroup, cmdline, net/unix and its ns
// and fd links, and the system-wide /proc/stat (btime).
//
// Parsers take the file's bytes, never panic on any input, and wrap
// ErrMalformed for input they cannot make sense of; those on discovery's
// rescan path (ParseStat, ParsePID, ParseUint) do not allocate. Readers take
// the procfs root ("/proc" on a host, a fake tree in tests, or a host /proc
// mounted elsewhere) and read one process's file below it.
//
// It owns the file formats and their quirks, not what agentd does with them:
// walking the process table, choosing which cgroup line matters and
// translating PIDs between namespaces stay with the packages that need them.
package procfs
