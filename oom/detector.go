package oom

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/model"
)

// DefaultPath is the kernel log device.
const DefaultPath = "/dev/kmsg"

// Config tunes a Detector. The zero value is usable.
type Config struct {
	// Path is the kernel log to read (default DefaultPath). Anything that
	// reads like /dev/kmsg works: a FIFO or a file of records for tests.
	Path string
	// FromStart reads the records already in the log. By default the
	// Detector starts at the end: see the package documentation.
	FromStart bool
	// ProcRoot is the procfs used to look up the cgroup of a killed process
	// when the kernel did not log it (default /proc).
	ProcRoot string
	// Grace is how long a kill waits for the engine's own "oom" event before
	// the Detector emits container.oom itself (default 1 s; a negative value
	// means no wait). The container is marked OOMKilled at once regardless.
	Grace time.Duration
	// Window is how close together two OOM reports for one container must be
	// to count as one: the engine's event and a kill from the log, or several
	// kills of the same container run (default 5 s).
	Window time.Duration
	// BootTime converts the log's time since boot to wall-clock time; zero
	// means now minus CLOCK_MONOTONIC, computed at each kill (the printk clock
	// is monotonic and stops during suspend, like CLOCK_MONOTONIC).
	BootTime time.Time
}

func (c Config) withDefaults() Config {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	switch {
	case c.Grace == 0:
		c.Grace = time.Second
	case c.Grace < 0:
		c.Grace = 0
	}
	if c.Window <= 0 {
		c.Window = 5 * time.Second
	}
	return c
}

// Stats counts what a Detector has seen. All counters only grow.
type Stats struct {
	// Records is the number of kernel log records parsed.
	Records uint64
	// Malformed is the number of records that could not be parsed.
	Malformed uint64
	// Overruns is the number of times the ring buffer lost records before
	// they were read (EPIPE from /dev/kmsg).
	Overruns uint64
	// Kills is the number of OOM kills found in the log.
	Kills uint64
	// Matched and Unmatched split Kills by whether a container was found.
	Matched, Unmatched uint64
	// Emitted is the number of container.oom events the Detector emitted.
	Emitted uint64
	// Deduplicated is the number of kills whose event the engine had
	// already reported.
	Deduplicated uint64
	// Coalesced is the number of further kills in a container within Window
	// of one already reported.
	Coalesced uint64
}

// Detector reads the kernel log, matches OOM kills to the containers of a
// model.Store, marks them OOMKilled there and emits their container.oom
// events. Create it with New and call Run once.
//
// # Events and the die that follows
//
// A kill in a container's cgroup (see match for how it is found) is handled
// in this order:
//  1. At once, the stored container gets OOMKilled=true (Store.MarkOOMKilled).
//     The kernel logs the kill before the process is reaped, so this usually
//     happens before the engine's die: the watcher's die keeps the flag (it
//     ORs the stored one in) and telemetry's die record carries
//     agentd.container.oom_killed=true. When the die comes first, the flag
//     is set again when the die is seen, so the exported state shows it, and
//     telemetry holds the die of a SIGKILLed container (exit code 137) until
//     the Detector has read the log through the die's arrival (ReadThrough,
//     usually a millisecond or two; at most 200 ms), so its record still
//     carries it; only a kill the Detector could not read in time goes out as
//     a die without the flag, followed by container.oom. (The Store keeps the flag against a
//     watcher's update of the same run made from an older inspection.)
//  2. After Grace, a container.oom event with the kernel's time of the kill,
//     unless the engine reported an "oom" for the container within Window (a
//     Docker on cgroup v2, or the one in the systemd host, does). An engine
//     slower than Grace gives a second container.oom.
//
// Only containers that consumers see are matched (Store.Snapshot), plus those
// destroyed in the last minute (a --rm container may be gone before the
// kernel log is read).
type Detector struct {
	store *model.Store
	cfg   Config
	log   *slog.Logger
	// open opens the kernel log; tests replace it.
	open func(path string, fromStart bool) (io.ReadCloser, error)

	records, malformed, overruns, kills, matched, unmatched, emitted, dedup, coalesced atomic.Uint64

	// ReadThrough's state: mode (a readMode), the time up to which the log
	// has been read and applied (UnixNano), whether a sync is wanted, and
	// the file whose read deadline wakes the reader.
	mode     atomic.Int32
	through  atomic.Int64
	syncWant atomic.Bool
	syncFile atomic.Pointer[os.File]

	// The state below belongs to Run's goroutine.
	pending []pendingOOM
	ours    map[model.ContainerKey]time.Time // time of the container.oom we emitted
	engine  map[model.ContainerKey]time.Time // when an engine's own oom was seen
	last    map[model.ContainerKey]lastKill  // the last kill reported per container
	gone    []goneContainer                  // recently destroyed, oldest first
}

