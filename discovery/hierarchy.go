package discovery

import (
	"github.com/agentd-dev/agentd/model"
)

// processSource is what the hierarchy needs from the process table.
type processSource interface {
	Process(pid int) (*Process, error)
}

// placement says which container of which engine encloses an engine.
type placement struct {
	engine    string // ID of the engine that manages the container
	container EngineContainer
}

// maxAncestors bounds PPID-chain walks against loops in a corrupt table.
const maxAncestors = 4096

// resolveHierarchy finds, for every engine, the innermost container (of another
// engine) whose init process is the engine's process or one of its ancestors.
//
// locators gives each engine's host PID to start from (its PID, or for an engine
// known only by endpoint the PID through whose root the endpoint is reached);
// lists gives each engine's running containers with init PIDs in that engine's
// own PID namespace. A container PID reported by engine E1 is compared with an
// ancestor A's PID in E1's namespace: NSpid[depth(E1)], after checking that A's
// namespace is E1's or nested in it (the nearest ancestor of A at E1's depth is
// in E1's PID namespace). order fixes which engine wins when two report the same
// process (Docker before podman before containerd).
func resolveHierarchy(procs processSource, order []string, locators map[string]int, lists map[string][]EngineContainer) map[string]placement {
	type nsInfo struct {
		depth int
		pidns uint64
	}
	ns := make(map[string]nsInfo, len(order))
	for _, id := range order {
		if len(lists[id]) == 0 {
			continue
		}
		p, err := procs.Process(locators[id])
		if err != nil {
			continue
		}
		ns[id] = nsInfo{depth: p.Depth(), pidns: p.PIDNS}
	}
	out := make(map[string]placement)
	for _, id2 := range order {
		pid := locators[id2]
		found := false
		for i := 0; pid > 0 && i < maxAncestors && !found; i++ {
			a, err := procs.Process(pid)
			if err != nil {
				break
			}
			for _, id1 := range order {
				info, ok := ns[id1]
				if id1 == id2 || !ok || a.Depth() < info.depth {
					continue
				}
				if !inNamespace(procs, a, info.depth, info.pidns) {
					continue
				}
				inE1 := a.PID
				if len(a.NSpid) > info.depth {
					inE1 = a.NSpid[info.depth]
				}
				for _, c := range lists[id1] {
					if c.PID == inE1 && c.PID > 0 {
						out[id2] = placement{engine: id1, container: c}
						found = true
						break
					}
				}
				if found {
					break
				}
			}
			pid = a.PPID
		}
	}
	return out
}

// inNamespace reports whether process a lives in the PID namespace (depth,
// pidns) or in one nested below it: the nearest of a and its ancestors at that
// depth or shallower must be at exactly that depth and in that namespace. A
// namespace inode of 0 (unreadable) matches on depth alone.
func inNamespace(procs processSource, a *Process, depth int, pidns uint64) bool {
	p := a
	for i := 0; i < maxAncestors; i++ {
		if p.Depth() <= depth {
			return p.Depth() == depth && (pidns == 0 || p.PIDNS == 0 || p.PIDNS == pidns)
		}
		next, err := procs.Process(p.PPID)
		if err != nil || p.PPID <= 0 {
			return false
		}
		p = next
	}
	return false
}

// applyHierarchy sets Prefix, ParentContainerID and ParentEngineID of every
// engine in engines from the placements, prefixes joining container names from
// the host down. Engines without a placement are on the host.
func applyHierarchy(engines map[string]*model.Engine, places map[string]placement) {
	var prefix func(id string, depth int) string
	prefix = func(id string, depth int) string {
		pl, ok := places[id]
		if !ok || depth > 64 {
			return ""
		}
		outer := prefix(pl.engine, depth+1)
		if outer == "" {
			return pl.container.Name
		}
		return outer + "/" + pl.container.Name
	}
	for id, e := range engines {
		pl, ok := places[id]
		if !ok {
			e.Prefix, e.ParentContainerID, e.ParentEngineID = "", "", ""
			continue
		}
		e.Prefix = prefix(id, 0)
		e.ParentContainerID = pl.container.ID
		e.ParentEngineID = pl.engine
	}
}
