package churn_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/agentd-dev/agentd/internal/agenttest"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/telemetry"
)

// churnCycles and churnPace: 1,000 container lifecycles, one begun every
// 500 ms (8.3 minutes), each create, start, stop (by itself or by a kill)
// and remove; at most churnInFlight of them at once.
const (
	churnCycles   = 1000
	churnPace     = 500 * time.Millisecond
	churnInFlight = 8
)

// footprint is what the agent holds: the test process is the agent's.
type footprint struct {
	goroutines int
	fds        int
	heap       uint64 // HeapAlloc after a GC: the live objects
	rss        uint64
}

func (f footprint) String() string {
	return fmt.Sprintf("%d goroutines, %d open files, heap %.1f MiB, RSS %.1f MiB",
		f.goroutines, f.fds, float64(f.heap)/(1<<20), float64(f.rss)/(1<<20))
}

func measure(t *testing.T, cli *client.Client) footprint {
	t.Helper()
	// The test's own Docker client keeps idle connections (and their
	// goroutines): close them so that only the agent's are counted.
	cli.HTTPClient().CloseIdleConnections()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	f := footprint{goroutines: runtime.NumGoroutine(), fds: len(fds), heap: ms.HeapAlloc}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			f.rss = kb << 10
		}
	}
	return f
}

// churnContainer is one lifecycle of the churn.
type churnContainer struct {
	id   string
	exit int
}

