package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd-dev/agentd/activation"
	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/discovery"
	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/containerd"
	"github.com/agentd-dev/agentd/engine/cri"
	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/engine/podman"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/internal/memlimit"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/oom"
	"github.com/agentd-dev/agentd/stats"
	"github.com/agentd-dev/agentd/telemetry"
	"github.com/agentd-dev/agentd/watch"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// Options are the parts of an Agent that do not come from the configuration file.
type Options struct {
	// Log receives the agent's logs. Required.
	Log *slog.Logger
	// Stdout receives the human-readable output when no OTLP endpoint is
	// configured; nil (a service whose stdout is the journal) prints nothing
	// and says once, at WARN, how to configure an endpoint.
	Stdout io.Writer
	// Console tunes the human-readable view on Stdout (terminal redraw,
	// --once snapshots); the agent fills in its Settled and Hint.
	Console telemetry.ConsoleOptions
	// Version is agentd's version.
	Version string
	// Ready is called once, when the first discovery pass is done and the
	// exporters are built (sd_notify READY=1). Optional.
	Ready func()
	// Status is called from the main loop with StatusLine whenever it
	// changes (sd_notify STATUS=), the first time right after Ready.
	// Optional.
	Status func(line string)
	// Families are the engine families agentd discovers and watches; nil
	// means Families with the request budgets of engines.request_budget.
	Families engine.Families
	// KernelLog is the kernel log the OOM detector reads; "" means /dev/kmsg
	// (see package oom).
	KernelLog string
}

// Agent runs agentd. Build it with New; Run it once.
type Agent struct {
	cfg   config.Config
	opts  Options
	log   *slog.Logger
	store *model.Store
	host  telemetry.Host // on every resource
	disc  *discovery.Discoverer
	act   *activation.Manager
	sup   *watch.Supervisor
	start time.Time
	// budgets are the request budgets of the engine endpoints, shared by
	// discovery's and activation's probes and the watchers' adapters.
	budgets *engine.Budgets

	// pipe is the running telemetry pipeline, for StatusLine.
	pipe atomic.Pointer[telemetry.Pipeline]
	// lastProgress is the unix nano time the main loop last made progress, read by Healthy.
	lastProgress atomic.Int64
	stalled      atomic.Bool

	// refilter and retelemetry wake the goroutines that apply a Reload.
	refilter, retelemetry chan struct{}

	mu       sync.Mutex        // guards cfg, problems and units
	problems map[string]string // part -> problem, for the status report
	units    map[string]activation.SocketEngine
}

