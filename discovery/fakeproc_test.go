package discovery

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeProc describes one process of a fake procfs tree.
type fakeProc struct {
	pid, ppid int
	comm      string
	start     uint64
	cmdline   []string
	nspid     []int  // default: {pid}
	pidns     uint64 // default: 1
	mntns     uint64 // default: 1
	fds       map[int]string
	netUnix   string   // rows after the header
	sockets   []string // socket files to create inside the process's root
	links     map[string]string
	noDetail  bool // stat only: the process exits before the rest is read
}

const netUnixHeader = "Num       RefCount Protocol Flags    Type St Inode Path\n"

// writeFakeProc writes the processes under root as procfs would show them.
// Each process's filesystem root (ROOT/PID/root) is a plain directory holding
// the socket files and symlinks it names.
func writeFakeProc(t testing.TB, root string, procs []fakeProc) {
	t.Helper()
	for _, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		must(t, os.MkdirAll(filepath.Join(dir, "ns"), 0o755))
		stat := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 %d 1000000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
			p.pid, p.comm, p.ppid, p.pid, p.pid, p.start)
		must(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
		if p.noDetail {
			continue
		}
		cmd := strings.Join(p.cmdline, "\x00")
		if cmd != "" {
			cmd += "\x00"
		}
		must(t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmd), 0o644))
		nspid := p.nspid
		if nspid == nil {
			nspid = []int{p.pid}
		}
		var ns []string
		for _, n := range nspid {
			ns = append(ns, strconv.Itoa(n))
		}
		status := fmt.Sprintf("Name:\t%s\nTgid:\t%d\nNSpid:\t%s\nPPid:\t%d\n", p.comm, p.pid, strings.Join(ns, "\t"), p.ppid)
		must(t, os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/system.slice/"+p.comm+".service\n"), 0o644))
		pidns, mntns := p.pidns, p.mntns
		if pidns == 0 {
			pidns = 1
		}
		if mntns == 0 {
			mntns = 1
		}
		must(t, os.Symlink(fmt.Sprintf("pid:[%d]", pidns), filepath.Join(dir, "ns", "pid")))
		must(t, os.Symlink(fmt.Sprintf("mnt:[%d]", mntns), filepath.Join(dir, "ns", "mnt")))
		must(t, os.MkdirAll(filepath.Join(dir, "fd"), 0o755))
		for fd, target := range p.fds {
			must(t, os.Symlink(target, filepath.Join(dir, "fd", strconv.Itoa(fd))))
		}
		must(t, os.MkdirAll(filepath.Join(dir, "net"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "net", "unix"), []byte(netUnixHeader+p.netUnix), 0o644))
		fsRoot := filepath.Join(dir, "root")
		must(t, os.MkdirAll(fsRoot, 0o755))
		for _, s := range p.sockets {
			path := filepath.Join(fsRoot, s)
			must(t, os.MkdirAll(filepath.Dir(path), 0o755))
			must(t, unix.Mknod(path, unix.S_IFSOCK|0o600, 0))
		}
		for from, to := range p.links {
			path := filepath.Join(fsRoot, from)
			must(t, os.MkdirAll(filepath.Dir(path), 0o755))
			must(t, os.Symlink(to, path))
		}
	}
}

// unixRow is one listening stream row of /proc/PID/net/unix.
func unixRow(inode uint64, path string) string {
	return fmt.Sprintf("0000000000000000: 00000002 00000000 00010000 0001 01 %d %s\n", inode, path)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