// KillsSeen returns the number of OOM kills read from the kernel log plus
// the times records were lost (an overrun), and whether the kernel log is
// being read: stats.Reader reads the cgroups' OOM kill counters only when the
// number changes. Safe for concurrent use.
func (d *Detector) KillsSeen() (uint64, bool) {
	switch readMode(d.mode.Load()) {
	case modeSync, modeBlind:
		return d.kills.Load() + d.overruns.Load(), true
	}
	return 0, false
}

// readMode is what ReadThrough can tell.
type readMode int32

const (
	modeStarting readMode = iota // not known yet: false
	modeSync                     // the reader answers syncs
	modeBlind                    // a source that cannot tell: false
	modeOff                      // no kernel log read: true
)

// ReadThrough reports whether every kernel log record written before t has
// been read and its OOM kill, if any, marked in the Store, so that a die that
// arrived at t and whose container is not marked OOMKilled was not an OOM
// kill. When that is not known yet it asks the reader to look and returns
// false; ask again a few milliseconds later. It is true when no kernel log is
// read (none will ever mark a container), and false for good when the source
// cannot tell (a regular file): callers then wait as long as they see fit.
// Safe for concurrent use.
func (d *Detector) ReadThrough(t time.Time) bool {
	switch readMode(d.mode.Load()) {
	case modeOff:
		return true
	case modeSync:
		if d.through.Load() >= t.UnixNano() {
			return true
		}
		d.syncWant.Store(true)
		if f := d.syncFile.Load(); f != nil {
			_ = f.SetReadDeadline(time.Now())
		}
	}
	return false
}

type pendingOOM struct {
	c    model.Container
	kill Kill
	due  time.Time
}

type lastKill struct {
	at      time.Time // kernel time of the kill
	seen    time.Time // when it was read
	started time.Time // the container's StartedAt then
}

type goneContainer struct {
	c    model.Container
	seen time.Time
}

const (
	goneCap = 256
	goneTTL = time.Minute
	// subBuffer is the Detector's event subscription buffer.
	subBuffer = 1024
)

// New returns a Detector that matches kills against store's containers and
// logs to log (nil discards).
func New(store *model.Store, cfg Config, log *slog.Logger) *Detector {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Detector{
		store:  store,
		cfg:    cfg,
		log:    log,
		open:   openKmsg,
		ours:   map[model.ContainerKey]time.Time{},
		engine: map[model.ContainerKey]time.Time{},
		last:   map[model.ContainerKey]lastKill{},
	}
}

// Stats returns the Detector's counters. Safe to call concurrently with Run.
func (d *Detector) Stats() Stats {
	return Stats{
		Records:      d.records.Load(),
		Malformed:    d.malformed.Load(),
		Overruns:     d.overruns.Load(),
		Kills:        d.kills.Load(),
		Matched:      d.matched.Load(),
		Unmatched:    d.unmatched.Load(),
		Emitted:      d.emitted.Load(),
		Deduplicated: d.dedup.Load(),
		Coalesced:    d.coalesced.Load(),
	}
}

