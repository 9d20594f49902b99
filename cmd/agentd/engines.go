package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/agentd-dev/agentd/activation"
	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/discovery"
	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/podman"
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
	// StorageEndpoint is, for a podman seen both as a service and as its storage
	// (one podman, one line), the storage root as reached from the host.
	StorageEndpoint string `json:"storage_endpoint,omitempty"`
	// ServiceEndpoint is, for a podman, the socket of its service: the one it
	// answers on, or the one of a socket unit that would start it (the
	// unit is then Engine.Unit and its state ServiceState).
	ServiceEndpoint string           `json:"service_endpoint,omitempty"`
	ServiceState    activation.State `json:"service_state,omitempty"`
}

// runEngines implements `agentd engines`: the engines of the procfs root as a
// tree (nested engines under the container that holds them), then the
// systemd socket units that would start an engine on their first connection
// (host and nested systemd instances, read over D-Bus, never connected to),
// or both as JSON with --json. With nothing found it says what it looked for.
func runEngines(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("engines", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON for machines")
	procRoot := fs.String("proc", discovery.DefaultProcRoot, "procfs root to scan")
	timeout := fs.Duration("timeout", 10*time.Second, "time limit of each engine probe (probes run side by side; a slow or loaded host needs seconds)")
	waitFor := fs.Duration("wait", 10*time.Second, "how long to wait for the engines to list their containers")
	units := fs.Bool("units", true, "list systemd socket units that activate engines")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: engines: unexpected argument %q", errUsage, fs.Arg(0))
	}
	fams := agent.Families(nil, *procRoot)
	var sockets func() []activation.SocketEngine
	if *units {
		var stop func()
		var err error
		if sockets, stop, err = watchSocketUnits(ctx, fams, *procRoot, log); err != nil {
			return err
		}
		defer stop()
	}
	views, err := listEngines(ctx, *procRoot, *timeout, *waitFor, log)
	if err != nil {
		return err
	}
	var socketUnits []activation.SocketEngine
	if sockets != nil {
		socketUnits = sockets()
	}
	views = onePodman(views, socketUnits, func(u activation.SocketEngine) (string, error) {
		return podman.ServiceStorage(*procRoot, u.SystemdPID)
	}, sameDir)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Engines     []engineView              `json:"engines"`
			SocketUnits []activation.SocketEngine `json:"socket_units"`
		}{views, socketUnits})
	}
	if len(views) == 0 && len(socketUnits) == 0 {
		printNothingFound(stdout, fams, *units)
		return nil
	}
	printEngineTree(stdout, views)
	printSocketUnits(stdout, socketUnits)
	return nil
}

// onePodman shows each podman once, as agentd reports it (model.Store):
// a podman service and the daemonless view of its storage (same Storage and
// Prefix) become one engine, the service's, with the storage; and a
// daemonless view whose storage is the one a podman socket unit's service
// would use (storageOf, compared with same; a rootless user's podman.socket
// and the user's storage, which agentd finds through the user's systemd
// and the conmon processes) gets that unit and its socket, so that the
// user's podman is not shown as storage only. Neither is ever connected to.
func onePodman(views []engineView, units []activation.SocketEngine, storageOf func(activation.SocketEngine) (string, error), same func(a, b string) bool) []engineView {
	out := make([]engineView, 0, len(views))
	merged := make([]bool, len(views))
	for i, v := range views {
		if v.Type != model.Podman || v.Daemonless || v.Storage == "" {
			continue
		}
		for j, d := range views {
			if merged[j] || d.Type != model.Podman || !d.Daemonless || d.Storage != v.Storage || d.Prefix != v.Prefix {
				continue
			}
			merged[j] = true
			views[i].StorageEndpoint = d.Endpoint
			views[i].ServiceEndpoint = v.Endpoint
			views[i].Containers = max(v.Containers, d.Containers)
		}
	}
	for i, v := range views {
		if merged[i] {
			continue
		}
		if v.Type == model.Podman && v.Daemonless {
			v.StorageEndpoint = v.Endpoint
			for _, u := range units {
				if u.Type != model.Podman || len(u.Engines) > 0 {
					continue
				}
				if p, err := storageOf(u); err == nil && same(p, v.Endpoint) {
					v.Unit, v.ServiceEndpoint, v.ServiceState = u.Unit, u.Endpoint, u.State
					break
				}
			}
		}
		out = append(out, v)
	}
	return out
}

