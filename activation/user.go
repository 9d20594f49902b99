package activation

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// userSystemd is a user instance of systemd ("systemd --user", started by
// user@UID.service): its owner and the runtime directory its buses are in.
type userSystemd struct {
	pid      int
	uid, gid int
	// runtimeDir is XDG_RUNTIME_DIR inside the instance's root, normally
	// /run/user/UID.
	runtimeDir string
}

// FindUserSystemd returns the host PIDs (as seen in procRoot) of the user
// instances of systemd, on the host and in containers: processes whose comm
// is "systemd" and whose command line has --user. The result is sorted;
// processes that exit during the scan are skipped.
func FindUserSystemd(procRoot string) ([]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("find user systemd instances under %s: %w", procRoot, err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if isUserSystemd(procRoot, pid) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

func isUserSystemd(procRoot string, pid int) bool {
	comm, err := procfs.Comm(procRoot, pid)
	if err != nil || comm != "systemd" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	return err == nil && slices.ContainsFunc(bytes.Split(b, []byte{0}), func(a []byte) bool { return string(a) == "--user" })
}

// readUserSystemd reads who owns the user instance pid and where its runtime
// directory is: XDG_RUNTIME_DIR of its environment, else /run/user/UID.
func readUserSystemd(procRoot string, pid int) (userSystemd, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	fi, err := os.Stat(dir)
	if err != nil {
		return userSystemd{}, fmt.Errorf("user systemd %d: %w", pid, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return userSystemd{}, fmt.Errorf("user systemd %d: no owner in the stat of %s", pid, dir)
	}
	u := userSystemd{pid: pid, uid: int(st.Uid), gid: int(st.Gid)}
	if env, err := os.ReadFile(filepath.Join(dir, "environ")); err == nil {
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("XDG_RUNTIME_DIR=")); ok && filepath.IsAbs(string(v)) {
				u.runtimeDir = filepath.Clean(string(v))
			}
		}
	}
	if u.runtimeDir == "" {
		u.runtimeDir = "/run/user/" + strconv.Itoa(u.uid)
	}
	return u, nil
}

// userBusAddrs are the addresses of a user instance, through
// /proc/PID/root and as its owner (a user's systemd and bus accept no other
// uid, root included): its private socket, then the user's bus.
func userBusAddrs(procRoot string, u userSystemd) []busAddr {
	root := filepath.Join(procRoot, strconv.Itoa(u.pid), "root", u.runtimeDir)
	as := &credential{uid: u.uid, gid: u.gid}
	return []busAddr{
		{address: unixAddress(filepath.Join(root, "systemd/private")), direct: true, as: as},
		{address: unixAddress(filepath.Join(root, "bus")), as: as},
	}
}

// credential is the uid and gid a connection is made as.
type credential struct{ uid, gid int }

// dialUnixAs connects to the unix socket path as c: the peer credentials the
// server sees (SO_PEERCRED) are c's, and the path is resolved with c's
// rights. Only the calling OS thread takes c's effective IDs, for the
// connect alone; the rest of agentd keeps running as itself. It needs
// CAP_SETUID and CAP_SETGID.
func dialUnixAs(ctx context.Context, path string, c credential) (net.Conn, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fd, err, restored := connectAs(path, c)
		if restored {
			// A thread whose IDs could not be put back is never reused:
			// it ends with this goroutine while still locked.
			runtime.UnlockOSThread()
		}
		done <- result{fd, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.err == nil {
				unix.Close(r.fd)
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, r.err
	}
	f := os.NewFile(uintptr(r.fd), path)
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	return conn, nil
}

// connectAs runs on a locked OS thread: it takes c's effective gid and uid
// with raw (per-thread) system calls, connects, and takes its own back.
// restored is false when the thread's IDs could not be put back.
func connectAs(path string, c credential) (fd int, err error, restored bool) {
	euid, egid := unix.Geteuid(), unix.Getegid()
	keep := ^uintptr(0) // -1: leave that ID as it is
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, keep, uintptr(c.gid), keep); e != 0 {
		return -1, fmt.Errorf("take gid %d to connect to %s: %w", c.gid, path, e), true
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(c.uid), keep); e != 0 {
		_, _, e2 := unix.RawSyscall(unix.SYS_SETRESGID, keep, uintptr(egid), keep)
		return -1, fmt.Errorf("take uid %d to connect to %s: %w", c.uid, path, e), e2 == 0
	}
	fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		if err = unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		err = fmt.Errorf("connect to %s as uid %d: %w", path, c.uid, err)
	}
	_, _, e1 := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(euid), keep)
	_, _, e2 := unix.RawSyscall(unix.SYS_SETRESGID, keep, uintptr(egid), keep)
	// Taking another euid made the process non-dumpable, which hides
	// /proc/self from everyone but root; agentd runs as root, so that
	// changes nothing it needs and is left as the kernel set it.
	return fd, err, e1 == 0 && e2 == 0
}
