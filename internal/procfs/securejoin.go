package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
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
