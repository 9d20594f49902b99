// Command latency measures how long a container lifecycle event takes from the
// engine to an OpenTelemetry Collector through agentd: it starts and kills
// containers on the host Docker one after the other, takes each start and die
// time from Docker's event stream (timeNano), watches the sink collector's logs
// file (OTLP JSON lines of the file exporter) every few milliseconds, and
// reports the delay until the matching container.start / container.die log
// record arrived, as percentiles. agentd must already run and export to that
// collector; bench/latency.sh sets that up.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "latency: %v\n", err)
		os.Exit(1)
	}
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

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	logsFile := fs.String("logs", "", "the sink collector's logs file (OTLP JSON lines)")
	count := fs.Int("count", 200, "containers to start and kill")
	image := fs.String("image", "local/busybox:latest", "image of the containers")
	label := fs.String("label", "agentd.bench.latency=1", "label (key=value) put on the containers; they are removed at the end")
	poll := fs.Duration("poll", 10*time.Millisecond, "how often the logs file is read")
	gap := fs.Duration("gap", 100*time.Millisecond, "pause between a container's start and its kill, and between containers (one after the other, without -rate)")
	rate := fs.Float64("rate", 0, "containers started per second, each killed -life after its start, overlapping (0: one after the other)")
	life := fs.Duration("life", time.Second, "with -rate: how long each container runs before its kill")
	workers := fs.Int("workers", 64, "with -rate: containers being created, started or killed at once, at most")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the last records")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lk, lv, ok := strings.Cut(*label, "=")
	if *logsFile == "" || !ok || *count <= 0 {
		return errors.New("-logs, a -label key=value and -count > 0 are required")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()

	tr := &tracker{engine: map[key]time.Time{}, arrived: map[key]time.Time{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// Docker's own event times.
	msgs, errs := cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", "container"), filters.Arg("label", *label),
		filters.Arg("event", "start"), filters.Arg("event", "die"))})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "latency: docker events: %v\n", err)
				}
				return
			case m := <-msgs:
				tr.setEngine(key{m.Actor.ID, string(m.Action)}, time.Unix(0, m.TimeNano))
			}
		}
	}()
	// Arrivals at the sink.
	tailErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tailErr <- tail(ctx, *logsFile, *poll, tr)
	}()

	var ids []string
	var idsMu sync.Mutex
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer rcancel()
		idsMu.Lock()
		defer idsMu.Unlock()
		for _, id := range ids {
			_ = cli.ContainerRemove(rctx, id, container.RemoveOptions{Force: true})
		}
	}()
	// lifecycle creates, starts and, after pause, kills one container.
	lifecycle := func(i int, pause time.Duration) error {
		c, err := cli.ContainerCreate(ctx, &container.Config{
			Image: *image, Cmd: []string{"sleep", "1d"}, Labels: map[string]string{lk: lv},
		}, &container.HostConfig{}, nil, nil, "")
		if err != nil {
			return fmt.Errorf("create container %d: %w", i, err)
		}
		idsMu.Lock()
		ids = append(ids, c.ID)
		idsMu.Unlock()
		if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			return fmt.Errorf("start container %s: %w", c.ID, err)
		}
		time.Sleep(pause)
		if err := cli.ContainerKill(ctx, c.ID, "KILL"); err != nil {
			return fmt.Errorf("kill container %s: %w", c.ID, err)
		}
		return nil
	}
	began := time.Now()
	if *rate > 0 {
		achieved, err := storm(ctx, *count, *rate, *workers, func(i int) error { return lifecycle(i, *life) })
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "started and killed %d containers in %v: %.1f starts/s (asked %.1f/s), each killed %v after its start\n",
			len(ids), time.Since(began).Round(time.Millisecond), achieved, *rate, *life)
	} else {
		for i := 0; i < *count && ctx.Err() == nil; i++ {
			if err := lifecycle(i, *gap); err != nil {
				return err
			}
			time.Sleep(*gap)
		}
		fmt.Fprintf(out, "started and killed %d containers in %v\n", len(ids), time.Since(began).Round(time.Millisecond))
	}

	want := make([]key, 0, 2*len(ids))
	for _, id := range ids {
		want = append(want, key{id, "start"}, key{id, "die"})
	}
	deadline := time.Now().Add(*wait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if missing(tr, want) == 0 {
			break
		}
		select {
		case err := <-tailErr:
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
	report(out, tr, want)
	return nil
}

// storm calls lifecycle for containers 0..count-1, starting one every
// 1/rate seconds, at most workers at once (a start waits for a free worker,
// so the achieved rate may fall short of rate on a slow engine). It returns
// the achieved rate of starts and the first error.
func storm(ctx context.Context, count int, rate float64, workers int, lifecycle func(i int) error) (float64, error) {
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
	for ; started < count && ctx.Err() == nil; started++ {
		if started > 0 {
			select {
			case <-ctx.Done():
				continue
			case <-tick.C:
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := lifecycle(i); err != nil {
				once.Do(func() { first = err })
			}
		}(started)
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

// report prints percentiles of the delays, per action and together.
func report(out io.Writer, tr *tracker, want []key) {
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
