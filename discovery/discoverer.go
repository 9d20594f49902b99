package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/internal/procfs"
	"github.com/agentd-dev/agentd/model"
)

// Config tunes a Discoverer. The zero value gives the defaults.
type Config struct {
	// ProcRoot is where procfs is mounted (default /proc).
	ProcRoot string
	// Interval is the time between rescans in Run (default 5 s).
	Interval time.Duration
	// ProbeTimeout bounds one probe of one socket and one container listing
	// (default 30 s, what a loaded host's engine may need to answer).
	ProbeTimeout time.Duration
	// ScanWait is how long a scan of Run waits for the probes it started
	// (default 2 s). A probe still going then goes on in the background, up
	// to ProbeTimeout, and a later scan takes its result: a socket that
	// accepts and never answers delays neither the scans nor the other
	// engines. Scan itself waits for every probe.
	ScanWait time.Duration
	// ProbeConcurrency bounds the probes and listings in flight (default 4).
	ProbeConcurrency int
	// RetryBackoff is the wait before re-probing a process none of whose sockets
	// answered; it doubles per failure up to MaxRetryBackoff (defaults 10 s, 2 min).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// SubscriberBuffer is each subscription's channel capacity (default 64).
	SubscriberBuffer int
	// GracePeriod is how long an engine whose process went away stays known
	// (with PID 0, its watcher reconnecting) before it is lost (default
	// 5 min): an engine that comes back within it, under any PID, is the
	// same engine, and its containers' missed transitions are reported.
	GracePeriod time.Duration
	// Endpoints limits the sockets probed and the engines reported: a
	// socket it does not let through is never dialled (see
	// EndpointFilter). The zero value lets every endpoint through.
	Endpoints EndpointFilter
}

func (c Config) withDefaults() Config {
	if c.ProcRoot == "" {
		c.ProcRoot = DefaultProcRoot
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 30 * time.Second
	}
	if c.ScanWait == 0 {
		c.ScanWait = 2 * time.Second
	}
	if c.ProbeConcurrency == 0 {
		c.ProbeConcurrency = 4
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 10 * time.Second
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = 2 * time.Minute
	}
	if c.SubscriberBuffer == 0 {
		c.SubscriberBuffer = 64
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = 5 * time.Minute
	}
	return c
}

// Validate reports the first setting that cannot work, naming it and its value.
func (c Config) Validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("discovery: interval %s: must not be negative", c.Interval)
	case c.ProbeTimeout < 0:
		return fmt.Errorf("discovery: probe_timeout %s: must not be negative", c.ProbeTimeout)
	case c.ScanWait < 0:
		return fmt.Errorf("discovery: ScanWait %s: must not be negative", c.ScanWait)
	case c.ProbeConcurrency < 0:
		return fmt.Errorf("discovery: probe_concurrency %d: must not be negative", c.ProbeConcurrency)
	case c.RetryBackoff < 0 || c.MaxRetryBackoff < 0:
		return fmt.Errorf("discovery: retry backoff %s/%s: must not be negative", c.RetryBackoff, c.MaxRetryBackoff)
	case c.GracePeriod < 0:
		return fmt.Errorf("discovery: GracePeriod %s: must not be negative", c.GracePeriod)
	case c.SubscriberBuffer < 0:
		return fmt.Errorf("discovery: subscriber_buffer %d: must not be negative", c.SubscriberBuffer)
	}
	return c.Endpoints.Validate()
}

// ChangeKind says what happened to an engine.
type ChangeKind string

// The kinds of change a Discoverer publishes.
const (
	// EngineFound: a new engine answered.
	EngineFound ChangeKind = "found"
	// EngineLost: the engine's process is gone (and no socket unit keeps it).
	EngineLost ChangeKind = "lost"
	// EngineUpdated: a known engine's PID, unit or place in the hierarchy changed.
	EngineUpdated ChangeKind = "updated"
)

// Change is one engine change, carrying the engine as known after it (as last
// known for EngineLost).
type Change struct {
	Kind   ChangeKind
	Engine model.Engine
}

// Subscription receives a Discoverer's changes on C(). The channel is never
// closed by the Discoverer; a reader stops when its own context ends and
// calls Close.
type Subscription struct {
	ch      chan Change
	d       *Discoverer
	dropped atomic.Uint64
}

// C delivers changes in order. When the reader falls behind by more than the
// buffer, further changes are dropped and counted (Dropped).
func (s *Subscription) C() <-chan Change { return s.ch }

// Dropped is how many changes this subscription lost to a full buffer.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription. It is safe to call more than once.
func (s *Subscription) Close() {
	s.d.mu.Lock()
	delete(s.d.subs, s)
	s.d.mu.Unlock()
}

type candKey struct {
	pid   int
	start uint64
}

// candidate is a process that a detector matched (det nil: matched by comm
// only and ruled out by cmdline).
type candidate struct {
	det       *detector
	found     bool
	failures  int
	nextTry   time.Time
	fdWarned  bool
	lastError error
	// probing is the candidate's probe batch in flight, nil when none is.
	probing *probeBatch
	// endpoints are the endpoints of the engines it answered with.
	endpoints []string
	// warned lists the sockets already reported as not answering as an
	// engine: each is said once per process, not at every retry.
	warned []string
}

