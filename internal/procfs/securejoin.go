package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrTooManyLinks is wrapped by SecureJoin for a symlink loop.
var ErrTooManyLinks = errors.New("too many levels of symbolic links")

// SecureJoin resolves unsafePath inside root as a process whose root directory
// is root would: symbolic links, absolute or relative, are resolved relative to
// root and ".." never climbs above it. It returns root joined with the resolved
// path. Every component must exist; the error wraps fs.ErrNotExist otherwise
// (a socket file that was deleted).
//
// This matters for /proc/PID/root: the kernel resolves an absolute symlink met
// under /proc/PID/root against the caller's root, not the process's, so
// /proc/PID/root/var/run/docker.sock with /var/run -> /run would silently reach
// the host's /run.
func SecureJoin(root, unsafePath string) (string, error) {
	const maxLinks = 40
	resolved := "/"
	rest := unsafePath
	links := 0
	for rest != "" {
		var comp string
		rest = strings.TrimLeft(rest, "/")
		comp, rest, _ = strings.Cut(rest, "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, comp)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("resolve %s in %s: %w", unsafePath, root, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > maxLinks {
			return "", fmt.Errorf("resolve %s in %s: %w", unsafePath, root, ErrTooManyLinks)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("resolve %s in %s: %w", unsafePath, root, err)
		}
		if path.IsAbs(target) {
			resolved = "/"
		}
		rest = target + "/" + rest
	}
	return filepath.Join(root, resolved), nil
}

// OpenInRoot opens rel inside root as a process whose root directory is root
// would open it, resolved by the kernel in one step (openat2 with
// RESOLVE_IN_ROOT): unlike a SecureJoin followed by an open, a symlink that
// is swapped in between cannot lead out of root. flags are open(2) flags
// (O_CLOEXEC is added); O_PATH gives a descriptor only good for fstat and
// for connecting through /proc/self/fd. On kernels without openat2 (before
// 5.6) it fails rather than fall back to an unchecked path. The error names
// root and rel.
func OpenInRoot(root, rel string, flags int) (*os.File, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: open root: %w", rel, root, err)
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, rel, &unix.OpenHow{
		Flags:   uint64(flags) | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: %w", rel, root, &os.PathError{Op: "openat2", Path: rel, Err: err})
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, rel)), nil
}

// IsSocketInRoot reports whether rel, resolved inside root as OpenInRoot
// does, is a socket; the error says why it could not tell.
func IsSocketInRoot(root, rel string) (bool, error) {
	f, err := OpenInRoot(root, rel, unix.O_PATH)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, fmt.Errorf("stat %s in %s: %w", rel, root, err)
	}
	return st.Mode&unix.S_IFMT == unix.S_IFSOCK, nil
}
