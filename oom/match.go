package oom

import (
	"path"
	"strings"

	"github.com/agentd-dev/agentd/model"
)

// How a Kill was matched to a container, best first.
const (
	matchNone = iota
	// matchOOMUnder: the cgroup whose limit was hit is the container's or
	// under it, and the task's cgroup is unknown or names no container.
	matchOOMUnder
	// matchUnder: the task's cgroup is below the container's (a sub-cgroup a
	// container's systemd or an inner engine made).
	matchUnder
	// matchPID: the killed process is the container's init.
	matchPID
	// matchID: a 64-hex container ID is an element of the task's cgroup
	// ("/docker/<id>", ".../libpod-<id>.scope", "cri-containerd-<id>.scope").
	matchID
	// matchExact: the task's cgroup is the container's.
	matchExact
)

// matchNames are the log values of the match kinds.
var matchNames = [...]string{"none", "oom cgroup", "cgroup below", "init pid", "container id in cgroup", "cgroup"}

// match picks the container that k killed a process of from cs, the most
// specific match winning (see the match kinds; among equals the longer cgroup
// path, then a running container). It reports how it matched.
//
// Cgroup paths are compared element-wise, and a container's path also matches
// as a suffix of the kernel's: the kernel prints memory cgroup paths from the
// root of the memory hierarchy, while an engine nested in a container with
// its own cgroup namespace reports paths from that namespace's root
// (/docker/<outer>/docker/<inner> in the log, /docker/<inner> from the inner
// engine). Engines here report the full path (podman in the systemd host
// says /docker/<th>/machine.slice/libpod-<id>.scope), and both forms match.
func match(cs []model.Container, k Kill) (model.Container, int) {
	task := cleanCgroup(k.TaskMemcg)
	oom := cleanCgroup(k.OOMMemcg)
	ids := hexIDs(task)
	best, bestKind, bestLen := -1, matchNone, 0
	for i := range cs {
		c := &cs[i]
		kind, n := matchNone, 0
		cg := cleanCgroup(c.CgroupPath)
		if cg == "/" {
			cg = "" // a container in the root cgroup says nothing
		}
		switch {
		case cg != "" && task != "" && cgroupIs(task, cg):
			kind, n = matchExact, len(cg)
		case len(c.ID) == 64 && idIndex(ids, c.ID) >= 0:
			kind, n = matchID, idIndex(ids, c.ID)
		case k.PID > 0 && c.PID == k.PID && running(c.State):
			kind = matchPID
		case cg != "" && task != "" && cgroupUnder(task, cg):
			kind, n = matchUnder, len(cg)
		case cg != "" && oom != "" && (cgroupIs(oom, cg) || cgroupUnder(oom, cg)):
			kind, n = matchOOMUnder, len(cg)
		}
		if kind == matchNone {
			continue
		}
		better := kind > bestKind ||
			(kind == bestKind && n > bestLen) ||
			(kind == bestKind && n == bestLen && running(c.State) && !running(cs[best].State))
		if better {
			best, bestKind, bestLen = i, kind, n
		}
	}
	if best < 0 {
		return model.Container{}, matchNone
	}
	return cs[best], bestKind
}

func running(s model.ContainerState) bool {
	return s == model.StateRunning || s == model.StatePaused
}

// cleanCgroup makes a cgroup path absolute and clean; "" stays "".
func cleanCgroup(p string) string {
	p = strings.TrimSpace(p)
	if p == "" {
		return ""
	}
	return path.Clean("/" + p)
}

// cgroupIs reports whether the kernel's path p is the container's cgroup cg:
// equal, or ending in cg at an element boundary (see match).
func cgroupIs(p, cg string) bool {
	return p == cg || strings.HasSuffix(p, cg) // cg starts with '/': element-aligned
}

// cgroupUnder reports whether p is strictly below cg, cg taken from the root or
// at an element boundary further down.
func cgroupUnder(p, cg string) bool {
	return strings.Contains(p, cg+"/") // cg starts with '/': element-aligned
}

// hexIDs returns the 64-hex-digit runs in the elements of p, deepest first:
// the container IDs engines put in cgroup names.
func hexIDs(p string) []string {
	var ids []string
	elems := strings.Split(p, "/")
	for i := len(elems) - 1; i >= 0; i-- {
		e := elems[i]
		run := 0
		for j := 0; j <= len(e); j++ {
			if j < len(e) && isLowerHex(e[j]) {
				run++
				continue
			}
			if run == 64 {
				ids = append(ids, e[j-64:j])
			}
			run = 0
		}
	}
	return ids
}

func isLowerHex(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' }

// idIndex scores where id appears in ids (deepest first): a higher score for
// a deeper element, -1 when absent.
func idIndex(ids []string, id string) int {
	for i, x := range ids {
		if x == id {
			return len(ids) - i
		}
	}
	return -1
}
