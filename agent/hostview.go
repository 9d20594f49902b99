package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// hostView is how agentd sees the host it watches, judged at start from the
// procfs it was given (host.proc) and its own namespaces.
type hostView struct {
	// root is the host's root directory, for host identity (/etc/machine-id,
	// /etc/hostname): "/" on the host, PROC/2/root from a container.
	root string
	// warnings say what looks wrong, each a sentence naming the fix.
	warnings []string
}

// detectHostView compares agentd's own PID and mount namespaces (read from
// selfProc, the procfs of agentd's own mount namespace, normally /proc) with
// the host's, read under procRoot.
//
// The host is anchored at PID 2, kthreadd: a kernel thread lives in the
// initial namespaces and its root is the host's root, and only the initial PID
// namespace has it, so a procfs whose PID 2 is kthreadd is the host's. PID 1
// is no anchor: it may be a container's init, and even the host's is out of
// reach of ptrace checks when it holds capabilities agentd lacks.
//
// agentd in a container (its mount namespace and its root are not the host's)
// reads host identity from procRoot/2/root and should be given the host's
// cgroup tree; agentd in a sandboxed unit (a mount namespace of its own over
// the host's root and cgroup tree) is on the host;
// agentd in a PID namespace of its own cannot reach the PIDs engines report.
func detectHostView(selfProc, procRoot, cgroupRoot, defaultCgroup string) hostView {
	v := hostView{root: "/"}
	comm, err := os.ReadFile(filepath.Join(procRoot, "2", "comm"))
	if err != nil || !bytes.Equal(bytes.TrimSpace(comm), []byte("kthreadd")) {
		why := fmt.Sprintf("its PID 2 is %q, not kthreadd", bytes.TrimSpace(comm))
		if err != nil {
			why = err.Error()
		}
		v.warnings = append(v.warnings, fmt.Sprintf("%s does not look like the host's procfs (%s): PID 1 there is a container's init and the host's processes are out of sight; run agentd in the host's PID namespace (docker run --pid=host, hostPID: true) or mount the host's /proc and set host.proc", procRoot, why))
		return v
	}
	ns := func(proc, pid, kind string) string {
		l, err := os.Readlink(filepath.Join(proc, pid, "ns", kind))
		if err != nil {
			return ""
		}
		return l
	}
	selfPID, hostPID := ns(selfProc, "self", "pid"), ns(procRoot, "2", "pid")
	selfMnt, hostMnt := ns(selfProc, "self", "mnt"), ns(procRoot, "2", "mnt")
	if hostPID == "" || hostMnt == "" {
		v.warnings = append(v.warnings, fmt.Sprintf("cannot read the host's namespaces under %s/2/ns (agentd needs root and CAP_SYS_PTRACE): host identity is read from / and a container cannot be told from the host", procRoot))
		return v
	}
	if selfPID != "" && selfPID != hostPID {
		v.warnings = append(v.warnings, fmt.Sprintf("agentd runs in a PID namespace (%s) other than the host's (%s): engines report host PIDs that agentd cannot signal or join; run it in the host's PID namespace (docker run --pid=host, hostPID: true)", selfPID, hostPID))
	}
	if selfMnt != "" && selfMnt != hostMnt {
		// A mount namespace of its own is either a container or a systemd
		// unit's sandbox (ProtectSystem=, PrivateTmp=, … give the hardened
		// unit one). Only a container has another root: a sandbox re-mounts
		// the host's.
		hostRoot := filepath.Join(procRoot, "2", "root")
		if !sameFile(filepath.Join(selfProc, "self", "root"), hostRoot) {
			v.root = hostRoot
		}
		if cgroupRoot == defaultCgroup && !sameFile(cgroupRoot, filepath.Join(hostRoot, "sys", "fs", "cgroup")) {
			v.warnings = append(v.warnings, fmt.Sprintf("agentd runs in a container (its root and cgroup tree are not the host's) but reads the cgroup tree at %s, which is the container's own: mount the host's read-only (e.g. at /host/sys/fs/cgroup) and set host.cgroup, --host-cgroup or AGENTD_HOST_CGROUP", cgroupRoot))
		}
	}
	return v
}

// logHostView reports the view once at start.
func logHostView(log *slog.Logger, procRoot, cgroupRoot string, v hostView) {
	for _, w := range v.warnings {
		log.Warn(w, "proc", procRoot, "cgroup", cgroupRoot)
	}
	if v.root != "/" {
		log.Info("running in a container; the host is read through its mounts", "proc", procRoot, "cgroup", cgroupRoot, "host_root", v.root)
	}
}

// sameFile reports whether paths a and b name the same file (device and
// inode, after symlinks and /proc magic links); false when either is out of
// reach.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(fa, fb)
}
