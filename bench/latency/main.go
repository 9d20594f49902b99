// Command latency measures how long a container lifecycle event takes from the
// engine to an OpenTelemetry Collector through agentd, and what a storm of
// container starts and stops costs the engines. It starts and kills containers
// on the host Docker (-engine docker) or on a containerd (-engine containerd,
// in a namespace of its own), one after the other or at -rate a second for
// -count containers or for -duration, takes each start and die time from the
// engine's own event stream (Docker's timeNano; containerd's /tasks/start and
// /tasks/exit envelope timestamps), watches the sink collector's logs file
// (OTLP JSON lines of the file exporter) every few milliseconds, and reports
// the delay until the matching container.start / container.die log record
// arrived, as percentiles. agentd must already run and export to that
// collector; bench/latency.sh and bench/storm.sh set that up. With -no-sink
// there is no sink: a storm without agentd, the baseline of the engines' CPU.
//
// With -cpu-pids it reports the CPU the engine processes used from the first
// start until -settle after the last container was removed: their own and
// their reaped children's (utime+stime+cutime+cstime of /proc/PID/stat), plus
// the shims' and their runc's, taken from the process that reaps the shims.
// cpu.go says what that counts and what not. -agent-pid adds agentd's own CPU
// (utime+stime) over the same window.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// errUsage marks a bad command line: exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "latency: %v\n", err)
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// engine is a container engine the tool starts and stops containers on.
type engine interface {
	// watch records the engine's own start and die times of the tool's
	// containers in tr until ctx is done (then it returns nil) or the event
	// stream fails.
	watch(ctx context.Context, tr *tracker) error
	// lifecycle creates container i, starts it, calls started (when not nil)
	// with the PID of its init process, and SIGKILLs it life after its start.
	// In a storm (containerd always, Docker with -remove) it then waits for the
	// exit and removes the container. It returns the container's ID once it
	// was created, with or without an error.
	lifecycle(ctx context.Context, i int, life time.Duration, started func(pid int)) (string, error)
	// close removes every container the engine made and has not removed, and
	// closes its client.
	close(ctx context.Context) error
}

// config is the command line.
type config struct {
	engine               string
	logs                 string
	noSink               bool
	image                string
	label                string
	labelKey, labelValue string
	address, namespace   string
	count                int
	rate                 float64
	duration, life, gap  time.Duration
	workers              int
	remove               bool
	poll, wait, settle   time.Duration
	cpuPIDs              []int
	agentPID             int
	proc                 string
	results              string
}

// parseArgs parses and checks the command line; its errors wrap errUsage.
func parseArgs(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	fs.StringVar(&c.engine, "engine", "docker", "docker (the Docker of DOCKER_HOST) or containerd")
	fs.StringVar(&c.address, "address", "/run/containerd/containerd.sock", "with -engine containerd: its socket")
	fs.StringVar(&c.namespace, "namespace", "agentd-bench", "with -engine containerd: the namespace of the containers, with the image in it")
	fs.StringVar(&c.logs, "logs", "", "the sink collector's logs file (OTLP JSON lines)")
	fs.BoolVar(&c.noSink, "no-sink", false, "no sink to watch (a run without agentd): report the achieved rate and the engines' CPU only")
	fs.IntVar(&c.count, "count", 200, "containers to start and kill (with -duration: at most)")
	fs.StringVar(&c.image, "image", "", "image of the containers (default local/busybox:latest on Docker, docker.io/local/busybox:latest on containerd)")
	fs.StringVar(&c.label, "label", "agentd.bench.latency=1", "label (key=value) put on the containers; they are removed at the end")
	fs.DurationVar(&c.poll, "poll", 10*time.Millisecond, "how often the logs file is read")
	fs.DurationVar(&c.gap, "gap", 100*time.Millisecond, "pause between a container's start and its kill, and between containers (one after the other, without -rate)")
	fs.Float64Var(&c.rate, "rate", 0, "containers started per second, each killed -life after its start, overlapping (0: one after the other)")
	fs.DurationVar(&c.duration, "duration", 0, "with -rate: start containers for this long rather than until -count")
	fs.DurationVar(&c.life, "life", time.Second, "with -rate: how long each container runs before its kill")
	fs.IntVar(&c.workers, "workers", 64, "with -rate: containers being created, started or killed at once, at most")
	fs.BoolVar(&c.remove, "remove", false, "on Docker: remove each container once it exited, not at the end (containerd's are always deleted)")
	fs.DurationVar(&c.wait, "wait", 30*time.Second, "how long to wait for the last records")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "with -cpu-pids: how long after the last container's removal the CPU window ends")
	pids := fs.String("cpu-pids", "", "PIDs of the engine processes (dockerd, containerd), space separated, whose CPU the storm costs")
	fs.IntVar(&c.agentPID, "agent-pid", 0, "PID of agentd, whose own CPU over the same window is reported")
	fs.StringVar(&c.proc, "proc", "/proc", "the proc file system the PIDs are read from")
	fs.StringVar(&c.results, "results", "", "file to write the figures to, one `key value` a line")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, f := range strings.Fields(*pids) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return c, fmt.Errorf("%w: -cpu-pids %q: %q is not a PID", errUsage, *pids, f)
		}
		c.cpuPIDs = append(c.cpuPIDs, pid)
	}
	if c.image == "" {
		c.image = "local/busybox:latest"
		if c.engine == "containerd" {
			c.image = "docker.io/local/busybox:latest"
		}
	}
	c.labelKey, c.labelValue, _ = strings.Cut(c.label, "=")
	return c, c.validate()
}