// probeBatch is the probes of one candidate's sockets, run in the
// background; done is closed when every job has its result.
type probeBatch struct {
	jobs []*probeJob
	done chan struct{}
}

// engineRec is an engine the Discoverer knows.
type engineRec struct {
	e     model.Engine
	proc  candKey // the process serving it; zero when known only through Add
	added bool    // handed in through Add: kept while its process is gone
	// goneSince is when the serving process of an engine not added went
	// away; the engine is lost GracePeriod later unless it comes back.
	goneSince time.Time
	// retired: its socket unit was stopped (Remove), so the engine is lost
	// as soon as its process is gone, without a grace period.
	retired bool
	// sock identifies the socket file behind e.Endpoint; aliases are other
	// paths that reached the same socket (see aliasLocked).
	sock    socketID
	aliases []string
}

// servedAt reports whether one of endpoints is r's engine's endpoint or an
// alias of it.
func (r *engineRec) servedAt(endpoints []string) bool {
	for _, ep := range endpoints {
		if ep == r.e.Endpoint || slices.Contains(r.aliases, ep) {
			return true
		}
	}
	return false
}

// socketID is a socket file's identity: device and inode.
type socketID struct{ dev, ino uint64 }

// statSocket returns the identity of the socket at path, zero when it cannot be read.
func statSocket(path string) socketID {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return socketID{}
	}
	return socketID{dev: uint64(st.Dev), ino: st.Ino}
}

// newRec records an engine seen for the first time.
func newRec(e model.Engine, proc candKey, added bool) *engineRec {
	return &engineRec{e: e, proc: proc, added: added, sock: statSocket(e.Endpoint)}
}

// otherLiveEngineLocked reports whether r, known under the ID that e answered
// with, is another engine: served by another process that still runs, on
// another socket. d.mu must be held.
func (d *Discoverer) otherLiveEngineLocked(r *engineRec, key candKey, e model.Engine) bool {
	if r.proc == key || r.proc == (candKey{}) {
		return false
	}
	if _, _, start, ok := d.procs.Lookup(r.proc.pid); !ok || start != r.proc.start {
		return false // the engine's process is gone: e is the engine, back
	}
	return r.sock != statSocket(e.Endpoint)
}

// aliasLocked finds the engine already known under another path to the same
// socket. One socket is often reached two ways: a systemd socket unit names
// /run/podman/podman.sock while the process scan reaches it as
// /proc/1/root/run/podman/podman.sock (agentd under systemd has a mount
// namespace of its own), and engines without an ID of their own (podman, CRI)
// are named after their endpoint. The first path seen stays the engine's; the
// other is remembered as an alias. d.mu must be held.
func (d *Discoverer) aliasLocked(e model.Engine) (*engineRec, bool) {
	if _, ok := d.engines[e.ID]; ok {
		return nil, false
	}
	id := statSocket(e.Endpoint)
	if id == (socketID{}) {
		return nil, false
	}
	for _, r := range d.engines {
		if r.sock == id && r.e.Type == e.Type {
			if !slices.Contains(r.aliases, e.Endpoint) && r.e.Endpoint != e.Endpoint {
				r.aliases = append(r.aliases, e.Endpoint)
			}
			return r, true
		}
	}
	return nil, false
}

// Discoverer finds engines by scanning the process table and probing sockets,
// keeps the set up to date, and publishes changes. Scan, Run, Add and Remove may
// be called concurrently; scans are serialised. Every goroutine a call starts
// has ended when the call returns.
type Discoverer struct {
	cfg        Config
	log        *slog.Logger
	fams       engine.Families
	dets       []detector
	containers Containers
	// hier is refreshHierarchy's memory, under mu.
	hier hierarchyScratch

	scanMu sync.Mutex // serialises passes; guards procs, cands, pidBuf
	procs  *ProcFS
	cands  map[candKey]*candidate
	pidBuf []int

	// probeSem bounds the probes in flight (ProbeConcurrency); probeWG
	// counts the probe batches running, which Run and Scan wait for.
	probeSem chan struct{}
	probeWG  sync.WaitGroup

	// passDone, when set (tests), is called at the end of each pass.
	passDone func()

	mu      sync.Mutex // guards engines and subs
	engines map[string]*engineRec
	subs    map[*Subscription]struct{}

	// now is time.Now, replaced in unit tests.
	now func() time.Time

	// interval is Run's rescan interval (nanoseconds), changed by
	// SetInterval; intervalSet wakes Run to apply it.
	interval    atomic.Int64
	intervalSet chan struct{}
	// relocate wakes Run to place the engines again (Relocate).
	relocate chan struct{}
}