// New builds an agent from a validated configuration.
func New(cfg config.Config, opts Options) (*Agent, error) {
	if opts.Log == nil {
		return nil, errors.New("agent: Options.Log is required")
	}
	budget := cfg.Engines.RequestBudget
	budgets := engine.NewBudgets(budget.Rate, budget.Burst, nil)
	if opts.Families == nil {
		opts.Families = Families(budgets, cfg.HostProc())
	}
	a := &Agent{cfg: cfg, opts: opts, log: opts.Log, start: time.Now(), budgets: budgets,
		problems: map[string]string{}, units: map[string]activation.SocketEngine{},
		refilter: make(chan struct{}, 1), retelemetry: make(chan struct{}, 1)}
	a.store = model.NewStore(opts.Log.With("part", "model"))
	view := detectHostView("/proc", cfg.HostProc(), cfg.Host.Cgroup, config.Default().Host.Cgroup)
	logHostView(opts.Log.With("part", "host"), cfg.HostProc(), cfg.Host.Cgroup, view)
	host := telemetry.DetectHost(view.root)
	host.Version = opts.Version
	var err error
	if a.host, err = host.WithEnvironment(os.Getenv); err != nil {
		return nil, fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	a.disc, err = discovery.New(discovery.Config{
		ProcRoot:    cfg.HostProc(),
		Interval:    cfg.Discovery.Interval.Std(),
		GracePeriod: cfg.Discovery.GracePeriod.Std(),
		Endpoints:   endpointFilter(cfg),
	}, opts.Families, a.store, opts.Log.With("part", "discovery"))
	if err != nil {
		return nil, fmt.Errorf("%w: discovery: %w", config.ErrInvalid, err)
	}
	if cfg.Activation.Enabled {
		acfg := activation.DefaultConfig()
		acfg.Families = opts.Families
		acfg.ProcRoot = cfg.HostProc()
		acfg.ExcludeUnits = cfg.Activation.ExcludeUnits
		if f := endpointFilter(cfg); !f.Empty() {
			acfg.Watched = f.Allows
		}
		acfg.Activate = true
		for _, s := range cfg.Activation.SocketSuffixes {
			acfg.ExtraSockets = append(acfg.ExtraSockets, activation.SocketSuffix{Suffix: s.Suffix, Type: model.EngineType(s.Type)})
		}
		a.act, err = activation.New(acfg, opts.Log.With("part", "activation"))
		if err != nil {
			return nil, fmt.Errorf("%w: activation: %w", config.ErrInvalid, err)
		}
	}
	// A listing can hold the container an engine found before it lives in.
	a.sup = watch.NewSupervisor(a.store, opts.Families, watch.Options{ProcRoot: cfg.HostProc(),
		Listed: func(string) { a.disc.Relocate() }}, opts.Log.With("part", "watch"))
	return a, nil
}

// endpointFilter is discovery.include_endpoints and exclude_endpoints, which
// discovery and activation both apply.
func endpointFilter(cfg config.Config) discovery.EndpointFilter {
	return discovery.EndpointFilter{Include: cfg.Discovery.IncludeEndpoints, Exclude: cfg.Discovery.ExcludeEndpoints}
}

// Families returns the engine families agentd knows, in the order an
// endpoint of unknown type is probed (podman first: it also answers Docker's
// API; daemonless podman last: it is found through conmon processes, not
// sockets). Their probes and adapters take the requests they make to an
// endpoint from its budget in budgets (nil: unlimited); daemonless podman
// reads the files of its storage and the conmon processes under procRoot.
func Families(budgets *engine.Budgets, procRoot string) engine.Families {
	return engine.Families{podman.Family(budgets), docker.Family(budgets), containerd.Family(budgets), cri.Family(budgets),
		podman.DaemonlessFamily(procRoot)}
}

// Store is the agent's workload model (for tests and the status endpoint).
func (a *Agent) Store() *model.Store { return a.store }

// Run runs the agent until ctx ends, then stops every part, flushes telemetry
// and returns. A clean stop returns nil.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.config()
	pipe, err := a.newPipeline(ctx, cfg)
	if err != nil {
		return err
	}
	// OOM kills that no engine reports, from the kernel log (package oom);
	// telemetry holds a SIGKILLed die until the log is read through it, and
	// the sampler reads the cgroups' OOM kill counters when it saw one.
	oomDet := oom.New(a.store, oom.Config{
		Path:     a.opts.KernelLog,
		ProcRoot: cfg.HostProc(),
	}, a.log.With("part", "oom"))
	sampler := stats.NewSampler(stats.SamplerConfig{
		ProcRoot:     cfg.HostProc(),
		CgroupRoot:   cfg.Host.Cgroup,
		Fallback:     a.sup.Fallback,
		KillWatch:    oomDet,
		MaxOpenFiles: cmp.Or(cfg.Host.OpenFiles, -1), // 0 in the file keeps none
	}, a.log.With("part", "stats"))
	// Closed when Run returns, after every part (the pipeline) has stopped.
	defer func() { _ = sampler.Close() }()
	// One subscription for the agent's life: the events that happen while a
	// reload rebuilds the pipeline wait on it for the next one.
	events := a.store.Subscribe(4096)
	defer events.Close()
	pipeOpts := telemetry.Options{
		KernelLog: oomDet,
		Workload:  workload{s: a.store, budgets: a.budgets, sup: a.sup},
		Events:    events.C(),
		Sampler:   sampler,
		Host:      a.host,
		Version:   a.opts.Version,
	}
	if err := pipe.build(ctx, pipeOpts, a.log.With("part", "telemetry")); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}

	discSub := a.disc.Subscribe()
	defer discSub.Close()
	goRun("discovery", a.disc.Run)
	goRun("engines", func(ctx context.Context) error { return a.followDiscovery(ctx, discSub) })
	if a.act != nil {
		units := a.act.Subscribe(ctx)
		defer units.Close()
		goRun("activation", a.act.Run)
		goRun("socket units", func(ctx context.Context) error { return a.followUnits(ctx, units.C()) })
	}
	goRun("request budgets", func(ctx context.Context) error {
		logBudgets(ctx, a.budgets, cfg.Export.Interval.Std(), a.log.With("part", "engines"))
		return nil
	})
	goRun("oom", oomDet.Run)
	// The soft memory limit (memory.soft_limit, read at start), unless
	// GOMEMLIMIT set one: its floor follows the live heap, so it is looked
	// at every export interval.
	if l := int64(cfg.Memory.SoftLimit); l > 0 && os.Getenv("GOMEMLIMIT") == "" {
		goRun("memory limit", memlimit.New(l, cfg.Export.Interval.Std()).Run)
	}

	// The first pass decides what the agent sees at start; READY follows it.
	if _, err := a.disc.Scan(ctx); err != nil && ctx.Err() == nil {
		a.setProblem("discovery", err.Error())
	}
	a.lastProgress.Store(time.Now().UnixNano())
	if a.opts.Ready != nil {
		a.opts.Ready()
	}
	// Telemetry starts once the first pass is done, so that its first round
	// (sent at once) has the engines; the events meanwhile wait on the
	// subscription. In the foreground (Stdout set, where the readable view
	// goes when no endpoint is configured) it also waits, at most
	// firstListingWait, for the engines' first listings, so that the first
	// round has their containers, and for a second pass, which places the
	// nested engines in the containers those listings brought (as `agentd
	// engines` does).
	if a.opts.Stdout != nil && len(a.disc.Engines()) > 0 {
		a.waitListed(ctx, firstListingWait)
		if _, err := a.disc.Scan(ctx); err != nil && ctx.Err() == nil {
			a.setProblem("discovery", err.Error())
		}
	}
	goRun("telemetry", func(ctx context.Context) error { return a.runTelemetry(ctx, pipe, pipeOpts) })
	a.mainLoop(ctx)
	wg.Wait()
	if err := a.sup.Close(); err != nil {
		a.log.Warn("stopping watchers", logging.Err(err))
	}
	if a.act != nil {
		if err := a.act.Close(); err != nil {
			a.log.Warn("stopping activation", logging.Err(err))
		}
	}
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// firstListingWait bounds how long the readable view waits for the engines
// found by the first pass to list their containers.
const firstListingWait = 2 * time.Second