// sameDir reports whether paths a and b name one directory.
func sameDir(a, b string) bool {
	x, err := os.Stat(a)
	if err != nil {
		return false
	}
	y, err := os.Stat(b)
	return err == nil && x.IsDir() && os.SameFile(x, y)
}

// unitSettle is how long `agentd engines` gives the systemd instances to
// answer the listing of their socket units (local D-Bus calls, answered in
// milliseconds; a host without systemd never answers).
const unitSettle = 2 * time.Second

// watchSocketUnits follows the socket units of the host's systemd and of the
// nested ones under procRoot, reporting only: it never starts a unit nor
// connects to an engine socket. The returned func gives the units seen, once
// at least unitSettle has passed since the start; stop ends the following.
func watchSocketUnits(ctx context.Context, fams engine.Families, procRoot string, log *slog.Logger) (units func() []activation.SocketEngine, stop func(), err error) {
	cfg := activation.DefaultConfig()
	cfg.Families = fams
	cfg.Activate = false
	cfg.ProcRoot = procRoot
	cfg.NestedScanInterval = 0
	cfg.CallTimeout = unitSettle
	m, err := activation.New(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(ctx)
	}()
	started := time.Now()
	units = func() []activation.SocketEngine {
		wait.Sleep(ctx, unitSettle-time.Since(started))
		var out []activation.SocketEngine
		for _, e := range m.Engines() {
			if e.State != activation.StateRetired {
				out = append(out, e)
			}
		}
		return out
	}
	stop = func() {
		cancel()
		<-done
		_ = m.Close()
	}
	return units, stop, nil
}

// printSocketUnits lists the socket units that start an engine.
func printSocketUnits(w io.Writer, units []activation.SocketEngine) {
	if len(units) == 0 {
		return
	}
	fmt.Fprintln(w, "\nsocket units (the engine starts on the first connection):")
	for _, u := range units {
		where := "host systemd"
		if u.SystemdPID > 0 {
			where = fmt.Sprintf("systemd pid %d", u.SystemdPID)
		}
		var notes []string
		if u.Masked {
			notes = append(notes, "masked")
		}
		if u.Excluded {
			notes = append(notes, "excluded by agentd.yaml")
		}
		note := ""
		if len(notes) > 0 {
			note = "  (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(w, "  %s %s -> %s  %s  %s  %s%s\n", u.Type, u.Unit, orDash(u.Service), u.Endpoint, u.State, where, note)
	}
}

// printNothingFound says what agentd looked for and how to start an engine
// (the same words as the foreground view's).
func printNothingFound(w io.Writer, fams engine.Families, unitsLooked bool) {
	fmt.Fprint(w, agent.NoEngineHint(fams, nil, unitsLooked))
}

// printEngineTree prints host engines first and each nested engine indented
// under the container (of its parent engine) that holds it.
func printEngineTree(w io.Writer, views []engineView) {
	if len(views) == 0 {
		fmt.Fprintln(w, "no running container engines found")
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
	if v.Daemonless {
		b.WriteString(" (daemonless: its storage and conmon processes)")
	}
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
	if v.ServiceEndpoint != "" && v.StorageEndpoint != "" {
		if v.Daemonless {
			fmt.Fprintf(&b, "  service %s", v.ServiceEndpoint)
			if v.ServiceState != "" {
				fmt.Fprintf(&b, " (%s: starts on the first connection)", v.ServiceState)
			}
		} else {
			fmt.Fprintf(&b, "  storage %s", v.StorageEndpoint)
		}
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
	fams := agent.Families(nil, procRoot)
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