// validate names the first flag with a bad value; its errors wrap errUsage.
func (c config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
	}
	switch {
	case c.engine != "docker" && c.engine != "containerd":
		return bad("-engine %q: want docker or containerd", c.engine)
	case c.engine == "containerd" && (c.address == "" || c.namespace == ""):
		return bad("-engine containerd needs -address and -namespace")
	case c.logs == "" && !c.noSink:
		return bad("-logs is required (or -no-sink)")
	case c.logs != "" && c.noSink:
		return bad("-logs %q with -no-sink: one or the other", c.logs)
	case !strings.Contains(c.label, "=") || c.labelKey == "":
		return bad("-label %q: want key=value", c.label)
	case c.count <= 0:
		return bad("-count %d: want more than 0", c.count)
	case c.rate < 0:
		return bad("-rate %g: want 0 or more", c.rate)
	case c.duration < 0:
		return bad("-duration %v: want 0 or more", c.duration)
	case c.duration > 0 && c.rate == 0:
		return bad("-duration %v needs a -rate", c.duration)
	case c.agentPID < 0:
		return bad("-agent-pid %d: want a PID", c.agentPID)
	case c.settle < 0:
		return bad("-settle %v: want 0 or more", c.settle)
	}
	return nil
}

// key names one lifecycle event of one container.
type key struct {
	id     string
	action string // "start" or "die"
}

// tracker holds the engine's event times and the arrival times at the sink.
type tracker struct {
	mu      sync.Mutex
	engine  map[key]time.Time
	arrived map[key]time.Time
}

func (t *tracker) setEngine(k key, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.engine[k]; !ok {
		t.engine[k] = at
	}
}

func (t *tracker) setArrived(k key, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.arrived[k]; !ok {
		t.arrived[k] = at
	}
}

