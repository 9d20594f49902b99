package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/discovery"
	"github.com/agentd-dev/agentd/internal/wait"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/watch"
)

// engineView is one engine as `agentd engines` prints it.
type engineView struct {
	model.Engine
	// Containers is the number of running containers, -1 when unknown (CRI
	// engines, or the listing failed).
	Containers int `json:"containers"`
}

// runEngines implements `agentd engines`: the engines of the procfs root as a
// tree (nested engines under the container that holds them), or as JSON with
// --json.
func runEngines(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("engines", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON for machines")
	procRoot := fs.String("proc", discovery.DefaultProcRoot, "procfs root to scan")
	timeout := fs.Duration("timeout", 2*time.Second, "time limit of each engine probe")
	waitFor := fs.Duration("wait", 10*time.Second, "how long to wait for the engines to list their containers")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: engines: unexpected argument %q", errUsage, fs.Arg(0))
	}
	views, err := listEngines(ctx, *procRoot, *timeout, *waitFor, log)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Engines []engineView `json:"engines"`
		}{views})
	}
	printEngineTree(stdout, views)
	return nil
}

// printEngineTree prints host engines first and each nested engine indented
// under the container (of its parent engine) that holds it.
func printEngineTree(w io.Writer, views []engineView) {
	if len(views) == 0 {
		fmt.Fprintln(w, "no container engines found")
		return
	}
	byParent := make(map[string][]engineView) // parent engine ID -> nested engines
	known := make(map[string]bool, len(views))
	for _, v := range views {
		known[v.ID] = true
	}
	var roots []engineView
	for _, v := range views {
		if v.ParentEngineID == "" || !known[v.ParentEngineID] {
			roots = append(roots, v)
			continue
		}
		byParent[v.ParentEngineID] = append(byParent[v.ParentEngineID], v)
	}
	var walk func(v engineView, indent string, depth int)
	walk = func(v engineView, indent string, depth int) {
		fmt.Fprintf(w, "%s%s\n", indent, engineLine(v))
		if depth > 32 {
			return
		}
		nested := byParent[v.ID]
		for i := 0; i < len(nested); {
			cid := nested[i].ParentContainerID
			name := lastPrefixElem(nested[i].Prefix)
			fmt.Fprintf(w, "%s  container %s (%s)\n", indent, name, shortContainerID(cid))
			for ; i < len(nested) && nested[i].ParentContainerID == cid; i++ {
				walk(nested[i], indent+"    ", depth+1)
			}
		}
	}
	for _, v := range roots {
		walk(v, "", 0)
	}
}

func engineLine(v engineView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", v.Type, orDash(v.Version))
	if v.APIVersion != "" {
		fmt.Fprintf(&b, " (api %s)", v.APIVersion)
	}
	fmt.Fprintf(&b, "  %s", v.Endpoint)
	if v.PID > 0 {
		fmt.Fprintf(&b, "  pid %d", v.PID)
	} else {
		b.WriteString("  not running")
	}
	if v.Containers >= 0 {
		fmt.Fprintf(&b, "  %d running containers", v.Containers)
	}
	if v.Unit != "" {
		fmt.Fprintf(&b, "  unit %s", v.Unit)
	}
	return b.String()
}

func lastPrefixElem(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return orDash(p)
}

func shortContainerID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listEngines finds the engines under procRoot as the agent does: a discovery
// pass, one watcher per engine until each has listed its containers (or
// listWait passed), then a second pass that places nested engines in the
// containers the watchers listed.
func listEngines(ctx context.Context, procRoot string, timeout, listWait time.Duration, log *slog.Logger) ([]engineView, error) {
	store := model.NewStore(log)
	fams := agent.Families()
	d, err := discovery.New(discovery.Config{ProcRoot: procRoot, ProbeTimeout: timeout}, fams, store, log)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	engines, err := d.Scan(ctx)
	if err != nil {
		return nil, err
	}
	sup := watch.NewSupervisor(store, fams, watch.Options{ProcRoot: procRoot}, log)
	defer sup.Close()
	for _, e := range engines {
		if err := sup.Add(ctx, e); err != nil {
			log.Warn("cannot watch engine", "engine", e.ID, "err", err)
		}
	}
	deadline := time.Now().Add(listWait)
	for time.Now().Before(deadline) && !allSynced(sup) {
		if !wait.Sleep(ctx, 50*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	if engines, err = d.Scan(ctx); err != nil {
		return nil, err
	}
	views := make([]engineView, len(engines))
	for i, e := range engines {
		views[i] = engineView{Engine: e, Containers: -1}
		if w, ok := sup.Watcher(e.ID); !ok || w.Stats().Syncs == 0 {
			continue
		}
		views[i].Containers = 0
		for _, c := range store.EngineContainers(e.ID) {
			if c.State.Running() && store.Visible(&c) {
				views[i].Containers++
			}
		}
	}
	return views, nil
}

// allSynced reports whether every watcher of sup has listed its engine once.
func allSynced(sup *watch.Supervisor) bool {
	for _, id := range sup.EngineIDs() {
		if w, ok := sup.Watcher(id); ok && w.Stats().Syncs == 0 {
			return false
		}
	}
	return true
}