// Run detects OOM kills until ctx ends, then returns nil. It returns at once
// (nil, after one clear warning naming the path and the error) when the
// kernel log cannot be opened, typically because agentd lacks CAP_SYSLOG:
// agentd then runs without OOM detection. A log that fails or ends later is
// reported the same way; Run still waits for ctx so that kills already read
// are reported. Call Run once.
func (d *Detector) Run(ctx context.Context) error {
	src, err := d.open(d.cfg.Path, d.cfg.FromStart)
	if err != nil {
		d.mode.Store(int32(modeOff))
		d.log.Warn("cannot read the kernel log, OOM kills are not detected: agentd needs CAP_SYSLOG (or root) to read it",
			"path", d.cfg.Path, "err", err)
		return nil
	}
	sub := d.store.Subscribe(subBuffer)
	defer sub.Close()

	rctx, cancel := context.WithCancel(ctx)
	kills := make(chan Kill)
	synced := make(chan time.Time)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if f, rc, ok := syncable(src); ok {
			d.syncFile.Store(f)
			d.mode.Store(int32(modeSync))
			d.readSyncing(rctx, f, rc, kills, synced)
			return
		}
		d.mode.Store(int32(modeBlind))
		d.read(rctx, src, kills)
	}()
	defer func() {
		cancel()
		if err := src.Close(); err != nil {
			d.log.Debug("closing the kernel log", "path", d.cfg.Path, "err", err)
		}
		wg.Wait()
	}()
	d.log.Debug("reading the kernel log for OOM kills", "path", d.cfg.Path, "from_start", d.cfg.FromStart)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case k, ok := <-kills:
			if !ok {
				// The reader has stopped and every kill it read is
				// applied: no kill will be marked any more.
				kills = nil
				d.mode.Store(int32(modeOff))
				continue
			}
			d.onKill(k, time.Now())
		case t := <-synced:
			// Every kill read before t has been applied (kills is
			// unbuffered); the dies emitted meanwhile are applied now, so
			// that a die whose kill was read earlier is marked again.
			d.drain(sub)
			d.through.Store(t.UnixNano())
		case ev := <-sub.C():
			d.onEvent(ev, time.Now())
		case <-timer.C:
		}
		now := time.Now()
		d.flush(now)
		if len(d.pending) > 0 {
			timer.Reset(max(d.pending[0].due.Sub(now), 0))
		}
	}
}

// drain applies the events waiting on sub without blocking.
func (d *Detector) drain(sub *model.Subscription) {
	for {
		select {
		case ev := <-sub.C():
			d.onEvent(ev, time.Now())
		default:
			return
		}
	}
}

// syncable returns src as a file the runtime poller waits on, which
// readSyncing needs: a read deadline can be set on it.
func syncable(src io.ReadCloser) (*os.File, syscall.RawConn, bool) {
	f, ok := src.(*os.File)
	if !ok || f.SetReadDeadline(time.Time{}) != nil {
		return nil, nil, false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, nil, false
	}
	return f, rc, true
}