// waitListed returns when every engine discovery knows is watched and has
// listed its containers once, ctx ends or d has passed.
func (a *Agent) waitListed(ctx context.Context, d time.Duration) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		want := 0
		for _, e := range a.disc.Engines() {
			if a.engineIncluded(e.Type) {
				want++
			}
		}
		ids := a.sup.EngineIDs()
		listed := len(ids) >= want
		for _, id := range ids {
			if w, ok := a.sup.Watcher(id); ok && w.Stats().Syncs == 0 {
				listed = false
			}
		}
		if listed {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// followDiscovery hands engines found by the process scan to the supervisor
// and retires lost ones. Changes the subscription dropped (the agent fell
// behind) are made good by reconciling with discovery's current engines.
func (a *Agent) followDiscovery(ctx context.Context, sub *discovery.Subscription) error {
	t := time.NewTicker(dropCheckInterval)
	defer t.Stop()
	var dropped uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case ch, ok := <-sub.C():
			if !ok {
				return nil
			}
			a.applyDiscovery(ctx, ch)
		case <-a.refilter:
			a.log.Info("engine filters changed, reconciling the watched engines")
			a.reconcileEngines(ctx)
		case <-t.C:
			if n := sub.Dropped(); n != dropped {
				a.log.Warn("discovery changes were dropped, reconciling the watched engines", "dropped", n-dropped)
				dropped = n
				a.reconcileEngines(ctx)
			}
		}
	}
}

// dropCheckInterval is how often followDiscovery checks for dropped changes.
const dropCheckInterval = time.Second

// reconcileEngines makes the supervisor watch exactly discovery's engines
// that the filters let through: engines it already watches keep their
// watchers, engines lost or now filtered out are removed.
func (a *Agent) reconcileEngines(ctx context.Context) {
	known := map[string]bool{}
	for _, e := range a.disc.Engines() {
		if !a.engineIncluded(e.Type) {
			continue
		}
		known[e.ID] = true
		a.applyDiscovery(ctx, discovery.Change{Kind: discovery.EngineUpdated, Engine: e})
	}
	for _, id := range a.sup.EngineIDs() {
		if !known[id] {
			a.sup.Remove(id) // lost, or filtered out by a reload
		}
	}
}

func (a *Agent) applyDiscovery(ctx context.Context, ch discovery.Change) {
	e := ch.Engine
	log := a.log.With(e.LogAttrs()...)
	switch ch.Kind {
	case discovery.EngineFound, discovery.EngineUpdated:
		if !a.engineIncluded(e.Type) {
			log.Debug("engine excluded by filters")
			return
		}
		if err := a.sup.Add(ctx, e); err != nil {
			if errors.Is(err, watch.ErrUnsupported) {
				log.Debug("no watcher for this engine type")
				return
			}
			if !errors.Is(err, watch.ErrClosed) {
				log.Warn("cannot watch engine", logging.Err(err))
			}
			return
		}
	case discovery.EngineLost:
		a.sup.Remove(e.ID) // discovery said it was lost
	}
}

