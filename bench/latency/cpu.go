package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// This file reads CPU time from /proc/PID/stat (under a proc root, so tests use
// fake trees). What each figure counts, as checked on the project's machine
// (containerd 1.7, runc shim v2):
//
//   - A process's utime+stime is its own CPU; cutime+cstime is the CPU of the
//     children it has waited for, their own children included as far as they
//     were waited for in turn.
//   - containerd is not a subreaper: each containerd-shim-runc-v2 daemon is
//     re-parented to PID 1 (or the nearest subreaper) once the short-lived
//     "shim start" process that containerd ran has exited. So containerd's
//     cutime+cstime has the "shim start" processes but not the shims.
//   - The shim is a subreaper and waits for the runc it runs and for the
//     container's processes, so a shim's CPU with its children's is the whole
//     of the shim and runc work for one container. It reaches its reaper's
//     cutime+cstime when the shim exits and is reaped.
//   - dockerd reaps what it runs per container: copies of itself that set up
//     the network namespace ("set-ipv6"), iptables; on that machine about
//     70 ms of CPU per container, a third of dockerd's own.
//
// So the engines' CPU is the -cpu-pids' own and reaped CPU, plus the shims',
// taken as the growth of the shims' reaper's cutime+cstime: that process is
// found from the first container's shim. On a shared machine the reaper (PID 1)
// also reaps what other people's processes leave behind; that is counted too,
// and the run without agentd is the check on it.

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, which Linux
// fixes at 100 on every architecture Go supports (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// procStat is what the tool reads of one /proc/PID/stat line. Times are in
// clock ticks (1/userHZ s).
type procStat struct {
	comm                         string
	ppid                         int
	utime, stime, cutime, cstime uint64
}

// own is the process's own CPU, in ticks.
func (s procStat) own() uint64 { return s.utime + s.stime }

// reaped is the CPU of the children it has waited for, in ticks.
func (s procStat) reaped() uint64 { return s.cutime + s.cstime }

// parseStat parses a /proc/PID/stat line. The comm field is in parentheses and
// may hold spaces and ')' itself, so the fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("no (comm)")
	}
	// After ") ": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	f := bytes.Fields(b[end+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("%d fields after comm, want at least 15", len(f))
	}
	s := procStat{comm: string(b[open+1 : end])}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return procStat{}, fmt.Errorf("ppid: %w", err)
	}
	s.ppid = ppid
	for i, p := range []*uint64{&s.utime, &s.stime, &s.cutime, &s.cstime} {
		// cutime and cstime are signed in the kernel's format (long): never
		// negative in practice, so a parse as unsigned is enough.
		if *p, err = strconv.ParseUint(string(f[11+i]), 10, 64); err != nil {
			return procStat{}, fmt.Errorf("field %d: %w", 14+i, err)
		}
	}
	return s, nil
}