// bootTime is the wall-clock time the printk clock counts from.
func (d *Detector) bootTime() time.Time {
	if !d.cfg.BootTime.IsZero() {
		return d.cfg.BootTime
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// candidates are the containers a kill may belong to: the visible ones, then
// the recently destroyed ones not among them.
func (d *Detector) candidates(now time.Time) []model.Container {
	cs := d.store.Snapshot().Containers
	if len(d.gone) == 0 {
		return cs
	}
	out := slices.Clone(cs)
	for _, g := range d.gone {
		if now.Sub(g.seen) <= goneTTL {
			out = append(out, g.c)
		}
	}
	return out
}

func (d *Detector) onKill(k Kill, now time.Time) {
	d.kills.Add(1)
	if k.TaskMemcg == "" {
		k.TaskMemcg = memoryCgroup(d.cfg.ProcRoot, k.PID)
	}
	log := d.log.With("pid", k.PID, "task", k.Task, "task_memcg", k.TaskMemcg, "oom_memcg", k.OOMMemcg)
	c, how := match(d.candidates(now), k)
	if how == matchNone {
		d.unmatched.Add(1)
		log.Info("OOM kill outside any known container")
		return
	}
	d.matched.Add(1)
	key := c.Key()
	if stored, ok := d.store.MarkOOMKilled(key); ok {
		c = stored
	}
	c.OOMKilled = true
	log.Info("container OOM-killed (from the kernel log)", append(c.LogAttrs(),
		"matched_by", matchNames[how])...)
	if l, ok := d.last[key]; ok && absDur(k.Time.Sub(l.at)) < d.cfg.Window && l.started.Equal(c.StartedAt) {
		d.coalesced.Add(1)
		return
	}
	d.last[key] = lastKill{at: k.Time, seen: now, started: c.StartedAt}
	d.pending = append(d.pending, pendingOOM{c: c, kill: k, due: now.Add(d.cfg.Grace)})
	d.prune(now)
}

func (d *Detector) onEvent(ev model.Event, now time.Time) {
	if ev.Container == nil {
		return
	}
	key := ev.Container.Key()
	switch ev.Type {
	case model.EventOOM:
		if t, ok := d.ours[key]; ok && t.Equal(ev.Time) {
			delete(d.ours, key)
			return
		}
		d.engine[key] = now
	case model.EventDie:
		l, ok := d.last[key]
		if ok && !ev.Container.OOMKilled && now.Sub(l.seen) < d.cfg.Window {
			if _, ok := d.store.MarkOOMKilled(key); ok {
				d.log.Debug("die of an OOM-killed container arrived without the flag: set it again", logging.KeyContainerID, key.ID)
			}
		}
	case model.EventDestroy:
		if len(d.gone) >= goneCap {
			d.gone = slices.Delete(d.gone, 0, 1)
		}
		d.gone = append(d.gone, goneContainer{c: *ev.Container, seen: now})
	}
}

// flush emits the pending container.oom events that are due and whose
// engine did not report the OOM itself.
func (d *Detector) flush(now time.Time) {
	n := 0
	for _, p := range d.pending {
		if p.due.After(now) {
			break
		}
		n++
		key := p.c.Key()
		if t, ok := d.engine[key]; ok && absDur(t.Sub(p.due.Add(-d.cfg.Grace))) < d.cfg.Window {
			d.dedup.Add(1)
			d.log.Debug("the engine reported this OOM itself", logging.KeyContainerID, key.ID)
			continue
		}
		c := p.c
		if cur, ok := d.store.Container(key); ok {
			c = cur
		}
		c.OOMKilled = true
		d.ours[key] = p.kill.Time
		d.store.Emit(model.Event{Type: model.EventOOM, Time: p.kill.Time, EngineID: c.EngineID, Container: &c})
		d.emitted.Add(1)
	}
	d.pending = slices.Delete(d.pending, 0, n)
}

// prune forgets what no longer matters for deduplication.
func (d *Detector) prune(now time.Time) {
	keep := 2*d.cfg.Window + d.cfg.Grace
	for k, t := range d.engine {
		if now.Sub(t) > keep {
			delete(d.engine, k)
		}
	}
	for k, l := range d.last {
		if now.Sub(l.seen) > keep {
			delete(d.last, k)
		}
	}
	for k, t := range d.ours {
		if now.Sub(t) > keep+time.Minute { // kernel time: allow for clock skew
			delete(d.ours, k)
		}
	}
	i := 0
	for i < len(d.gone) && now.Sub(d.gone[i].seen) > goneTTL {
		i++
	}
	d.gone = slices.Delete(d.gone, 0, i)
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
