package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
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
// would open it: absolute and relative symlinks stay inside root and ".."
// never climbs above it. The kernel resolves it in one step where it can
// (openat2 with RESOLVE_IN_ROOT): a symlink swapped in meanwhile cannot lead
// out of root. Where openat2 is missing (kernels before 5.6) or refused
// (seccomp filters that answer ENOSYS or EPERM for it, such as systemd's
// RestrictSUIDSGID= or a container runtime's default profile), rel is walked
// one component at a time from a descriptor of root, each opened with
// O_NOFOLLOW relative to the one before and each symlink read and resolved
// inside root by hand: never a path string through the host's root. flags
// are open(2) flags (O_CLOEXEC is added); O_PATH gives a descriptor only good
// for fstat and for connecting through /proc/self/fd. The error names root
// and rel.
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
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		fd, err = walkInRoot(dir, rel, flags)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: %w", rel, root, &os.PathError{Op: "openat2", Path: rel, Err: err})
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, rel)), nil
}

// walkInRoot resolves rel below the directory descriptor root without
// openat2: each component is opened O_PATH|O_NOFOLLOW relative to its parent's
// descriptor, a symlink is read (readlinkat on its own descriptor) and its
// target walked in turn (from root when absolute), ".." pops back to the
// parent's descriptor and stops at root. The last component is reopened with
// flags through /proc/self/fd unless flags ask for O_PATH only.
func walkInRoot(root int, rel string, flags int) (int, error) {
	const maxLinks = 40
	rootDup, err := unix.Dup(root)
	if err != nil {
		return -1, err
	}
	stack := []int{rootDup} // descriptors of the directories walked, root first
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	parts := strings.Split(rel, "/")
	links := 0
	for len(parts) > 0 {
		comp := parts[0]
		parts = parts[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				unix.Close(stack[len(stack)-1])
				stack = stack[:len(stack)-1]
			}
			continue
		}
		fd, err := unix.Openat(stack[len(stack)-1], comp, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			links++
			if links > maxLinks {
				unix.Close(fd)
				return -1, unix.ELOOP
			}
			buf := make([]byte, unix.PathMax)
			n, err := unix.Readlinkat(fd, "", buf)
			unix.Close(fd)
			if err != nil {
				return -1, err
			}
			target := string(buf[:n])
			if strings.HasPrefix(target, "/") {
				for _, d := range stack[1:] {
					unix.Close(d)
				}
				stack = stack[:1]
			}
			parts = append(strings.Split(target, "/"), parts...)
		case len(parts) == 0 || allEmpty(parts):
			if flags&unix.O_PATH != 0 {
				return fd, nil
			}
			defer unix.Close(fd)
			return unix.Open("/proc/self/fd/"+strconv.Itoa(fd), (flags&^unix.O_CREAT)|unix.O_CLOEXEC, 0)
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			unix.Close(fd)
			return -1, unix.ENOTDIR
		default:
			stack = append(stack, fd)
		}
	}
	// rel named root itself (or only "." and ".." components).
	return unix.Openat(stack[len(stack)-1], ".", flags|unix.O_CLOEXEC, 0)
}

// allEmpty reports whether parts are all "" or "." (a trailing slash).
func allEmpty(parts []string) bool {
	for _, p := range parts {
		if p != "" && p != "." {
			return false
		}
	}
	return true
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
