package discovery

import "github.com/agentd-dev/agentd/internal/procfs"

// cgroupPath picks the process's cgroup path from /proc/PID/cgroup: the
// unified (cgroup v2, "0::") path when there is one, else the name=systemd
// hierarchy's path, else the first hierarchy's path; "" when no line parses.
// Malformed lines are skipped.
func cgroupPath(b []byte) string {
	lines, _ := procfs.ParseCgroup(b)
	var systemd, first *procfs.CgroupLine
	for i := range lines {
		l := &lines[i]
		switch {
		case l.ID == 0 && l.Controllers == "":
			return l.Path
		case l.Controllers == "name=systemd" && systemd == nil:
			systemd = l
		case first == nil:
			first = l
		}
	}
	switch {
	case systemd != nil:
		return systemd.Path
	case first != nil:
		return first.Path
	}
	return ""
}