// New returns a Discoverer of the engines of fams, which places nested
// engines by the containers it learns from containers (nil: every engine is
// on the host). It does nothing until Scan or Run.
func New(cfg Config, fams engine.Families, containers Containers, log *slog.Logger) (*Discoverer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if containers == nil {
		containers = noContainers{}
	}
	dets := detectors(fams)
	procs := NewProcFS(cfg.ProcRoot)
	comms := make([]string, len(dets))
	for i := range dets {
		comms[i] = dets[i].comm
	}
	procs.AlwaysRead(comms...)
	d := &Discoverer{
		cfg:        cfg,
		log:        log,
		fams:       fams,
		dets:       dets,
		containers: containers,
		procs:      procs,
		cands:      make(map[candKey]*candidate),
		probeSem:   make(chan struct{}, cfg.ProbeConcurrency),
		engines:    make(map[string]*engineRec),
		subs:       make(map[*Subscription]struct{}),
		now:        time.Now,
	}
	d.interval.Store(int64(cfg.Interval))
	d.intervalSet = make(chan struct{}, 1)
	d.relocate = make(chan struct{}, 1)
	return d, nil
}

// logFound and logLost say that an engine was found or lost: each once, with
// the engine's journal fields, whichever way it came (process scan or a
// systemd socket unit).
func (d *Discoverer) logFound(e model.Engine) {
	d.log.Info("engine found", append(e.LogAttrs(), logging.MessageID(logging.MessageIDEngineFound),
		"version", e.Version, "pid", e.PID, logging.KeyUnit, e.Unit)...)
}

func (d *Discoverer) logLost(e model.Engine) {
	d.log.Info("engine lost", append(e.LogAttrs(), logging.MessageID(logging.MessageIDEngineLost))...)
}

// lastSegment is the innermost container name of a hierarchy prefix.
func lastSegment(prefix string) string {
	return prefix[strings.LastIndexByte(prefix, '/')+1:]
}

// noContainers knows no containers.
type noContainers struct{}

func (noContainers) EngineInits(_ string, buf []model.Init) ([]model.Init, int) { return buf, 0 }

// Subscribe returns a subscription to engine changes from now on. Publishing
// never blocks: a subscriber that falls behind loses changes (counted).
func (d *Discoverer) Subscribe() *Subscription {
	ch := make(chan Change, d.cfg.SubscriberBuffer)
	s := &Subscription{ch: ch, d: d}
	d.mu.Lock()
	d.subs[s] = struct{}{}
	d.mu.Unlock()
	return s
}

// Engines returns the engines known now, host engines first, then by prefix,
// type and endpoint.
func (d *Discoverer) Engines() []model.Engine {
	d.mu.Lock()
	out := make([]model.Engine, 0, len(d.engines))
	for _, r := range d.engines {
		out = append(out, r.e)
	}
	d.mu.Unlock()
	sortEngines(out)
	return out
}

func sortEngines(es []model.Engine) {
	slices.SortFunc(es, func(a, b model.Engine) int {
		return cmp.Or(cmp.Compare(a.Prefix, b.Prefix), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Endpoint, b.Endpoint), cmp.Compare(a.ID, b.ID))
	})
}

// Run rescans every Interval until ctx ends, then returns nil once every
// goroutine it started is gone. It returns an error only when the procfs root
// cannot be read at all on the first scan.
func (d *Discoverer) Run(ctx context.Context) error {
	// Probes left in the background by a scan end with ctx at the latest.
	defer d.probeWG.Wait()
	if _, err := d.scan(ctx, d.cfg.ScanWait); err != nil && ctx.Err() == nil {
		return err
	}
	t := time.NewTicker(time.Duration(d.interval.Load()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.intervalSet:
			t.Reset(time.Duration(d.interval.Load()))
			continue
		case <-d.relocate:
			d.relocateNow()
			continue
		case <-t.C:
		}
		if _, err := d.scan(ctx, d.cfg.ScanWait); err != nil && ctx.Err() == nil {
			d.log.Warn("engine discovery scan failed", logging.Err(err))
		}
	}
}

// Relocate asks Run to place every engine again from the containers the
// model knows now, without a scan (no I/O), and to publish the engines whose
// place changed. Call it when an engine's containers have been listed: an
// engine found inside one of them before that listing was placed on the host
// until then. It does not block and is safe for concurrent use.
func (d *Discoverer) Relocate() {
	select {
	case d.relocate <- struct{}{}:
	default: // one is pending; it reads the model as it is then
	}
}

// relocateNow is Relocate's work, in Run's goroutine.
func (d *Discoverer) relocateNow() {
	d.scanMu.Lock()
	defer d.scanMu.Unlock()
	updated := d.refreshHierarchy()
	if len(updated) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var changes []Change
	for _, id := range slices.Sorted(mapKeys(updated)) {
		if r, ok := d.engines[id]; ok {
			changes = append(changes, Change{Kind: EngineUpdated, Engine: r.e})
		}
	}
	d.publishLocked(changes)
}

// SetInterval changes the time between Run's rescans (a configuration
// reload); the next rescan is one new interval away. The engines known and
// their watchers are not touched. A zero or negative interval is refused.
// It is safe for concurrent use.
func (d *Discoverer) SetInterval(interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("discovery: interval %s: must be positive", interval)
	}
	d.interval.Store(int64(interval))
	select {
	case d.intervalSet <- struct{}{}:
	default: // Run has not applied the previous change yet; it reads the latest
	}
	return nil
}