// followUnits turns socket units reported by activation into engines. The
// activation Manager owns the activation: it starts the service once and
// confirms the engine with its family's probe; the engines that answered
// (SocketEngine.Engines) are handed to discovery as they are, without another
// connect. Retired units are removed. An idle-exited service keeps its
// engines: its watcher reconnects through the socket, which starts it again
// when there is work.
func (a *Agent) followUnits(ctx context.Context, ch <-chan activation.SocketEngine) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case se, ok := <-ch:
			if !ok {
				return nil
			}
			a.mu.Lock()
			prev, seen := a.units[se.Key()]
			if se.State == activation.StateRetired {
				delete(a.units, se.Key())
			} else {
				a.units[se.Key()] = se
			}
			a.mu.Unlock()
			switch {
			case se.State == activation.StateRetired:
				a.disc.Remove(se.Endpoint)
			case len(se.Engines) > 0 && (!seen || !slices.Equal(prev.Engines, se.Engines)):
				// Activation said it activated them, discovery says it
				// found them.
				a.disc.AddEngines(se.Unit, se.Engines)
			}
		}
	}
}

// mainLoop runs until ctx ends. Every second it builds the status line from
// a snapshot of the model, which proves the model is not wedged, hands it to
// Options.Status when it changed, and records the progress that Healthy (and
// so the systemd watchdog) reads.
func (a *Agent) mainLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last string
	for {
		if line := a.StatusLine(); line != last && a.opts.Status != nil {
			a.opts.Status(line)
			last = line
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if a.stalled.Load() {
				continue
			}
			a.lastProgress.Store(time.Now().UnixNano())
		}
	}
}

// progressTimeout is how long the main loop may go without progress before
// Healthy reports false.
const progressTimeout = 10 * time.Second

// Healthy reports whether the agent's main loop is making progress (for the
// systemd watchdog). It is safe for concurrent use.
func (a *Agent) Healthy() bool {
	last := time.Unix(0, a.lastProgress.Load())
	return time.Since(last) < progressTimeout
}

// Stall stops the main loop's progress: a test hook that lets tests prove the
// systemd watchdog restarts a wedged agent. cmd/agentd wires it to SIGUSR2
// only when AGENTD_TEST_HOOKS=1.
func (a *Agent) Stall() { a.stalled.Store(true) }

func (a *Agent) setProblem(part, problem string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if problem == "" {
		delete(a.problems, part)
		return
	}
	a.problems[part] = problem
}

func (a *Agent) engineIncluded(t model.EngineType) bool {
	f := a.config().Filters
	if len(f.IncludeEngines) > 0 && !slices.Contains(f.IncludeEngines, string(t)) {
		return false
	}
	return !slices.Contains(f.ExcludeEngines, string(t))
}

// sinks builds the OTLP exporters, or the console when no endpoint is
// configured in the file, on the command line or in OTEL_EXPORTER_OTLP_*.
func (a *Agent) sinks(ctx context.Context, cfg config.Config) (telemetry.MetricSink, sdklog.Exporter, error) {
	if e := cfg.Export; e.Endpoint == "" && e.MetricsEndpoint == "" && e.LogsEndpoint == "" && !otlpEnvSet() {
		if a.opts.Stdout == nil {
			a.log.Warn("no OTLP endpoint configured, nothing is exported: set export.endpoint in "+config.DefaultPath+
				" and systemctl reload agentd, or OTEL_EXPORTER_OTLP_ENDPOINT in /etc/default/agentd (/etc/sysconfig/agentd) and restart it; `agentd status` shows what agentd sees",
				"config", cfg.File())
			return telemetry.Discard{}, telemetry.Discard{}, nil
		}
		a.log.Info("no OTLP endpoint configured: printing what agentd sees on stdout")
		copts := a.opts.Console
		copts.Hint = a.noEngineHint
		c := telemetry.NewConsole(a.opts.Stdout, copts)
		return c, c, nil
	}
	tcfg := telemetryConfig(cfg, a.log.With("part", "export"))
	m, l, err := telemetry.NewOTLP(ctx, &tcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: OTLP exporter: %w", config.ErrInvalid, err)
	}
	if res, err := tcfg.ResolveOTLP(); err == nil {
		a.log.Info("exporting over OTLP", "metrics", res.Metrics.String(), "logs", res.Logs.String(), "temporality", res.Temporality)
	}
	return m, l, nil
}

func otlpEnvSet() bool {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}