// readStat reads and parses root/PID/stat (root is a proc mount, "/proc").
func readStat(root string, pid int) (procStat, error) {
	path := filepath.Join(root, strconv.Itoa(pid), "stat")
	b, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	s, err := parseStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// shimReaper finds, from the PID of a running container's init process, its
// shim (the init's parent) and the process that will reap that shim (the
// shim's parent). It returns the reaper's PID and both processes' stats.
func shimReaper(root string, initPID int) (reaper int, shim, rs procStat, err error) {
	init, err := readStat(root, initPID)
	if err != nil {
		return 0, shim, rs, fmt.Errorf("container init: %w", err)
	}
	if shim, err = readStat(root, init.ppid); err != nil {
		return 0, shim, rs, fmt.Errorf("shim of pid %d: %w", initPID, err)
	}
	if rs, err = readStat(root, shim.ppid); err != nil {
		return 0, shim, rs, fmt.Errorf("reaper of shim %d (%s): %w", init.ppid, shim.comm, err)
	}
	return shim.ppid, shim, rs, nil
}

// ticks turns clock ticks into seconds.
func ticks(t uint64) float64 { return float64(t) / userHZ }

// cpuWindow measures the CPU of the engine processes, of the shims (through
// their reaper) and of agentd from its start to end. findReaper may be called
// from another goroutine than the others.
type cpuWindow struct {
	proc     string
	pids     []int
	agentPID int
	began    time.Time
	begin    []procStat // of pids, in order
	agent    procStat

	mu          sync.Mutex
	reaper      int // 0: not found (yet)
	reaperBegin procStat
	shimComm    string
	reaperErr   error
}

// startCPU takes the first sample of the processes (none without pids and agentPID).
func startCPU(proc string, pids []int, agentPID int) (*cpuWindow, error) {
	w := &cpuWindow{proc: proc, pids: pids, agentPID: agentPID, began: time.Now()}
	for _, pid := range pids {
		s, err := readStat(proc, pid)
		if err != nil {
			return nil, fmt.Errorf("engine process %d: %w", pid, err)
		}
		w.begin = append(w.begin, s)
	}
	if agentPID > 0 {
		s, err := readStat(proc, agentPID)
		if err != nil {
			return nil, fmt.Errorf("agentd, pid %d: %w", agentPID, err)
		}
		w.agent = s
	}
	return w, nil
}

// findReaper finds the shims' reaper from a running container's init process
// and takes its first sample; the first call that succeeds counts. Called
// while the first container runs, no shim of the storm has been reaped yet.
func (w *cpuWindow) findReaper(initPID int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reaper != 0 {
		return
	}
	reaper, shim, rs, err := shimReaper(w.proc, initPID)
	if err != nil {
		w.reaperErr = err
		return
	}
	w.reaper, w.reaperBegin, w.shimComm, w.reaperErr = reaper, rs, shim.comm, nil
}

// end takes the last sample, prints the CPU-seconds of each process to out
// and puts them in res: cpu_<comm>_s of each engine process, cpu_shims_s,
// cpu_engines_s (their sum), cpu_agent_s and window_s.
func (w *cpuWindow) end(out io.Writer, res results, what string) error {
	window := time.Since(w.began)
	fmt.Fprintf(out, "CPU from the first start to %s (%.1f s):\n", what, window.Seconds())
	res["window_s"] = fmt.Sprintf("%.1f", window.Seconds())
	var engines uint64
	for i, pid := range w.pids {
		s, err := readStat(w.proc, pid)
		if err != nil {
			return fmt.Errorf("engine process %d (%s): %w", pid, w.begin[i].comm, err)
		}
		own, reaped := s.own()-w.begin[i].own(), s.reaped()-w.begin[i].reaped()
		engines += own + reaped
		fmt.Fprintf(out, "  %s (pid %d): %.2f s own, %.2f s of reaped children\n", s.comm, pid, ticks(own), ticks(reaped))
		res["cpu_"+s.comm+"_s"] = fmt.Sprintf("%.2f", ticks(own+reaped))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.reaper == 0:
		fmt.Fprintf(out, "  shims: not counted, their reaper was not found: %v\n", w.reaperErr)
		res["cpu_shims_s"] = "n/a"
	case slices.Contains(w.pids, w.reaper):
		fmt.Fprintf(out, "  shims (%s): reaped by engine pid %d, counted above\n", w.shimComm, w.reaper)
		res["cpu_shims_s"] = "counted-in-engine"
	default:
		s, err := readStat(w.proc, w.reaper)
		if err != nil {
			return fmt.Errorf("shims' reaper, pid %d (%s): %w", w.reaper, w.reaperBegin.comm, err)
		}
		shims := s.reaped() - w.reaperBegin.reaped()
		engines += shims
		fmt.Fprintf(out, "  shims (%s) and their runc: %.2f s, reaped by pid %d (%s) with whatever else it reaped\n",
			w.shimComm, ticks(shims), w.reaper, s.comm)
		res["cpu_shims_s"] = fmt.Sprintf("%.2f", ticks(shims))
		res["shim_reaper"] = fmt.Sprintf("%d/%s", w.reaper, s.comm)
	}
	if len(w.pids) > 0 {
		fmt.Fprintf(out, "  engines in all: %.2f s\n", ticks(engines))
		res["cpu_engines_s"] = fmt.Sprintf("%.2f", ticks(engines))
	}
	if w.agentPID > 0 {
		s, err := readStat(w.proc, w.agentPID)
		if err != nil {
			return fmt.Errorf("agentd, pid %d: %w", w.agentPID, err)
		}
		fmt.Fprintf(out, "  agentd (pid %d): %.2f s\n", w.agentPID, ticks(s.own()-w.agent.own()))
		res["cpu_agent_s"] = fmt.Sprintf("%.2f", ticks(s.own()-w.agent.own()))
	}
	return nil
}
