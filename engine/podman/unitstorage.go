package podman

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// rootStorage is the storage root (graphroot) of podman run as root, by
// default.
const rootStorage = "/var/lib/containers/storage"

// ServiceStorage returns the storage root that the podman service started
// by the socket unit of systemd instance systemdPID (a host PID under
// procRoot; 0 for the host's own systemd) uses by default, as reached from
// the host: podman's default for root under a system instance, and for the
// instance's user under a user instance ("systemd --user": its environment's
// XDG_DATA_HOME, else HOME/.local/share, then containers/storage). A
// storage.conf that moves the root is not read: a caller compares the path
// with a storage it found (os.SameFile) and finds no match then.
func ServiceStorage(procRoot string, systemdPID int) (string, error) {
	if systemdPID <= 0 {
		return rootStorage, nil
	}
	b, err := os.ReadFile(procfs.Path(procRoot, systemdPID, "cmdline"))
	if err != nil {
		return "", fmt.Errorf("systemd %d: %w", systemdPID, err)
	}
	root := procfs.Path(procRoot, systemdPID, "root")
	if !slices.Contains(procfs.ParseCmdline(b), "--user") {
		return filepath.Join(root, rootStorage), nil
	}
	env, err := os.ReadFile(procfs.Path(procRoot, systemdPID, "environ"))
	if err != nil {
		return "", fmt.Errorf("user systemd %d: %w", systemdPID, err)
	}
	var home, data string
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("HOME=")); ok {
			home = string(v)
		}
		if v, ok := bytes.CutPrefix(kv, []byte("XDG_DATA_HOME=")); ok {
			data = string(v)
		}
	}
	if !path.IsAbs(data) {
		if !path.IsAbs(home) {
			return "", fmt.Errorf("user systemd %d: no HOME in its environment", systemdPID)
		}
		data = path.Join(home, ".local/share")
	}
	return filepath.Join(root, path.Clean(data), "containers/storage"), nil
}