func newEngine(ctx context.Context, cfg config) (engine, error) {
	if cfg.engine == "containerd" {
		return newContainerd(ctx, cfg)
	}
	return newDocker(cfg)
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := parseArgs(args)
	if err != nil {
		return err
	}
	eng, err := newEngine(ctx, cfg)
	if err != nil {
		return err
	}
	// Every container made is removed, also after an error or a signal.
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer rcancel()
		if err := eng.close(rctx); err != nil {
			fmt.Fprintf(os.Stderr, "latency: cleanup: %v\n", err)
		}
	}()

	tr := &tracker{engine: map[key]time.Time{}, arrived: map[key]time.Time{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// The engine's own event times.
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := eng.watch(ctx, tr); err != nil {
			fmt.Fprintf(os.Stderr, "latency: %v\n", err)
		}
	}()
	// Arrivals at the sink.
	tailErr := make(chan error, 1)
	if !cfg.noSink {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tailErr <- tail(ctx, cfg.logs, cfg.poll, tr)
		}()
	}

	var ids []string
	var idsMu sync.Mutex
	cpu, err := startCPU(cfg.proc, cfg.cpuPIDs, cfg.agentPID)
	if err != nil {
		return err
	}
	lifecycle := func(i int, pause time.Duration) error {
		var started func(int)
		if i == 0 && len(cfg.cpuPIDs) > 0 {
			started = func(pid int) { cpu.findReaper(pid) }
		}
		id, err := eng.lifecycle(ctx, i, pause, started)
		if id != "" {
			idsMu.Lock()
			ids = append(ids, id)
			idsMu.Unlock()
		}
		return err
	}
	began := time.Now()
	achieved := 0.0
	if cfg.rate > 0 {
		achieved, err = storm(ctx, cfg.count, cfg.rate, cfg.duration, cfg.workers, func(i int) error { return lifecycle(i, cfg.life) })
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "started and killed %d containers on %s in %v: %.1f starts/s (asked %.1f/s), each killed %v after its start\n",
			len(ids), cfg.engine, time.Since(began).Round(time.Millisecond), achieved, cfg.rate, cfg.life)
	} else {
		for i := 0; i < cfg.count && ctx.Err() == nil; i++ {
			if err := lifecycle(i, cfg.gap); err != nil {
				return err
			}
			time.Sleep(cfg.gap)
		}
		fmt.Fprintf(out, "started and killed %d containers on %s in %v\n", len(ids), cfg.engine, time.Since(began).Round(time.Millisecond))
	}
	res := results{"engine": cfg.engine, "asked_rate": fmt.Sprintf("%.1f", cfg.rate), "achieved_rate": fmt.Sprintf("%.1f", achieved),
		"containers": strconv.Itoa(len(ids))}

	want := make([]key, 0, 2*len(ids))
	for _, id := range ids {
		want = append(want, key{id, "start"}, key{id, "die"})
	}
	if len(cfg.cpuPIDs) > 0 || cfg.agentPID > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(cfg.settle):
		}
		if err := cpu.end(out, res, fmt.Sprintf("%v after the last container ended", cfg.settle)); err != nil {
			return err
		}
		if !cfg.noSink {
			fmt.Fprintf(out, "events not at the sink when the CPU window ended: %d of %d\n", missing(tr, want), len(want))
		}
	}
	if cfg.noSink {
		// The engine's own events still tell whether the storm was whole.
		_ = waitFor(ctx, cfg.wait, func() bool { return engineMissing(tr, want) == 0 }, nil)
		res["expected"] = strconv.Itoa(len(want))
		res["engine_missing"] = strconv.Itoa(engineMissing(tr, want))
		fmt.Fprintf(out, "engine events: %d expected, %d not seen\n", len(want), engineMissing(tr, want))
		return res.write(cfg.results)
	}
	if err := waitFor(ctx, cfg.wait, func() bool { return missing(tr, want) == 0 }, tailErr); err != nil {
		return err
	}
	report(out, res, tr, want)
	return res.write(cfg.results)
}

// follow calls handle with what arrives on msgs until ctx is done (then it
// returns nil), errs has an error or handle returns one.
func follow[T any](ctx context.Context, msgs <-chan T, errs <-chan error, handle func(T) error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case m := <-msgs:
			if err := handle(m); err != nil {
				return err
			}
		}
	}
}