// TestReliabilityChurn runs 1,000 container lifecycles through a private
// dockerd at two per second, half of them exiting by themselves with a
// code of their own and half killed. Every start, die (with its exit code)
// and destroy reaches the collector exactly once; at the end the agent's
// model equals the engine's own list; and the agent's goroutines, open
// files and heap are back to their level before the churn.
func TestReliabilityChurn(t *testing.T) {
	testbed.Require(t, testbed.Docker, testbed.Root)
	col := testbed.StartCollector(t)
	ctrd := enginetest.StartPrivateContainerd(t)
	docker := enginetest.StartPrivateDockerd(t, ctrd.Sock)
	cli, err := client.NewClientWithOpts(client.WithHost("unix://"+docker.Sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	// Warn level: the log buffer must not grow with the churn, or the
	// heap measured would be the test's.
	cfg := agenttest.Config(col)
	cfg.Activation.Enabled = false
	agenttest.Scope(&cfg, docker.Sock)
	a, _ := agenttest.Run(t, cfg, slog.LevelWarn)
	eng := agenttest.WaitEngine(t, a, docker.Sock, true, 2*time.Minute)

	label := "churn-" + enginetest.Random(t)
	// The engine's own account: a second subscriber of its events, which
	// only counts them, so it is never behind. An event it did not get
	// either, the engine never sent (dockerd drops an event for a
	// subscriber 100 ms behind by 1,024): agentd cannot be asked to tell it.
	engineSaw := watchEngineEvents(t, cli, label)
	// Ten containers live through the churn: the model's end state is not
	// merely empty.
	var stay []string
	for i := range 10 {
		stay = append(stay, docker.CLI("run", "-d", "--network", "none", "--name", fmt.Sprintf("%s-stay-%d", label, i),
			"--label", "agentd.test="+label, testbed.BusyboxImage, "sleep", "100000"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var (
		mu     sync.Mutex
		done   []churnContainer
		failed []string
	)
	cycle := func(i int) {
		name := fmt.Sprintf("%s-%d", label, i)
		c := churnContainer{exit: i % 100}
		cmd := []string{"sh", "-c", fmt.Sprintf("exit %d", c.exit)}
		if i%2 == 0 {
			c.exit, cmd = 137, []string{"sleep", "100000"}
		}
		err := func() error {
			created, err := cli.ContainerCreate(ctx, &container.Config{Image: testbed.BusyboxImage, Cmd: cmd,
				Labels: map[string]string{"agentd.test": label}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, name)
			if err != nil {
				return err
			}
			c.id = created.ID
			waitC, errC := cli.ContainerWait(ctx, c.id, container.WaitConditionNextExit)
			if err := cli.ContainerStart(ctx, c.id, container.StartOptions{}); err != nil {
				return err
			}
			if i%2 == 0 {
				if err := cli.ContainerKill(ctx, c.id, "KILL"); err != nil {
					return err
				}
			}
			select {
			case w := <-waitC:
				if int(w.StatusCode) != c.exit {
					return fmt.Errorf("exit code %d, want %d", w.StatusCode, c.exit)
				}
			case err := <-errC:
				return err
			}
			return cli.ContainerRemove(ctx, c.id, container.RemoveOptions{Force: true})
		}()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			return
		}
		done = append(done, c)
	}
	// At most churnInFlight lifecycles at once: when the engine slows
	// down, the churn does too instead of piling up concurrent removals,
	// under which Debian's dockerd 20.10 deadlocks in libnetwork (its
	// watchLoop waits for a network's lock held by a removal that waits to
	// send to the watchLoop; seen in a rehearsal at a load average near
	// 90, every API call then hung).
	inFlight := make(chan struct{}, churnInFlight)
	churn := func(from, to int) {
		var wg sync.WaitGroup
		tick := time.NewTicker(churnPace)
		defer tick.Stop()
		for i := from; i < to; i++ {
			inFlight <- struct{}{}
			wg.Add(1)
			go func() { defer wg.Done(); defer func() { <-inFlight }(); cycle(i) }()
			<-tick.C
		}
		wg.Wait()
	}
	settled := func() {
		// The model equals the engine's own list: same IDs, same states.
		deadline := time.Now().Add(time.Minute)
		for {
			list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "agentd.test="+label))})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for _, c := range list {
				want[c.ID] = c.State
			}
			got := map[string]string{}
			for _, c := range a.Store().EngineContainers(eng.ID) {
				if c.Labels["agentd.test"] == label {
					got[c.ID] = string(c.State)
				}
			}
			diff := mapDiff(want, got)
			if diff == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("a minute after the churn the model differs from the engine's list: %s; %s", diff, modelEngines(a.Store(), eng.ID))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Warm-up, so that the baseline holds what a steady agent holds
	// (connection pools, buffers, the export queue's first requests).
	churn(0, 20)
	settled()
	time.Sleep(5 * time.Second)
	before := measure(t, cli)
	began := time.Now()
	// Half way, the agent's heap is measured once more: what it keeps
	// in bounded sets (the model's Docker tombstones, the OOM
	// detector's last destroyed containers, maps sized by the busiest
	// moment so far) is mostly there by then, and what a leak keeps
	// grows on with every lifecycle of the second half.
	half := (20 + churnCycles) / 2
	churn(20, half)
	settled()
	time.Sleep(5 * time.Second)
	mid := measure(t, cli)
	midProfile := takeHeapProfile(t)
	churn(half, churnCycles)
	t.Logf("%d lifecycles in %s", churnCycles-20, time.Since(began).Round(time.Second))
	if len(failed) > 0 {
		t.Fatalf("%d of %d lifecycles failed at the engine, first: %s", len(failed), churnCycles, failed[0])
	}
	settled()

	// Every event at the collector exactly once.
	col.WaitLogs(t, 2*time.Minute, func(l *testbed.Logs) bool {
		for _, c := range done {
			if len(agenttest.CountEvents(l, "container.destroy", c.id)) == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(5 * time.Second) // time for a duplicate to arrive
	l, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	var wrong, unsent, engineOdd []string
	for _, c := range done {
		for _, name := range []string{"container.create", "container.start", "container.die", "container.destroy"} {
			n := len(agenttest.CountEvents(l, name, c.id))
			switch sent := engineSaw.count(c.id, strings.TrimPrefix(name, "container.")) > 0; {
			case !sent && n == 0:
				unsent = append(unsent, fmt.Sprintf("%s %s", c.id[:12], name))
			case n != 1:
				wrong = append(wrong, fmt.Sprintf("%s %s: %d records (the engine's stream to another subscriber carried it: %v)", c.id[:12], name, n, sent))
			}
		}
		// The exit code is the one the engine's die event carried, as
		// the other subscriber got it: agentd tells what the engine
		// said. Where that differs from what the engine's wait answered,
		// the test says so, to tell an engine's slip from agentd's.
		want, said := engineSaw.exitCode(c.id)
		if !said {
			want = c.exit
		} else if want != c.exit {
			engineOdd = append(engineOdd, fmt.Sprintf("%s said %d, its wait %d", c.id[:12], want, c.exit))
		}
		if dies := agenttest.CountEvents(l, "container.die", c.id); len(dies) == 1 && dies[0].Attrs[telemetry.AttrExitCode] != strconv.Itoa(want) {
			wrong = append(wrong, fmt.Sprintf("%s die: exit code %q, the engine's %d (its wait: %d)", c.id[:12], dies[0].Attrs[telemetry.AttrExitCode], want, c.exit))
		}
	}
	if len(unsent) > 0 {
		sort.Strings(unsent)
		t.Logf("%d events the engine sent to no subscriber, so none was exported: %s", len(unsent), strings.Join(unsent[:min(len(unsent), 10)], "; "))
	}
	if len(engineOdd) > 0 {
		t.Logf("%d die events of the engine whose exit code differs from its wait's: %s", len(engineOdd), strings.Join(engineOdd[:min(len(engineOdd), 10)], "; "))
	}
	if len(unsent) > len(done)/100 {
		t.Errorf("the engine sent %d of %d lifecycles' events to no subscriber: the churn measures the engine, not agentd", len(unsent), len(done))
	}
	if len(wrong) > 0 {
		sort.Strings(wrong)
		t.Errorf("%d of %d lifecycles not exported exactly once; first ones: %s", len(wrong), len(done), strings.Join(wrong[:min(len(wrong), 10)], "; "))
	}
	for _, id := range stay {
		if n := len(agenttest.CountEvents(l, "container.die", id)); n != 0 {
			t.Errorf("%s kept running but %d die records were exported", id[:12], n)
		}
	}

	// Back to the level before: goroutines and files end with their
	// containers (an exporter's retry may briefly hold one more).
	var after footprint
	deadline := time.Now().Add(30 * time.Second)
	for {
		after = measure(t, cli)
		if after.goroutines <= before.goroutines+2 && after.fds <= before.fds+2 && heapWithin(before, mid, after) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("before the churn: %s", before)
	t.Logf("after %d lifecycles: %s", half, mid)
	t.Logf("after %d lifecycles: %s", churnCycles, after)
	if after.goroutines > before.goroutines+2 {
		t.Errorf("goroutines %d after the churn, %d before", after.goroutines, before.goroutines)
	}
	if after.fds > before.fds+2 {
		t.Errorf("open files %d after the churn, %d before", after.fds, before.fds)
	}
	growth := heapGrowth(midProfile, takeHeapProfile(t), 12)
	if !heapWithin(before, mid, after) {
		t.Errorf("live heap %.1f MiB before the churn, %.1f MiB half way, %.1f MiB after it; over the second half grew most:%s",
			mib(before.heap), mib(mid.heap), mib(after.heap), growth)
	} else {
		t.Logf("live heap over the second half grew most:%s", growth)
	}
}

// The heap checks of TestReliabilityChurn. The agent may keep what it
// remembers of removed containers in bounded sets (the model's 4,096 Docker
// tombstones, the OOM detector's 256 last destroyed containers) and maps
// that kept the size of the busiest moment (Go's maps do not shrink): a
// level, reached under a churn's load whatever the number of lifecycles,
// which heapBound caps. A leak is a slope instead: heapSlope over the
// second half of the churn is 2 KiB a lifecycle (the loggers of destroyed
// containers were one, 7 KiB each).
const (
	heapBound = 4 << 20
	heapSlope = 1 << 20
)

// heapWithin reports whether the agent's live heap after the churn is
// within heapBound of its level before and heapSlope of its level half way.
func heapWithin(before, mid, after footprint) bool {
	return after.heap <= before.heap+heapBound && after.heap <= mid.heap+heapSlope
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// engineEvents counts the container events an engine sent, by container ID
// and action (one small array a container: the counts live in the test
// process, whose heap the test measures as the agent's).
type engineEvents struct {
	mu sync.Mutex
	n  map[string]engineCount
}

// engineCount is what the engine sent of one container: its events by
// action, and the exit code of its last die.
type engineCount struct {
	n    [len(lifecycle)]uint16
	exit int16 // -1: no die with an exit code
}

// lifecycle is the actions engineEvents counts.
var lifecycle = [...]string{"create", "start", "die", "destroy"}

func (e *engineEvents) count(id, action string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i := slices.Index(lifecycle[:], action); i >= 0 {
		return int(e.n[id].n[i])
	}
	return 0
}

// exitCode returns the exit code of the last die the engine sent for id.
func (e *engineEvents) exitCode(id string) (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.n[id]
	return int(c.exit), ok && c.exit >= 0
}

// watchEngineEvents counts, until the test ends, the events of the engine
// behind cli for containers labelled agentd.test=label.
func watchEngineEvents(t *testing.T, cli *client.Client, label string) *engineEvents {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	msgs, errs := cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", "container"), filters.Arg("label", "agentd.test="+label))})
	e := &engineEvents{n: map[string]engineCount{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-msgs:
				if i := slices.Index(lifecycle[:], string(m.Action)); i >= 0 {
					e.mu.Lock()
					c, ok := e.n[m.Actor.ID]
					if !ok {
						c.exit = -1
					}
					c.n[i]++
					if v, err := strconv.Atoi(m.Actor.Attributes["exitCode"]); err == nil && m.Action == events.ActionDie {
						c.exit = int16(v)
					}
					e.n[m.Actor.ID] = c
					e.mu.Unlock()
				}
			case err := <-errs:
				if ctx.Err() == nil {
					t.Errorf("the test's own subscription to the engine's events ended: %v", err)
				}
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// mapDiff describes how got differs from want, "" when equal.
// modelEngines says which engines the model holds, connected or not, with
// their containers, and whether the engine under test is among them: when the
// model lost containers, whether their engine went with them.
func modelEngines(st *model.Store, id string) string {
	snap := st.Snapshot()
	var d []string
	found := false
	for _, e := range snap.Engines {
		found = found || e.ID == id
		d = append(d, fmt.Sprintf("%s %s at %s (pid %d, connected %v): %d containers",
			e.Type, e.ID, e.Endpoint, e.PID, e.Connected, len(st.EngineContainers(e.ID))))
	}
	return fmt.Sprintf("the engine under test %s is in the model: %v; the model's engines: %s", id, found, strings.Join(d, "; "))
}

func mapDiff(want, got map[string]string) string {
	var d []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("%.12s missing (engine: %s)", k, v))
		} else if g != v {
			d = append(d, fmt.Sprintf("%.12s %s in the model, %s at the engine", k, g, v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%.12s %s in the model, gone at the engine", k, v))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}
