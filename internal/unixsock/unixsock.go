// Package unixsock connects to engine sockets that live inside other
// processes' root filesystems without letting those processes redirect
// agentd. A path under /proc/PID/root is resolved by the kernel inside that
// root (procfs.OpenInRoot: openat2 with RESOLVE_IN_ROOT, or a walk by descriptors
// where openat2 is missing or filtered) at the moment of every dial, and the
// socket found is what gets connected, through its O_PATH descriptor: a
// symbolic link that a container plants (or swaps in after discovery checked
// the path) resolves inside the container, never to a host path.
//
// It does not speak any protocol: engine clients (HTTP, gRPC) take Dial as
// their dialer.
package unixsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"

	"github.com/agentd-dev/agentd/internal/procfs"
	"golang.org/x/sys/unix"
)

// procRootRef finds the /PID/root/ part of a path reached through a process's
// root, whatever the procfs mount point.
var procRootRef = regexp.MustCompile(`^(.*/[0-9]+/root)/(.+)$`)

// Dial connects to the unix stream socket at path. A path of the form
// PROC/PID/root/REST is resolved with REST inside PROC/PID/root (see the
// package doc); any other path is dialled as it is.
func Dial(ctx context.Context, path string) (net.Conn, error) {
	if m := procRootRef.FindStringSubmatch(path); m != nil {
		return DialIn(ctx, m[1], m[2])
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// DialIn connects to the unix stream socket at rel inside the directory root,
// resolved as a process whose root directory is root would resolve it
// (procfs.OpenInRoot: absolute and relative symlinks stay inside root and
// ".." never climbs above it). The error names root and rel.
func DialIn(ctx context.Context, root, rel string) (net.Conn, error) {
	f, err := procfs.OpenInRoot(root, rel, unix.O_PATH)
	if err != nil {
		return nil, fmt.Errorf("dial %s in %s: resolve: %w", rel, root, err)
	}
	defer f.Close()
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("dial %s in %s: %w", rel, root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("dial %s in %s: %w", rel, root, errNotSocket)
	}
	// connect(2) through the descriptor's magic link reaches exactly the
	// inode that was resolved above (as systemd does for long socket paths).
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(fd))
	if err != nil {
		return nil, fmt.Errorf("dial %s in %s: %w", rel, root, err)
	}
	return c, nil
}

var errNotSocket = errors.New("not a socket")