// waitFor polls done every 100 ms for at most d; an error from errc ends it.
func waitFor(ctx context.Context, d time.Duration, done func() bool, errc <-chan error) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil && !done() {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// results are the figures of a run for a script to read, written as `key
// value` lines in key order.
type results map[string]string

func (r results) write(path string) error {
	if path == "" {
		return nil
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(r)) {
		fmt.Fprintf(&b, "%s %s\n", k, r[k])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// storm calls lifecycle for containers 0, 1, ..., starting one every 1/rate
// seconds, count of them or, when duration is more than 0, as many as it
// starts in duration (count at most); at most workers at once (a start waits
// for a free worker, so the achieved rate may fall short of rate on a slow
// engine). It returns once every lifecycle returned, with the achieved rate of
// starts and the first error.
func storm(ctx context.Context, count int, rate float64, duration time.Duration, workers int, lifecycle func(i int) error) (float64, error) {
	if workers < 1 {
		workers = 1
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	began := time.Now()
	started := 0
starts:
	for started < count {
		if started > 0 {
			select {
			case <-ctx.Done():
				break starts
			case <-tick.C:
			}
		}
		if duration > 0 && time.Since(began) >= duration {
			break
		}
		select {
		case <-ctx.Done():
			break starts
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := lifecycle(i); err != nil {
				once.Do(func() { first = err })
			}
		}(started)
		started++
	}
	elapsed := time.Since(began)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if elapsed <= 0 {
		return 0, first
	}
	return float64(started) / elapsed.Seconds(), first
}

// engineMissing counts the events of want the engine's own stream has not had.
func engineMissing(tr *tracker, want []key) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, k := range want {
		if _, ok := tr.engine[k]; !ok {
			n++
		}
	}
	return n
}

// missing counts the events of want that have not both an engine and an arrival time.
func missing(tr *tracker, want []key) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, k := range want {
		_, e := tr.engine[k]
		_, a := tr.arrived[k]
		if !e || !a {
			n++
		}
	}
	return n
}

// tail reads what is appended to path every poll and records the arrival of
// container.start and container.die records.
func tail(ctx context.Context, path string, poll time.Duration, tr *tracker) error {
	var off int64
	var pending []byte
	t := time.NewTicker(poll)
	defer t.Stop()
	buf := make([]byte, 1<<20)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for {
			n, err := f.ReadAt(buf, off)
			pending = append(pending, buf[:n]...)
			off += int64(n)
			if err != nil || n < len(buf) {
				break
			}
		}
		f.Close()
		now := time.Now()
		i := bytes.LastIndexByte(pending, '\n')
		if i < 0 {
			continue
		}
		logs, err := testbed.ParseLogs(bytes.NewReader(pending[:i+1]))
		pending = append(pending[:0], pending[i+1:]...)
		if err != nil {
			return err
		}
		for _, r := range logs.Records {
			action := strings.TrimPrefix(r.EventName, "container.")
			if action != "start" && action != "die" {
				continue
			}
			if id := r.Resource["container.id"]; id != "" {
				tr.setArrived(key{id, action}, now)
			}
		}
	}
}

// report prints percentiles of the delays, per action and together, and puts
// those of all events and their counts in res.
func report(out io.Writer, res results, tr *tracker, want []key) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	by := map[string][]time.Duration{}
	lost := map[string]int{}
	for _, k := range want {
		e, eok := tr.engine[k]
		a, aok := tr.arrived[k]
		if !eok || !aok {
			lost[k.action]++
			continue
		}
		d := a.Sub(e)
		by[k.action] = append(by[k.action], d)
		by["all"] = append(by["all"], d)
	}
	fmt.Fprintln(out, "| events | n | missing | p50 | p95 | p99 | max |")
	fmt.Fprintln(out, "|---|---:|---:|---:|---:|---:|---:|")
	for _, action := range []string{"start", "die", "all"} {
		ds := by[action]
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		m := lost[action]
		if action == "all" {
			m = lost["start"] + lost["die"]
		}
		fmt.Fprintf(out, "| %s | %d | %d | %s | %s | %s | %s |\n", action, len(ds), m,
			pct(ds, 50), pct(ds, 95), pct(ds, 99), pct(ds, 100))
	}
	all := by["all"]
	res["expected"] = strconv.Itoa(len(want))
	res["arrived"] = strconv.Itoa(len(all))
	res["missing"] = strconv.Itoa(len(want) - len(all))
	for _, p := range []int{50, 95, 99, 100} {
		name := "p" + strconv.Itoa(p)
		if p == 100 {
			name = "max"
		}
		res[name] = pct(all, p)
	}
}

// pct is the p-th percentile (nearest rank) of sorted ds.
func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "n/a"
	}
	i := (p*len(ds) + 99) / 100
	i = min(max(i, 1), len(ds))
	return ds[i-1].Round(time.Millisecond).String()
}