// Scan runs one discovery pass: it reads the process table, probes the sockets
// of engine processes not probed before (and those whose retry time has come),
// prunes engines whose process is gone, updates the hierarchy and publishes the
// changes. It returns the engines known after the pass. The error is about the
// procfs root; engines that do not answer are not errors.
func (d *Discoverer) Scan(ctx context.Context) ([]model.Engine, error) {
	es, err := d.scan(ctx, -1)
	d.probeWG.Wait()
	return es, err
}

// scan is one pass that waits at most wait for the probes in flight (< 0:
// until they all end).
func (d *Discoverer) scan(ctx context.Context, wait time.Duration) ([]model.Engine, error) {
	d.scanMu.Lock()
	defer d.scanMu.Unlock()
	err := d.pass(ctx, wait)
	if d.passDone != nil {
		d.passDone()
	}
	return d.Engines(), err
}

// probeJob is one socket of one candidate to probe.
type probeJob struct {
	key      candKey
	det      *detector
	endpoint string
	engines  []model.Engine
	err      error
}

func (d *Discoverer) pass(ctx context.Context, wait time.Duration) error {
	d.pidBuf = d.pidBuf[:0]
	err := d.procs.Refresh(func(pid int, comm []byte) {
		for i := range d.dets {
			if string(comm) == d.dets[i].comm {
				d.pidBuf = append(d.pidBuf, pid)
				return
			}
		}
	})
	if err != nil {
		return err
	}
	now := d.now()
	var started []*probeBatch
	for _, pid := range d.pidBuf {
		_, comm, start, ok := d.procs.Lookup(pid)
		if !ok {
			continue
		}
		key := candKey{pid, start}
		c := d.cands[key]
		if c == nil {
			c = &candidate{det: d.detect(pid, comm)}
			d.cands[key] = c
		}
		if c.det == nil || c.found || c.probing != nil || now.Before(c.nextTry) {
			continue
		}
		js, err := d.jobsFor(key, c)
		if errors.Is(err, ErrFiltered) {
			// Nothing to dial: look again, quietly, in case the process
			// listens on another socket later.
			c.nextTry = now.Add(d.cfg.MaxRetryBackoff)
			continue
		}
		if err != nil {
			d.probeFailed(key, c, now, err)
			continue
		}
		c.probing = d.startProbes(ctx, js)
		started = append(started, c.probing)
	}
	waitProbes(ctx, started, wait)
	if ctx.Err() != nil {
		return nil
	}

	results := make(map[candKey][]model.Engine)
	now = d.now()
	for key, c := range d.cands {
		b := c.probing
		if b == nil {
			continue
		}
		select {
		case <-b.done:
		default:
			continue // still probing: a later pass takes its result
		}
		c.probing = nil
		var errs []error
		for _, j := range b.jobs {
			if j.err != nil {
				errs = append(errs, j.err)
				continue
			}
			for _, e := range j.engines {
				e.PID = key.pid
				results[key] = append(results[key], e)
			}
		}
		if len(results[key]) > 0 {
			c.found, c.failures = true, 0
			for _, e := range results[key] {
				c.endpoints = append(c.endpoints, e.Endpoint)
			}
			continue
		}
		for _, j := range b.jobs {
			d.warnNotEngine(key, c, j)
		}
		err := errors.Join(errs...)
		if err == nil {
			err = errors.New("no listening engine socket")
		}
		d.probeFailed(key, c, now, err)
	}
	for key := range d.cands {
		if _, _, start, ok := d.procs.Lookup(key.pid); !ok || start != key.start {
			delete(d.cands, key)
		}
	}
	d.merge(results)
	return nil
}

// detect returns the detector for a process whose comm matched, holding the
// families whose Match accepts its command line, or nil when none does (a
// one-off podman command).
func (d *Discoverer) detect(pid int, comm string) *detector {
	for i := range d.dets {
		det := &d.dets[i]
		if det.comm != comm {
			continue
		}
		var fams engine.Families
		var p *Process
		for _, f := range det.fams {
			if f.Match != nil {
				if p == nil {
					var err error
					if p, err = d.procs.Process(pid); err != nil {
						return nil
					}
				}
				if !f.Match(p.Cmdline) {
					continue
				}
			}
			fams = append(fams, f)
		}
		if len(fams) == 0 {
			return nil
		}
		return &detector{comm: comm, fams: fams}
	}
	return nil
}

