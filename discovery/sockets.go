package discovery

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// ListeningSockets returns the paths (as bound, inside the process's mount
// namespace) of the unix stream sockets process pid listens on: the inodes of
// its socket:[INODE] fd links matched against the listening stream rows of
// /proc/PID/net/unix, which is the table of the process's network namespace.
// Abstract, unbound and relative sockets are left out, and so are endpoints that
// never answer as an engine (see skipSocketPath). An error wrapping
// fs.ErrPermission means the fd directory was unreadable; one wrapping
// ErrVanished means the process is gone.
func (p *ProcFS) ListeningSockets(pid int) ([]string, error) {
	dir := filepath.Join(p.root, strconv.Itoa(pid))
	fdDir := filepath.Join(dir, "fd")
	f, err := p.open(fdDir)
	if err != nil {
		return nil, fmt.Errorf("process %d: open %s: %w", pid, fdDir, vanished(err))
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("process %d: read %s: %w", pid, fdDir, vanished(err))
	}
	inodes := make(map[uint64]struct{}, len(names))
	for _, n := range names {
		l, err := os.Readlink(filepath.Join(fdDir, n))
		if err != nil {
			continue // closed since the listing
		}
		if ino, ok := procfs.ParseSocketLink(l); ok {
			inodes[ino] = struct{}{}
		}
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	table, err := p.readFile(filepath.Join(dir, "net", "unix"))
	if err != nil {
		return nil, fmt.Errorf("process %d: net/unix: %w", pid, err)
	}
	var paths []string
	procfs.ParseNetUnix(table, func(s procfs.UnixSocket) bool {
		_, mine := inodes[s.Inode]
		return mine && s.Listening()
	}, func(s procfs.UnixSocket) {
		if skipSocketPath(s.Path) == "" && !slices.Contains(paths, s.Path) {
			paths = append(paths, s.Path)
		}
	})
	slices.Sort(paths)
	return paths, nil
}

// skipSocketPath says why a listening socket is not an engine endpoint, or ""
// when it may be one: unbound, abstract (@name), relative (bound relative to a
// working directory we cannot know), deleted, containerd's ttrpc twin
// (*.ttrpc), metrics and debug endpoints, and Docker's libnetwork key sockets.
func skipSocketPath(p string) string {
	base := path.Base(p)
	switch {
	case p == "":
		return "unbound"
	case p[0] == '@':
		return "abstract"
	case p[0] != '/':
		return "relative"
	case strings.HasSuffix(p, " (deleted)"):
		return "deleted"
	case strings.HasSuffix(p, ".ttrpc"):
		return "ttrpc"
	case strings.Contains(base, "metrics"):
		return "metrics"
	case strings.Contains(base, "debug"):
		return "debug"
	case strings.Contains(p, "/libnetwork/"):
		return "libnetwork"
	}
	return ""
}

// socketEndpoint resolves a socket path bound by a process whose root is root
// to a path the host can dial, and checks it is still a socket. The check
// resolves bound inside root in one kernel step (procfs.IsSocketInRoot), and
// every dial of the endpoint resolves it inside root again (unixsock.Dial):
// the returned path is a name, never followed through the host's root.
func socketEndpoint(root, bound string) (string, error) {
	p, err := procfs.SecureJoin(root, bound)
	if err != nil {
		return "", err
	}
	sock, err := procfs.IsSocketInRoot(root, bound)
	if err != nil {
		return "", err
	}
	if !sock {
		return "", fmt.Errorf("%s: not a socket", p)
	}
	return p, nil
}

// HostRoot returns the directory through which the host reaches the files of
// process pid: "/" when the process shares the reader's mount namespace, else
// ROOT/ANCHOR/root where ANCHOR is the oldest process in the process's mount
// namespace (a container's init, such as the systemd of a systemd-in-Docker
// host; see OldestIn), else its outermost ancestor there, so that endpoints
// stay valid when a socket-activated engine exits and is started again under
// another PID, and when the process was started by a short-lived one that is
// not the container's init's descendant (`docker exec CONTAINER podman run`:
// the conmon's ancestors in its namespace end at the exec'd command).
func (p *ProcFS) HostRoot(pid int) (string, error) {
	d, err := p.Process(pid)
	if err != nil {
		return "", err
	}
	if d.MntNS != 0 && d.MntNS == p.selfMntNS() {
		return "/", nil
	}
	anchor := pid
	cur := d.PPID
	for i := 0; cur > 0 && d.MntNS != 0 && i < 4096; i++ {
		a, err := p.Process(cur)
		if err != nil || a.MntNS != d.MntNS {
			break
		}
		anchor = cur
		cur = a.PPID
	}
	if o, ok := p.OldestIn(d.MntNS); ok {
		anchor = o
	}
	return filepath.Join(p.root, strconv.Itoa(anchor), "root"), nil
}

// selfMntNS is the mount namespace of the reading process as this procfs shows
// it, 0 when the procfs has no "self" (a fake tree) or it is unreadable.
func (p *ProcFS) selfMntNS() uint64 {
	l, err := os.Readlink(filepath.Join(p.root, "self", "ns", "mnt"))
	if err != nil {
		return 0
	}
	ino, _ := procfs.ParseNSInode(l)
	return ino
}

// isPermission reports whether err is an access error (EACCES, EPERM).
func isPermission(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}
