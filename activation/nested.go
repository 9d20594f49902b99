package activation

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
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
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	comm, err := os.ReadFile(filepath.Join(dir, "comm"))
	if err != nil || strings.TrimSpace(string(comm)) != "systemd" {
		return false
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return false
	}
	ns, err := parseNSpid(status)
	return err == nil && len(ns) > 1 && ns[len(ns)-1] == 1
}

// errNoNSpid is returned by parseNSpid when the status has no NSpid line
// (kernels before 4.1).
var errNoNSpid = errors.New("no NSpid line")

// parseNSpid returns the PIDs of the NSpid line of a /proc/PID/status file,
// from the outermost PID namespace to the process's own.
func parseNSpid(status []byte) ([]int, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "NSpid:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("empty NSpid line")
		}
		out := make([]int, 0, len(fields))
		for _, f := range fields {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("NSpid field %q is not a PID", f)
			}
			out = append(out, n)
		}
		return out, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errNoNSpid
}

// systemdAlive reports whether procRoot/pid is still a systemd process.
func systemdAlive(procRoot string, pid int) bool {
	comm, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ESRCH)
	}
	return strings.TrimSpace(string(comm)) == "systemd"
}