// jobsFor lists a candidate's listening sockets as probe jobs, or the
// endpoints its command line names for a family that says where they are
// (engine.Family.Endpoints). When every one is left out by Config.Endpoints
// the error wraps ErrFiltered.
func (d *Discoverer) jobsFor(key candKey, c *candidate) ([]*probeJob, error) {
	if c.det.named() {
		return d.namedJobs(key, c)
	}
	paths, err := d.procs.ListeningSockets(key.pid)
	if err != nil {
		if isPermission(err) && !c.fdWarned {
			c.fdWarned = true
			d.log.Warn("cannot read the fd directory of an engine process; it is not probed (agentd needs root or CAP_SYS_PTRACE)",
				"pid", key.pid, "engine", c.det.comm, "err", err)
		}
		return nil, err
	}
	root, err := d.procs.HostRoot(key.pid)
	if err != nil {
		return nil, err
	}
	var jobs []*probeJob
	filtered := 0
	for _, p := range paths {
		ep, err := socketEndpoint(root, p)
		if err != nil {
			d.log.Debug("engine socket not reachable", "pid", key.pid, "socket", p, logging.Err(err))
			continue
		}
		if d.leftOut(key.pid, "socket", ep, &filtered) {
			continue
		}
		jobs = append(jobs, &probeJob{key: key, det: c.det, endpoint: ep})
	}
	if len(jobs) == 0 && filtered > 0 {
		return nil, fmt.Errorf("pid %d: %d sockets: %w", key.pid, filtered, ErrFiltered)
	}
	return jobs, nil
}

// leftOut reports whether Config.Endpoints leaves endpoint ep of process
// pid out, counting it in *filtered; kind ("socket", "endpoint") names it in
// the log.
func (d *Discoverer) leftOut(pid int, kind, ep string, filtered *int) bool {
	if d.watched(ep) {
		return false
	}
	d.log.Debug("engine "+kind+" left out by the endpoint filter", "pid", pid, kind, ep)
	*filtered++
	return true
}

// namedJobs lists the endpoints a candidate's command line names, reached
// from the host through the process's root, as probe jobs.
func (d *Discoverer) namedJobs(key candKey, c *candidate) ([]*probeJob, error) {
	p, err := d.procs.Process(key.pid)
	if err != nil {
		return nil, err
	}
	var jobs []*probeJob
	filtered := 0
	for _, f := range c.det.fams {
		if f.Endpoints == nil {
			continue
		}
		for _, ep := range f.Endpoints(p.Cmdline) {
			host, err := d.namedEndpoint(key.pid, ep)
			if err != nil {
				d.log.Debug("engine endpoint not reachable", "pid", key.pid, "endpoint", ep, logging.Err(err))
				continue
			}
			if d.leftOut(key.pid, "endpoint", host, &filtered) {
				continue
			}
			jobs = append(jobs, &probeJob{key: key, det: &detector{comm: c.det.comm, fams: engine.Families{f}}, endpoint: host})
		}
	}
	if len(jobs) == 0 && filtered > 0 {
		return nil, fmt.Errorf("pid %d: %d endpoints: %w", key.pid, filtered, ErrFiltered)
	}
	if len(jobs) == 0 {
		return nil, errors.New("no engine endpoint in the command line")
	}
	return jobs, nil
}

// namedEndpoint reaches path ep of process pid's mount namespace from the
// host: through the process's root (HostRoot), or through the root of an
// enclosing mount namespace where the same directory is found. A rootless
// podman's conmon lives in a mount namespace of its own that only adds
// mounts to its user's, and its storage, in the user's home, is the same
// directory outside: reached from there, the endpoint outlives the conmon
// and is the same for every conmon of the storage.
func (d *Discoverer) namedEndpoint(pid int, ep string) (string, error) {
	root, err := d.procs.HostRoot(pid)
	if err != nil {
		return "", err
	}
	best, err := procfs.SecureJoin(root, ep)
	if err != nil {
		return "", err
	}
	id := statSocket(best)
	for i := 0; i < 8 && id != (socketID{}) && root != "/"; i++ {
		anchor := endpointAnchorPID(d.procs.Root(), root+"/")
		ppid, _, _, ok := d.procs.Lookup(anchor)
		if anchor == 0 || !ok || ppid <= 0 {
			break
		}
		outer, err := d.procs.HostRoot(ppid)
		if err != nil || outer == root {
			break
		}
		p, err := procfs.SecureJoin(outer, ep)
		if err != nil || statSocket(p) != id {
			break
		}
		best, root = p, outer
	}
	return best, nil
}

// watched reports whether Config.Endpoints lets the endpoint ep through.
func (d *Discoverer) watched(ep string) bool {
	return d.cfg.Endpoints.Allows(ep, InRoot(d.cfg.ProcRoot, ep))
}

func (d *Discoverer) probeFailed(key candKey, c *candidate, now time.Time, err error) {
	c.failures++
	wait := d.cfg.RetryBackoff
	for i := 1; i < c.failures && wait < d.cfg.MaxRetryBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, d.cfg.MaxRetryBackoff)
	c.nextTry = now.Add(wait)
	c.lastError = err
	d.log.Debug("engine process did not answer; will retry", "pid", key.pid, "process", c.det.comm, "retry_in", wait, logging.Err(err))
}

