package agent

import (
	"context"
	"fmt"
	"sort"

	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/status"
)

var _ status.Source = (*Agent)(nil)

// Status reports the agent's health and the engine tree (status.Source).
func (a *Agent) Status(_ context.Context) status.Report {
	snap := a.store.Snapshot()
	rep := status.Report{Version: a.opts.Version, Since: a.start, Healthy: a.Healthy()}
	if !rep.Healthy {
		rep.Problems = append(rep.Problems, "main loop is not making progress")
	}
	a.mu.Lock()
	for part, p := range a.problems {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %s", part, p))
	}
	units := map[string]string{}
	for _, u := range a.units {
		units[u.Endpoint] = string(u.State)
	}
	a.mu.Unlock()
	sort.Strings(rep.Problems)
	rep.Healthy = rep.Healthy && len(rep.Problems) == 0
	rep.Engines = Tree(snap, units)
	return rep
}

// Tree arranges the snapshot's engines as a tree: engines on the host at the
// top, every other engine under the container (of its parent engine) that
// holds it. units maps endpoints of socket-activated engines to their state.
func Tree(snap *model.Snapshot, units map[string]string) []status.EngineNode {
	counts := map[string]int{}
	names := map[string]string{} // container ID -> name
	for _, c := range snap.Containers {
		counts[c.EngineID]++
		names[c.ID] = c.Name
	}
	children := map[string][]model.Engine{} // parent engine ID -> engines
	var roots []model.Engine
	known := map[string]bool{}
	for _, e := range snap.Engines {
		known[e.ID] = true
	}
	for _, e := range snap.Engines {
		if e.ParentEngineID != "" && known[e.ParentEngineID] && e.ParentEngineID != e.ID {
			children[e.ParentEngineID] = append(children[e.ParentEngineID], e)
		} else {
			roots = append(roots, e)
		}
	}
	var build func(e model.Engine, depth int) status.EngineNode
	build = func(e model.Engine, depth int) status.EngineNode {
		n := status.EngineNode{ID: e.ID, Type: string(e.Type), Version: e.Version, Endpoint: e.Endpoint,
			PID: e.PID, Prefix: e.Prefix, Unit: e.Unit, State: units[e.Endpoint], Containers: counts[e.ID]}
		if depth > 16 { // a cycle in bad data must not recurse forever
			return n
		}
		groups := map[string]*status.NestedGroup{}
		var order []string
		for _, c := range children[e.ID] {
			g, ok := groups[c.ParentContainerID]
			if !ok {
				name := names[c.ParentContainerID]
				if name == "" {
					name = lastSegment(c.Prefix)
				}
				g = &status.NestedGroup{ContainerID: c.ParentContainerID, ContainerName: name}
				groups[c.ParentContainerID] = g
				order = append(order, c.ParentContainerID)
			}
			g.Engines = append(g.Engines, build(c, depth+1))
		}
		for _, id := range order {
			n.Nested = append(n.Nested, *groups[id])
		}
		return n
	}
	out := make([]status.EngineNode, 0, len(roots))
	for _, e := range roots {
		out = append(out, build(e, 0))
	}
	return out
}

func lastSegment(prefix string) string {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] == '/' {
			return prefix[i+1:]
		}
	}
	return prefix
}
