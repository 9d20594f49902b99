package discovery

import (
	"cmp"
	"slices"

	"github.com/agentd-dev/agentd/model"
)

// Containers is where discovery learns each engine's containers and the host
// PIDs of their init processes: the workload model, which the watchers keep.
type Containers interface {
	// EngineInits appends to buf the running containers of the engine with
	// this ID that have an init process, and returns it with the number of
	// containers the engine has in all (running or not).
	EngineInits(engineID string, buf []model.Init) ([]model.Init, int)
}

// placement says which container of which engine encloses an engine.
type placement struct {
	engine    string // ID of the engine that manages the container
	container model.Init
}

// maxAncestors bounds PPID-chain walks against loops in a corrupt table.
const maxAncestors = 4096

// typeOrder ranks engine families for hierarchy ties: a process that Docker
// reports as a container is also a containerd task, and Docker's word counts.
func typeOrder(t model.EngineType) int {
	switch t {
	case model.Docker:
		return 0
	case model.Podman:
		return 1
	case model.Containerd:
		return 2
	}
	return 3
}

// hierarchyScratch is the memory resolve reuses from one discovery pass to
// the next: the init processes of every container, a thousand on a busy
// host, every few seconds.
type hierarchyScratch struct {
	inits map[int]placement
	buf   []model.Init
	// counts is how many containers (running or not) each engine had at
	// the last resolve.
	counts map[string]int
}

// resolve finds, for every engine in engines, the innermost
// container (of another engine) whose init process is the engine's process or
// one of its ancestors. locate gives an engine's host PID to start from;
// parent gives a process's parent from the process table; containers gives
// each engine's containers, whose PIDs are host PIDs. When two engines report
// the same process, the one ranked first by typeOrder wins.
func (h *hierarchyScratch) resolve(engines []model.Engine, locate func(model.Engine) int, parent func(pid int) (int, bool), containers Containers) map[string]placement {
	order := slices.Clone(engines)
	slices.SortFunc(order, func(a, b model.Engine) int {
		return cmp.Or(cmp.Compare(typeOrder(a.Type), typeOrder(b.Type)), cmp.Compare(a.ID, b.ID))
	})
	if h.inits == nil {
		h.inits, h.counts = make(map[int]placement), make(map[string]int)
	}
	clear(h.inits)
	clear(h.counts)
	inits := h.inits
	for _, e := range order {
		h.buf, h.counts[e.ID] = containers.EngineInits(e.ID, h.buf[:0])
		for _, c := range h.buf {
			if _, ok := inits[c.PID]; !ok {
				inits[c.PID] = placement{engine: e.ID, container: c}
			}
		}
	}
	out := make(map[string]placement)
	if len(inits) == 0 {
		return out
	}
	for _, e := range order {
		pid := locate(e)
		for i := 0; pid > 0 && i < maxAncestors; i++ {
			if pl, ok := inits[pid]; ok && pl.engine != e.ID {
				out[e.ID] = pl
				break
			}
			ppid, ok := parent(pid)
			if !ok {
				break
			}
			pid = ppid
		}
	}
	return out
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
		e.ParentContainerID = pl.container.ContainerID
		e.ParentEngineID = pl.engine
	}
}