// startProbes runs the jobs of one candidate in a goroutine of their own,
// with at most ProbeConcurrency probes in flight across candidates, each
// bounded by ProbeTimeout. The batch's done is closed when all have
// finished; ctx ending ends them.
func (d *Discoverer) startProbes(ctx context.Context, jobs []*probeJob) *probeBatch {
	b := &probeBatch{jobs: jobs, done: make(chan struct{})}
	d.probeWG.Add(1)
	go func() {
		defer d.probeWG.Done()
		defer close(b.done)
		for _, j := range jobs {
			select {
			case d.probeSem <- struct{}{}:
			case <-ctx.Done():
				j.err = ctx.Err()
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, d.cfg.ProbeTimeout)
			j.engines, j.err = probeAll(j.det.fams)(pctx, j.endpoint)
			cancel()
			<-d.probeSem
		}
	}()
	return b
}

// waitProbes waits until the batches have ended, ctx ends or wait has passed
// (wait < 0: no limit). Batches of earlier passes are not waited for: a
// pass takes their results when they are there.
func waitProbes(ctx context.Context, batches []*probeBatch, wait time.Duration) {
	var timeout <-chan time.Time
	if wait >= 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for _, b := range batches {
		select {
		case <-b.done:
		case <-ctx.Done():
			return
		case <-timeout:
			return
		}
	}
}

// warnNotEngine says, once per process and socket, that a socket of an
// engine process did not answer as an engine: it accepted and said nothing
// within ProbeTimeout, or answered something else (a process named like an
// engine listening on docker.sock). The retries go on at Debug level.
func (d *Discoverer) warnNotEngine(key candKey, c *candidate, j *probeJob) {
	if j.err == nil || errors.Is(j.err, context.Canceled) || slices.Contains(c.warned, j.endpoint) {
		return
	}
	c.warned = append(c.warned, j.endpoint)
	reason := "answered, but not as an engine"
	if errors.Is(j.err, context.DeadlineExceeded) || errors.Is(j.err, syscall.ETIMEDOUT) {
		reason = "accepted and did not answer within the probe timeout"
	}
	d.log.Warn("socket of an engine process does not answer as an engine; retrying in the background",
		"pid", key.pid, "process", c.det.comm, "socket", j.endpoint, "reason", reason,
		"probe_timeout", d.cfg.ProbeTimeout, logging.Err(j.err))
}

// merge folds probe results into the engine set, prunes engines whose process
// is gone, recomputes the hierarchy when anything changed and publishes.
func (d *Discoverer) merge(results map[candKey][]model.Engine) {
	now := d.now()
	d.mu.Lock()
	var found, lost []string
	var lostEngines []model.Engine
	updated := make(map[string]bool)
	for key, es := range results {
		for _, e := range es {
			if r, ok := d.aliasLocked(e); ok {
				e.ID = r.e.ID
			}
			if r, ok := d.engines[e.ID]; ok && d.otherLiveEngineLocked(r, key, e) {
				// Two engine processes, both running, answer with one ID
				// on two sockets: a second dockerd started with another
				// --data-root shares /etc/docker/key.json, the source of
				// Docker's ID. They are two engines: the second is told
				// apart by its endpoint.
				d.log.Warn("two engine processes answer with the same engine ID; the later one is named after its endpoint",
					append(e.LogAttrs(), "pid", e.PID, "other_pid", r.e.PID, "other_endpoint", r.e.Endpoint)...)
				e.ID += "@" + e.Endpoint
			}
			if r, ok := d.engines[e.ID]; ok {
				if r.proc != key && d.aliveLocked(r.proc) {
					// The engine keeps the process that serves it while
					// that runs: a daemonless podman its first conmon, and
					// any engine its own process rather than a forked child
					// caught before its exec still holding the listening
					// socket (dockerd re-executes itself for every container
					// it starts). Moved to the child, the engine would be
					// "gone" when the child is, and lost a grace period
					// later while it runs on.
					if !r.e.Daemonless {
						d.log.Debug("another process answered on the engine's socket; the engine keeps its own",
							append(r.e.LogAttrs(), "pid", r.proc.pid, "other_pid", key.pid)...)
					}
					continue
				}
				if r.proc != key || r.e.PID != e.PID {
					if !r.goneSince.IsZero() {
						d.log.Log(context.Background(), comingAndGoingLevel(r.e), "engine back", append(r.e.LogAttrs(), "pid", e.PID, "gone_for", now.Sub(r.goneSince).Round(time.Second))...)
					}
					r.proc, r.e.PID, r.goneSince = key, e.PID, time.Time{}
					r.e.Version, r.e.APIVersion = e.Version, e.APIVersion
					if e.Storage != "" {
						r.e.Storage = e.Storage
					}
					updated[e.ID] = true
				}
				continue
			}
			d.engines[e.ID] = newRec(e, key, false)
			found = append(found, e.ID)
		}
	}
	for id, r := range d.engines {
		if r.proc != (candKey{}) {
			if _, _, start, ok := d.procs.Lookup(r.proc.pid); ok && start == r.proc.start {
				continue
			}
			if k, ok := d.otherServerLocked(r); ok {
				// Another process found serving the engine's socket takes
				// over: a daemonless podman is served by every conmon of
				// its storage, and an engine whose forked child answered
				// first is served by the engine's own process.
				d.log.Log(context.Background(), comingAndGoingLevel(r.e), "engine served by another process",
					append(r.e.LogAttrs(), "pid", k.pid, "gone_pid", r.proc.pid)...)
				r.proc, r.e.PID = k, k.pid
				updated[id] = true
				continue
			}
			// The process is gone. A socket unit keeps an added engine;
			// any other is kept for the grace period, so that an engine
			// that restarts is the same engine and its watcher resyncs.
			r.proc, r.e.PID = candKey{}, 0
			updated[id] = true
			if r.retired {
				lost = append(lost, id)
				lostEngines = append(lostEngines, r.e)
				delete(d.engines, id)
				continue
			}
			if !r.added {
				r.goneSince = now
				d.log.Log(context.Background(), comingAndGoingLevel(r.e), "engine process gone, waiting for it to come back", append(r.e.LogAttrs(), "grace_period", d.cfg.GracePeriod)...)
			}
			continue
		}
		if r.added || r.goneSince.IsZero() || now.Sub(r.goneSince) < d.cfg.GracePeriod {
			continue
		}
		lost = append(lost, id)
		lostEngines = append(lostEngines, r.e)
		delete(d.engines, id)
	}
	d.mu.Unlock()
	for _, e := range lostEngines {
		d.logLost(e)
	}
	for id := range d.refreshHierarchy() {
		updated[id] = true
	}
	if len(found)+len(lost)+len(updated) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var changes []Change
	for _, e := range lostEngines {
		changes = append(changes, Change{Kind: EngineLost, Engine: e})
	}
	for _, id := range found {
		if r, ok := d.engines[id]; ok {
			delete(updated, id)
			changes = append(changes, Change{Kind: EngineFound, Engine: r.e})
			d.logFound(r.e)
		}
	}
	for _, id := range slices.Sorted(mapKeys(updated)) {
		if r, ok := d.engines[id]; ok {
			changes = append(changes, Change{Kind: EngineUpdated, Engine: r.e})
		}
	}
	d.publishLocked(changes)
}

