package activation

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"syscall"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// FindNestedSystemd returns the host PIDs (as seen in procRoot, normally
// /proc) of the systemd instances that run as PID 1 of a nested PID
// namespace: processes whose comm is "systemd" and whose NSpid line in
// /proc/PID/status has more than one element, the last being 1. The host's
// own systemd (NSpid "1") and user instances ("systemd --user", NSpid not
// ending in 1) are not returned. Processes that exit during the scan are
// skipped; the error is set only when procRoot itself cannot be read. The
// result is sorted.
func FindNestedSystemd(procRoot string) ([]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("find nested systemd under %s: %w", procRoot, err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if isNestedSystemd(procRoot, pid) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// isNestedSystemd reports whether procRoot/pid is a systemd that is PID 1 of
// a nested PID namespace.
func isNestedSystemd(procRoot string, pid int) bool {
	comm, err := procfs.Comm(procRoot, pid)
	if err != nil || comm != "systemd" {
		return false
	}
	st, err := procfs.ReadStatus(procRoot, pid)
	return err == nil && len(st.NSpid) > 1 && st.NSpid[len(st.NSpid)-1] == 1
}

// systemdAlive reports whether procRoot/pid is still a systemd process.
func systemdAlive(procRoot string, pid int) bool {
	comm, err := procfs.Comm(procRoot, pid)
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ESRCH)
	}
	return comm == "systemd"
}
