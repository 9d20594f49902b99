package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// PID translation for nested engines.
//
// An engine that runs inside a container (podman in the systemd host) reports
// its containers' PIDs in its own PID namespace. /proc/<pid>/status has a line
//
//	NSpid:	9123	57	1
//
// listing the process's PID in each PID namespace it belongs to, from the
// namespace of the procfs mount that is read (first) down to the process's own
// (last). Quirks that shape the algorithm:
//
//   - The chain is relative to the procfs being read, not to the host: with a
//     procfs mounted in a child PID namespace, everything is shifted. Always
//     read the procfs whose PID namespace you want to translate into.
//   - A PID namespace's identity is only readable for a process's own
//     (innermost) namespace, as the inode in readlink(/proc/<pid>/ns/pid). The
//     namespace at an outer level of a chain has no name of its own.
//   - The engine and its containers are at different depths: if the engine's
//     chain has length L, it reports PIDs of its level-L namespace, and a
//     container's init (in a namespace nested below) has a chain longer than L
//     whose element L is the PID the engine reports.
//
// So: the host PID of reported PID p is the process Q with len(NSpid(Q)) >= L
// and NSpid(Q)[L-1] == p, whose level-L namespace is the engine's. Several
// sibling namespaces at level L (two nested engines) can both hold a p, so Q
// is verified by walking its PPid chain up to the first process whose chain
// has length exactly L: a parent is always in the same namespace as its child
// or in an ancestor of it, so that process is in Q's level-L namespace, and its
// ns/pid inode must equal the engine's. A chain that jumps past level L (a
// process setns'ed in from outside) cannot be verified; such a candidate is
// used only when it is the only one.
//
// An engine whose chain has length 1 lives in the procfs's own namespace and
// reports host PIDs already: no translation.

// procPIDRef matches an endpoint reached through another process's root, e.g.
// /proc/812/root/run/podman/podman.sock.
var procPIDRef = regexp.MustCompile(`^/proc/([0-9]+)/root/`)

// nsAnchor returns a host PID that lives in the engine's PID namespace: the
// engine's own PID when it is alive under procRoot, else the process whose
// root the endpoint is reached through (a socket-activated engine may be
// restarted under a new PID, while that process, typically the container's
// init, stays). 0 means the engine is taken to be in the host namespace.
func nsAnchor(procRoot string, enginePID int, endpoint string) int {
	if enginePID > 0 {
		if _, err := os.Stat(filepath.Join(procRoot, strconv.Itoa(enginePID))); err == nil {
			return enginePID
		}
	}
	if m := procPIDRef.FindStringSubmatch(endpoint); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return n
		}
	}
	return 0
}

// readProcStatus reads the PPid and NSpid lines of /proc/<pid>/status. A
// kernel without NSpid (before 4.1) gives a chain of just the Pid line.
func readProcStatus(procRoot string, pid int) (procfs.Status, error) {
	st, err := procfs.ReadStatus(procRoot, pid)
	if err != nil {
		return procfs.Status{}, err
	}
	if len(st.NSpid) == 0 {
		if st.PID <= 0 {
			return procfs.Status{}, fmt.Errorf("%s: no Pid or NSpid line", procfs.Path(procRoot, pid, "status"))
		}
		st.NSpid = []int{st.PID}
	}
	return st, nil
}

func pidNS(procRoot string, pid int) (string, error) {
	return os.Readlink(procfs.Path(procRoot, pid, "ns", "pid"))
}

// hostPID translates pid, as reported by an engine whose namespace anchor is
// anchor (see nsAnchor), into the PID namespace of procRoot. It returns pid
// itself when no translation is needed, and an error when no process matches.
func hostPID(procRoot string, anchor, pid int) (int, error) {
	if pid <= 0 || anchor <= 0 {
		return pid, nil
	}
	ast, err := readProcStatus(procRoot, anchor)
	if err != nil {
		return 0, fmt.Errorf("engine namespace anchor %d: %w", anchor, err)
	}
	level := len(ast.NSpid)
	if level <= 1 {
		return pid, nil
	}
	ans, err := pidNS(procRoot, anchor)
	if err != nil {
		return 0, fmt.Errorf("engine namespace anchor %d: %w", anchor, err)
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, err
	}
	var unverified []int
	for _, e := range ents {
		q, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStatus(procRoot, q)
		if err != nil || len(st.NSpid) < level || st.NSpid[level-1] != pid {
			continue
		}
		switch verifyLevelNS(procRoot, q, st, level, ans) {
		case nsMatch:
			return q, nil
		case nsUnknown:
			unverified = append(unverified, q)
		}
	}
	if len(unverified) == 1 {
		return unverified[0], nil
	}
	return 0, fmt.Errorf("pid %d in the namespace of process %d: %d candidates, none verified", pid, anchor, len(unverified))
}

type nsVerdict int

const (
	nsOther nsVerdict = iota
	nsMatch
	nsUnknown
)

// verifyLevelNS walks q's parents to the first process at depth level and
// compares its PID namespace with want.
func verifyLevelNS(procRoot string, q int, st procfs.Status, level int, want string) nsVerdict {
	cur := q
	for range 128 {
		switch {
		case len(st.NSpid) == level:
			ns, err := pidNS(procRoot, cur)
			if err != nil {
				return nsUnknown
			}
			if ns == want {
				return nsMatch
			}
			return nsOther
		case len(st.NSpid) < level || st.PPID <= 0:
			return nsUnknown
		}
		cur = st.PPID
		var err error
		if st, err = readProcStatus(procRoot, cur); err != nil {
			return nsUnknown
		}
	}
	return nsUnknown
}