// aliveLocked reports whether the process k still runs. d.scanMu is held.
func (d *Discoverer) aliveLocked(k candKey) bool {
	_, _, start, ok := d.procs.Lookup(k.pid)
	return ok && start == k.start
}

// comingAndGoingLevel is the level of an engine's "process gone" and "back"
// lines: INFO, for an engine restarting is news; DEBUG for a daemonless
// podman, whose process is its containers' conmons, which come and go with
// them (a journal line per `podman run --rm` otherwise). That it is lost, at
// the end of the grace period, is still INFO.
func comingAndGoingLevel(e model.Engine) slog.Level {
	if e.Daemonless {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// otherServerLocked finds another running process that serves the engine of
// r (found with r's endpoint or one of its aliases), for when r's is gone:
// the lowest PID, the oldest process as a rule. d.scanMu and d.mu are held.
func (d *Discoverer) otherServerLocked(r *engineRec) (candKey, bool) {
	var best candKey
	for k, c := range d.cands {
		if k == r.proc || !c.found || !r.servedAt(c.endpoints) {
			continue
		}
		if !d.aliveLocked(k) {
			continue
		}
		if best == (candKey{}) || k.pid < best.pid {
			best = k
		}
	}
	return best, best != (candKey{})
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// publishLocked sends changes to every subscriber without blocking. d.mu is held.
func (d *Discoverer) publishLocked(changes []Change) {
	for s := range d.subs {
		for _, c := range changes {
			select {
			case s.ch <- c:
			default:
				s.dropped.Add(1)
			}
		}
	}
}

// refreshHierarchy places each engine in the container that encloses it,
// from the containers the model knows, and returns the IDs whose placement
// changed. It does no I/O: the process table of the last pass gives the
// ancestors. d.scanMu is held.
func (d *Discoverer) refreshHierarchy() map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.engines) < 2 {
		changed := make(map[string]bool)
		for id, r := range d.engines {
			if r.e.Prefix != "" || r.e.ParentContainerID != "" || r.e.ParentEngineID != "" {
				r.e.Prefix, r.e.ParentContainerID, r.e.ParentEngineID = "", "", ""
				changed[id] = true
			}
		}
		return changed
	}
	snap := make([]model.Engine, 0, len(d.engines))
	next := make(map[string]*model.Engine, len(d.engines))
	for id, r := range d.engines {
		snap = append(snap, r.e)
		e := r.e
		next[id] = &e
	}
	locate := func(e model.Engine) int {
		// A daemonless podman's process is whichever conmon serves it,
		// which a `docker exec`'d podman may have started outside the
		// container init's descendants; its endpoint is reached through
		// the oldest process of the namespace (HostRoot), the init.
		anchor := endpointAnchorPID(d.procs.Root(), e.Endpoint)
		if _, _, _, live := d.procs.Lookup(anchor); e.Daemonless && anchor > 0 && live {
			return anchor
		}
		if e.PID > 0 {
			return e.PID
		}
		return anchor
	}
	parent := func(pid int) (int, bool) {
		ppid, _, _, ok := d.procs.Lookup(pid)
		return ppid, ok && ppid != pid
	}
	places := d.hier.resolve(snap, locate, parent, d.containers)
	for id, r := range d.engines {
		if _, ok := places[id]; ok || r.e.ParentEngineID == "" {
			continue
		}
		// Keep a placement the model cannot confirm or deny: the parent
		// engine's watcher has not listed (yet, or again), or the parent
		// engine is gone while the engine inside its container lives on.
		if _, known := d.engines[r.e.ParentEngineID]; !known || d.hier.counts[r.e.ParentEngineID] == 0 {
			places[id] = placement{engine: r.e.ParentEngineID, container: model.Init{ContainerID: r.e.ParentContainerID, Name: lastSegment(r.e.Prefix)}}
		}
	}
	applyHierarchy(next, places)
	changed := make(map[string]bool)
	for id, r := range d.engines {
		n := next[id]
		if r.e.Prefix != n.Prefix || r.e.ParentContainerID != n.ParentContainerID || r.e.ParentEngineID != n.ParentEngineID {
			r.e.Prefix, r.e.ParentContainerID, r.e.ParentEngineID = n.Prefix, n.ParentContainerID, n.ParentEngineID
			changed[id] = true
		}
	}
	return changed
}

// Add hands in an engine known from outside, such as a systemd socket unit's
// listening socket (unit names it): the endpoint (a host path) is probed at once
// (which starts a socket-activated service), with hint choosing the probe (""
// tries every family). Engines added this way stay known while their process is
// gone (PID 0) until Remove. It returns the engines that answered (two for a
// containerd socket serving CRI). The hierarchy of an added engine is worked
// out from the engines and process table of the last scan, so call it after
// Scan or while Run is going. An endpoint that Config.Endpoints leaves out
// is not probed: the error wraps ErrFiltered.
func (d *Discoverer) Add(ctx context.Context, endpoint string, hint model.EngineType, unit string) ([]model.Engine, error) {
	endpoint = filepath.Clean(endpoint)
	if !d.watched(endpoint) {
		return nil, fmt.Errorf("%s: %w", endpoint, ErrFiltered)
	}
	pctx, cancel := context.WithTimeout(ctx, d.cfg.ProbeTimeout)
	es, err := d.probeFor(hint)(pctx, endpoint)
	cancel()
	if err != nil {
		return nil, err
	}
	return d.AddEngines(unit, es), nil
}

// AddEngines is Add for engines that answered someone else's probe at their
// endpoint (activation confirms a socket unit's engine with its family's
// probe as it activates it): they are recorded as Add records them, without
// connecting again; the engines Config.Endpoints leaves out are dropped. es
// is not modified.
func (d *Discoverer) AddEngines(unit string, es []model.Engine) []model.Engine {
	es = slices.DeleteFunc(slices.Clone(es), func(e model.Engine) bool { return !d.watched(e.Endpoint) })
	d.scanMu.Lock()
	defer d.scanMu.Unlock()
	d.mu.Lock()
	var found []string
	updated := make(map[string]bool)
	for i, e := range es {
		e.Unit = unit
		if r, ok := d.aliasLocked(e); ok {
			e.ID = r.e.ID
			es[i].ID = r.e.ID
		}
		if r, ok := d.engines[e.ID]; ok {
			if !r.added || r.e.Unit != unit {
				r.added, r.e.Unit, r.retired = true, unit, false
				updated[e.ID] = true
			}
			continue
		}
		d.engines[e.ID] = newRec(e, candKey{}, true)
		found = append(found, e.ID)
	}
	d.mu.Unlock()
	for id := range d.refreshHierarchy() {
		updated[id] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var changes []Change
	for _, id := range found {
		if r, ok := d.engines[id]; ok {
			delete(updated, id)
			changes = append(changes, Change{Kind: EngineFound, Engine: r.e})
			d.logFound(r.e)
		}
	}
	for _, id := range slices.Sorted(mapKeys(updated)) {
		if r, ok := d.engines[id]; ok {
			changes = append(changes, Change{Kind: EngineUpdated, Engine: r.e})
		}
	}
	d.publishLocked(changes)
	out := make([]model.Engine, 0, len(es))
	for _, e := range es {
		if r, ok := d.engines[e.ID]; ok {
			out = append(out, r.e)
		}
	}
	return out
}

// Remove forgets that the engines at endpoint were handed in through Add: an
// engine whose process is running stays (it is discovered), the others are lost.
func (d *Discoverer) Remove(endpoint string) {
	endpoint = filepath.Clean(endpoint)
	d.mu.Lock()
	defer d.mu.Unlock()
	var changes []Change
	for id, r := range d.engines {
		if !r.added || (r.e.Endpoint != endpoint && !slices.Contains(r.aliases, endpoint)) {
			continue
		}
		r.added, r.e.Unit, r.retired = false, "", true
		if r.proc == (candKey{}) {
			delete(d.engines, id)
			changes = append(changes, Change{Kind: EngineLost, Engine: r.e})
			d.logLost(r.e)
		} else {
			changes = append(changes, Change{Kind: EngineUpdated, Engine: r.e})
		}
	}
	d.publishLocked(changes)
}