func telemetryConfig(c config.Config, log *slog.Logger) telemetry.Config {
	t := telemetry.DefaultConfig()
	t.ExportInterval = c.Export.Interval.Std()
	t.EventFlushInterval = c.Events.FlushInterval.Std()
	t.Endpoint = c.Export.Endpoint
	if c.Export.Insecure {
		insecure := true
		t.Insecure = &insecure
	}
	t.Headers = c.Export.Headers
	t.Compression = c.Export.Compression
	t.OTLP = OTLPSettings(c)
	t.QueueSize = int64(c.Export.QueueSize)
	t.QueueDir = c.Export.QueueDir
	t.Log = log
	t.LabelAllowlist = c.Labels.Allowlist
	for _, e := range c.Filters.IncludeEngines {
		t.IncludeEngines = append(t.IncludeEngines, model.EngineType(e))
	}
	for _, e := range c.Filters.ExcludeEngines {
		t.ExcludeEngines = append(t.ExcludeEngines, model.EngineType(e))
	}
	t.IncludeImages = c.Filters.IncludeImages
	t.ExcludeImages = c.Filters.ExcludeImages
	return t
}

// OTLPSettings is the OTLP layer of c (the command line applied over the
// file) for telemetry.ResolveOTLP. insecure counts as set when it is true or
// written in the file, so a false in the file overrides
// OTEL_EXPORTER_OTLP_INSECURE.
func OTLPSettings(c config.Config) telemetry.OTLPSettings {
	e := c.Export
	s := telemetry.OTLPSettings{
		Source:          "export",
		Protocol:        e.Protocol,
		Endpoint:        e.Endpoint,
		MetricsEndpoint: e.MetricsEndpoint,
		LogsEndpoint:    e.LogsEndpoint,
		Timeout:         e.Timeout.Std(),
		Headers:         e.Headers,
		Compression:     e.Compression,
		CAFile:          e.TLS.CAFile,
		CertFile:        e.TLS.CertFile,
		KeyFile:         e.TLS.KeyFile,
		Temporality:     e.Temporality,
	}
	if e.Insecure || c.IsSet("export.insecure") {
		insecure := e.Insecure
		s.Insecure = &insecure
	}
	return s
}

// workload adapts the Store to telemetry.Workload.
// workload is the telemetry pipeline's view of the agent: the model, and
// what agentd asked of each engine (its endpoint's request budget, its
// watcher's coalesced inspects).
type workload struct {
	s       *model.Store
	budgets *engine.Budgets
	sup     *watch.Supervisor
}

func (w workload) Engines() []model.Engine       { return w.s.Snapshot().Engines }
func (w workload) Containers() []model.Container { return w.s.Snapshot().Containers }
func (w workload) Container(k model.ContainerKey) (model.Container, bool) {
	return w.s.Container(k)
}
func (w workload) Engine(id string) (model.Engine, bool) { return w.s.Engine(id) }

// EngineRequests returns the counters of e's request budget and watcher;
// false for an engine agentd has not asked anything yet.
func (w workload) EngineRequests(e model.Engine) (telemetry.RequestStats, bool) {
	b := w.budgets.Get(e.Endpoint)
	if b == nil {
		return telemetry.RequestStats{}, false
	}
	bst := b.Stats()
	rs := telemetry.RequestStats{Requests: bst.Requests, Waits: bst.Waits, WaitTime: bst.WaitTime, Since: bst.Since}
	if w.sup != nil {
		if wt, ok := w.sup.Watcher(e.ID); ok {
			st := wt.Stats()
			rs.Coalesced, rs.CoalescedSince = st.Coalesced, st.Since
		}
	}
	return rs, true
}

// logBudgets says at DEBUG, once per interval and per engine endpoint, how
// many requests waited for the endpoint's budget in that interval (nothing
// when none did), until ctx ends.
func logBudgets(ctx context.Context, budgets *engine.Budgets, interval time.Duration, log *slog.Logger) {
	if budgets == nil || interval <= 0 {
		return
	}
	last := map[string]engine.BudgetStats{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, b := range budgets.All() {
			st, prev := b.Stats(), last[b.Endpoint()]
			last[b.Endpoint()] = st
			if st.Waits == prev.Waits {
				continue
			}
			log.Debug("engine requests waited for the request budget", logging.KeyEndpoint, b.Endpoint(),
				"requests", st.Requests-prev.Requests, "waits", st.Waits-prev.Waits, "wait_time", st.WaitTime-prev.WaitTime)
		}
	}
}

var (
	_ telemetry.Workload       = workload{}
	_ telemetry.EngineRequests = workload{}
)
