package watch

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/containerd"
	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// watchedEngine is one engine and the adapter a shared-store test watches it through.
type watchedEngine struct {
	engine  model.Engine
	adapter engine.Adapter
}

// startSharedWatchers runs one Watcher per engine, all writing to one Store
// (every engine is put into the Store before any watcher starts), and records
// the events that keep accepts. The harness's w is the first watcher; the
// returned slice has them all, in the order given. Every watcher has
// completed its first list when it returns.
func startSharedWatchers(t *testing.T, label string, keep func(model.Event) bool, opts Options, engines ...watchedEngine) (*harness, []*Watcher) {
	t.Helper()
	log := testLogger(t)
	h := &harness{t: t, store: model.NewStore(log), label: label}
	for _, we := range engines {
		h.store.PutEngine(we.engine)
	}
	sub := h.store.Subscribe(100000)
	ws := make([]*Watcher, len(engines))
	for i, we := range engines {
		ws[i] = NewWatcher(we.engine, we.adapter, h.store, opts, log)
	}
	h.w = ws[0]
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Run(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-sub.C():
				if ev.Container != nil && keep(ev) {
					h.mu.Lock()
					h.events = append(h.events, ev)
					h.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		sub.Close()
		for _, we := range engines {
			if c, ok := we.adapter.(interface{ Close() error }); ok {
				_ = c.Close()
			}
		}
		if d := sub.Dropped(); d != 0 {
			t.Errorf("test subscriber dropped %d events", d)
		}
	})
	for _, w := range ws {
		eventually(t, 60*time.Second, "watcher of "+w.engine.ID+" completes its first list", func() bool { return w.Stats().Syncs >= 1 })
	}
	return h, ws
}

// recorded returns every event recorded so far that concerns container id.
func (h *harness) recorded(id string) []model.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []model.Event
	for _, ev := range h.events {
		if ev.Container.ID == id {
			out = append(out, ev)
		}
	}
	return out
}

// snapshotCopies returns the entries of store.Snapshot().Containers with ID id.
func snapshotCopies(store *model.Store, id string) []model.Container {
	var out []model.Container
	for _, c := range store.Snapshot().Containers {
		if c.ID == id {
			out = append(out, c)
		}
	}
	return out
}

// snapshotContainer returns the container with key k from a fresh Snapshot.
func snapshotContainer(store *model.Store, k model.ContainerKey) (model.Container, bool) {
	for _, c := range store.Snapshot().Containers {
		if c.Key() == k {
			return c, true
		}
	}
	return model.Container{}, false
}

// ctrTaskPID returns the PID that `ctr tasks ls` reports for container id of
// namespace ns, and its status.
func ctrTaskPID(t *testing.T, ns, id string) (int, string) {
	t.Helper()
	return ctrTaskPIDWith(t, []string{"ctr"}, ns, id)
}

// ctrTaskPIDWith is ctrTaskPID with the ctr command line ctr (the binary and
// its --address).
func ctrTaskPIDWith(t *testing.T, ctr []string, ns, id string) (int, string) {
	t.Helper()
	for _, line := range strings.Split(testbed.Run(t, ctr[0], append(slices.Clone(ctr[1:]), "-n", ns, "tasks", "ls")...), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("ctr tasks ls: bad pid in %q", line)
			}
			return pid, f[2]
		}
	}
	return 0, ""
}

func newContainerdAdapter(t *testing.T, e model.Engine) *containerd.Adapter {
	t.Helper()
	a, err := containerd.New(e, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestContainerdWatcherLifecycle drives one container through its whole life
// with ctr, in a namespace of the test's own, and checks the exact events the
// Watcher emits and the Store's state after every step.
func TestContainerdWatcherLifecycle(t *testing.T) {
	testbed.Require(t, testbed.Containerd, testbed.Docker)
	enginetest.NoLeaks(t)
	ns := enginetest.ContainerdNamespace(t)
	containerdLifecycle(t, testbed.ContainerdSocket, []string{"ctr"}, ns)
}

// TestContainerdWatcherLifecycleOnTodaysEngines runs the lifecycle of
// TestContainerdWatcherLifecycle on containerd 2 with runc 1.5 (a private
// containerd of the test, driven by its own ctr).
func TestContainerdWatcherLifecycleOnTodaysEngines(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Engines2)
	ctrd := enginetest.StartPrivateContainerdFrom(t, testbed.Engines2Dir())
	ctr := []string{filepath.Join(testbed.Engines2Dir(), "ctr"), "--address", ctrd.Sock}
	if v := ctrd.CLI("version"); !strings.Contains(v, "Version:  v2.") {
		t.Fatalf("private containerd of the second engine set: %q, want version 2", v)
	}
	ns := "agentd-test-" + enginetest.Random(t)
	enginetest.ImportBusybox(t, ctrd.Sock, ns)
	containerdLifecycle(t, ctrd.Sock, ctr, ns)
}

// containerdLifecycle drives one container of namespace ns of the containerd
// at sock through its whole life with ctr (its command line up to the
// subcommand), and checks the exact events the Watcher emits and the
// Store's state after every step.
func containerdLifecycle(t *testing.T, sock string, ctr []string, ns string) {
	t.Helper()
	label := testLabel(t)
	e := model.Engine{ID: "containerd-watcher-" + enginetest.Random(t), Type: model.Containerd, Endpoint: sock}
	h := startWatcher(t, e, newContainerdAdapter(t, e), label, Options{})
	id := "lifecycle-" + enginetest.Random(t)
	key := model.ContainerKey{EngineID: e.ID, Namespace: ns, ID: id}
	var startPID int

	type want struct {
		gone  bool
		state model.ContainerState
		pid   bool // a live host PID, the one ctr reports
		exit  int
	}
	steps := []struct {
		name   string
		cmd    []string
		events []model.EventType
		want   want
	}{
		{"creating the container emits create", []string{"containers", "create", "--label", "agentd.test=" + label, enginetest.BusyboxRef, id, "/bin/sleep", "1000"},
			[]model.EventType{model.EventCreate}, want{state: model.StateCreated}},
		{"starting the task emits start with the task's PID", []string{"tasks", "start", "-d", id},
			[]model.EventType{model.EventStart}, want{state: model.StateRunning, pid: true}},
		{"pausing emits pause and keeps the PID", []string{"tasks", "pause", id},
			[]model.EventType{model.EventPause}, want{state: model.StatePaused, pid: true}},
		{"resuming emits unpause", []string{"tasks", "resume", id},
			[]model.EventType{model.EventUnpause}, want{state: model.StateRunning, pid: true}},
		{"killing emits die with exit code 137", []string{"tasks", "kill", "-s", "SIGKILL", id},
			[]model.EventType{model.EventDie}, want{state: model.StateExited, exit: 137}},
		{"deleting the task emits nothing and keeps the exit", []string{"tasks", "delete", id},
			nil, want{state: model.StateExited, exit: 137}},
		{"deleting the container emits destroy", []string{"containers", "delete", id},
			[]model.EventType{model.EventDestroy}, want{gone: true}},
	}
	for _, step := range steps {
		ok := t.Run(step.name, func(t *testing.T) {
			testbed.Run(t, ctr[0], append(append(slices.Clone(ctr[1:]), "-n", ns), step.cmd...)...)
			h.t = t
			evs := h.expect(step.events...)
			if len(step.events) == 0 {
				h.quiet(time.Second)
			}
			for _, ev := range evs {
				c := ev.Container
				if ev.Resync || ev.EngineID != e.ID || c.EngineID != e.ID || c.Namespace != ns || c.ID != id {
					t.Errorf("%s: resync %v engine %q container %s/%s/%s", ev.Type, ev.Resync, ev.EngineID, c.EngineID, c.Namespace, c.ID)
				}
				if ev.Time.IsZero() || time.Since(ev.Time) > time.Minute {
					t.Errorf("%s: time %s", ev.Type, ev.Time)
				}
				switch ev.Type {
				case model.EventDie:
					if ev.ExitCode != 137 || ev.Signal != "SIGKILL" || c.ExitCode != 137 || c.State != model.StateExited || c.PID != 0 {
						t.Errorf("die: exit %d signal %q, container exit %d state %s pid %d; want 137 SIGKILL exited 0",
							ev.ExitCode, ev.Signal, c.ExitCode, c.State, c.PID)
					}
				case model.EventStart:
					// Reported from the event; the PID follows.
					startPID = h.startedIn(ns, id).PID
				case model.EventDestroy:
					if c.State != model.StateExited || c.ExitCode != 137 {
						t.Errorf("destroy: container state %s exit %d, want the last known exited 137", c.State, c.ExitCode)
					}
				}
			}
			c, inStore := h.store.Container(key)
			sc, inSnap := snapshotContainer(h.store, key)
			if step.want.gone {
				if inStore || inSnap {
					t.Fatalf("deleted container still in the Store (%v) or the Snapshot (%v): %+v", inStore, inSnap, c)
				}
				return
			}
			if !inStore || !inSnap {
				t.Fatalf("container in the Store %v, in the Snapshot %v; want both", inStore, inSnap)
			}
			if fmt.Sprint(c) != fmt.Sprint(sc) {
				t.Fatalf("Snapshot %+v differs from Container %+v", sc, c)
			}
			if c.State != step.want.state || c.ExitCode != step.want.exit {
				t.Fatalf("state %s exit %d, want %s exit %d", c.State, c.ExitCode, step.want.state, step.want.exit)
			}
			if c.Namespace != ns || c.Name != id || c.Labels["agentd.test"] != label || c.ImageName != "docker.io/local/busybox" {
				t.Fatalf("identity: %+v", c)
			}
			if step.want.pid {
				pid, status := ctrTaskPIDWith(t, ctr, ns, id)
				if c.PID <= 0 || c.PID != pid || c.PID != startPID {
					t.Fatalf("pid %d, ctr says %d (%s), start event said %d", c.PID, pid, status, startPID)
				}
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.PID)); err != nil {
					t.Fatalf("pid %d is not a host process: %v", c.PID, err)
				}
				if c.StartedAt.IsZero() || time.Since(c.StartedAt) > time.Minute {
					t.Fatalf("started at %s", c.StartedAt)
				}
			} else if c.PID != 0 {
				t.Fatalf("pid %d for a %s container", c.PID, c.State)
			}
			if c.State == model.StateExited && c.FinishedAt.IsZero() {
				t.Fatal("exited container without exit time")
			}
		})
		if !ok {
			return
		}
	}
	h.t = t
	h.quiet(500 * time.Millisecond)
	if st := h.w.Stats(); st.Malformed != 0 || st.Reconnects != 0 || st.Syncs != 1 {
		t.Errorf("stats %+v: want no malformed event, no reconnect, one list", st)
	}
}

// unixProxy forwards connections from a unix socket of its own to target,
// byte for byte. Cut closes every connection and the listening socket (so new
// connections are refused), Resume listens again.
type unixProxy struct {
	path, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	cuts  int // connections closed by Cut
	wg    sync.WaitGroup
}

func startUnixProxy(t *testing.T, target string) *unixProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "agentd-proxy-")
	if err != nil {
		t.Fatal(err)
	}
	p := &unixProxy{path: filepath.Join(dir, "proxy.sock"), target: target, conns: map[net.Conn]struct{}{}}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
		_ = os.RemoveAll(dir)
	})
	return p
}

// Resume listens on the proxy's path again.
func (p *unixProxy) Resume() error {
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go p.serve(ln)
	return nil
}

// Cut closes the listener (removing the socket) and every open connection,
// and returns how many connections it closed.
func (p *unixProxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	n := len(p.conns) / 2
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
	p.cuts += n
	return n
}

func (p *unixProxy) serve(ln net.Listener) {
	defer p.wg.Done()
	for {
		down, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("unix", p.target)
		if err != nil {
			_ = down.Close()
			continue
		}
		p.mu.Lock()
		if p.ln != ln { // cut meanwhile
			p.mu.Unlock()
			_ = down.Close()
			_ = up.Close()
			continue
		}
		p.conns[down], p.conns[up] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(up, down)
		go p.pipe(down, up)
	}
}

func (p *unixProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// TestContainerdWatcherResyncAfterLostConnection cuts the Watcher's connection
// to containerd (through a proxy), kills one of two running containers while
// it is cut, and checks that the reconnected Watcher's resync emits exactly
// one die for the killed container and nothing else.
func TestContainerdWatcherResyncAfterLostConnection(t *testing.T) {
	testbed.Require(t, testbed.Containerd, testbed.Docker)
	enginetest.NoLeaks(t)
	ns := enginetest.ContainerdNamespace(t)
	label := testLabel(t)
	proxy := startUnixProxy(t, testbed.ContainerdSocket)
	e := model.Engine{ID: "containerd-resync-" + enginetest.Random(t), Type: model.Containerd, Endpoint: proxy.path}
	h := startWatcher(t, e, newContainerdAdapter(t, e), label, Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})

	killed, kept := "killed-"+enginetest.Random(t), "kept-"+enginetest.Random(t)
	for _, id := range []string{killed, kept} {
		testbed.Run(t, "ctr", "-n", ns, "containers", "create", "--label", "agentd.test="+label, enginetest.BusyboxRef, id, "/bin/sleep", "1000")
		testbed.Run(t, "ctr", "-n", ns, "tasks", "start", "-d", id)
		h.expect(model.EventCreate, model.EventStart)
	}
	keptBefore := h.startedIn(ns, kept)
	if keptBefore.State != model.StateRunning || keptBefore.PID <= 0 {
		t.Fatalf("kept container before the cut: %+v", keptBefore)
	}

	if n := proxy.Cut(); n == 0 {
		t.Fatal("the proxy had no connection to cut")
	}
	eventually(t, 30*time.Second, "the watcher notices the lost connection", func() bool { return h.w.Stats().Reconnects >= 1 })
	syncs := h.w.Stats().Syncs
	testbed.Run(t, "ctr", "-n", ns, "tasks", "kill", "-s", "KILL", killed)
	eventually(t, 30*time.Second, "the killed task stops", func() bool {
		_, status := ctrTaskPID(t, ns, killed)
		return status == "STOPPED"
	})
	time.Sleep(time.Second) // several failed reconnects while cut
	if got := h.w.Stats().Syncs; got != syncs {
		t.Fatalf("the watcher listed %d times while cut off", got-syncs)
	}
	h.quiet(0)
	if err := proxy.Resume(); err != nil {
		t.Fatal(err)
	}
	h.waitSyncs(syncs + 1)

	die := h.expect(model.EventDie)[0]
	c := die.Container
	if !die.Resync || die.ExitCode != 137 || die.Signal != "SIGKILL" || c.ID != killed || c.Namespace != ns ||
		c.State != model.StateExited || c.ExitCode != 137 || c.PID != 0 || die.EngineID != e.ID {
		t.Errorf("die: %s of %s/%s, signal %q, container state %s exit %d pid %d; want a resync die of %s with 137",
			describe([]model.Event{die}), c.Namespace, c.ID, die.Signal, c.State, c.ExitCode, c.PID, killed)
	}
	h.quiet(3 * time.Second)

	k, ok := h.store.Container(model.ContainerKey{EngineID: e.ID, Namespace: ns, ID: killed})
	if !ok || k.State != model.StateExited || k.ExitCode != 137 || k.PID != 0 || k.FinishedAt.IsZero() {
		t.Errorf("killed container in the Store: %+v (found %v), want exited 137", k, ok)
	}
	kp, ok := h.store.Container(model.ContainerKey{EngineID: e.ID, Namespace: ns, ID: kept})
	pid, status := ctrTaskPID(t, ns, kept)
	if !ok || kp.State != model.StateRunning || kp.PID != keptBefore.PID || kp.PID != pid || !kp.StartedAt.Equal(keptBefore.StartedAt) {
		t.Errorf("kept container in the Store: %+v (found %v), want running with pid %d (ctr: %d %s) started at %s",
			kp, ok, keptBefore.PID, pid, status, keptBefore.StartedAt)
	}
	if got := snapshotCopies(h.store, killed); len(got) != 1 || got[0].State != model.StateExited {
		t.Errorf("Snapshot has %d entries for the killed container: %+v", len(got), got)
	}
	st := h.w.Stats()
	t.Logf("watcher stats after the resync: %+v; proxy cut %d connection(s)", st, proxy.cuts)
	if st.Syncs != syncs+1 {
		t.Errorf("%d lists after the reconnect, want 1", st.Syncs-syncs)
	}
}

// TestDedupDockerAndContainerd watches the host Docker and the host
// containerd (which runs Docker's containers in namespace moby) into one
// Store: a Docker container must appear once, under Docker, in every Snapshot
// and in the events, during its whole life.
func TestDedupDockerAndContainerd(t *testing.T) {
	testbed.Require(t, testbed.Docker, testbed.Containerd)
	enginetest.NoLeaks(t)
	de, da := hostDocker(t)
	dedupDockerAndContainerd(t, de, da, []string{"docker"}, testbed.ContainerdSocket)
}

// TestDedupDockerAndContainerdOnTodaysEngines is TestDedupDockerAndContainerd
// on the Docker 29 line's daemon and its containerd 2, which keeps Docker's
// images as well as its containers in the moby namespace.
func TestDedupDockerAndContainerdOnTodaysEngines(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Engines2)
	ctrd := enginetest.StartPrivateContainerdFrom(t, testbed.Engines2Dir())
	d := enginetest.StartPrivateDockerdFrom(t, testbed.Engines2Dir(), ctrd.Sock)
	de := model.Engine{Type: model.Docker, Endpoint: d.Sock}
	da, err := docker.NewAdapter(de, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	dedupDockerAndContainerd(t, de, da, []string{"docker", "-H", "unix://" + d.Sock}, ctrd.Sock)
}

// dedupDockerAndContainerd runs a Docker container (cli: the docker command
// line up to the subcommand) through its life with watchers of the Docker
// engine de and of its containerd at ctrdSock in one Store, and checks that
// the container is reported once, by Docker.
func dedupDockerAndContainerd(t *testing.T, de model.Engine, da engine.Adapter, cli []string, ctrdSock string) {
	t.Helper()
	label := testLabel(t)
	r := enginetest.Random(t)
	de.ID = "docker-dedup-" + r
	ce := model.Engine{ID: "containerd-dedup-" + r, Type: model.Containerd, Endpoint: ctrdSock}
	docker := func(args ...string) string { return testbed.Run(t, cli[0], append(slices.Clone(cli[1:]), args...)...) }
	// Docker's containerd containers carry none of Docker's labels: record
	// every event and pick the container's by ID.
	h, _ := startSharedWatchers(t, label, func(model.Event) bool { return true }, Options{},
		watchedEngine{de, da}, watchedEngine{ce, newContainerdAdapter(t, ce)})

	id := docker("run", "-d", "--network", "none", "--label", "agentd.test="+label, testbed.BusyboxImage, "sleep", "1000")
	t.Cleanup(func() { _ = exec.Command(cli[0], append(slices.Clone(cli[1:]), "rm", "-f", id)...).Run() })
	dockerKey := model.ContainerKey{EngineID: de.ID, ID: id}
	ctrdKey := model.ContainerKey{EngineID: ce.ID, Namespace: model.NamespaceMoby, ID: id}
	eventually(t, 30*time.Second, "both watchers have the running container", func() bool {
		d, okD := h.store.Container(dockerKey)
		c, okC := h.store.Container(ctrdKey)
		// A start is reported from its event; the PID follows.
		return okD && okC && d.State == model.StateRunning && c.State == model.StateRunning && d.PID > 0 && c.PID > 0
	})
	checkOnce := func(t *testing.T, state model.ContainerState) {
		t.Helper()
		got := snapshotCopies(h.store, id)
		if len(got) != 1 || got[0].EngineID != de.ID || got[0].Namespace != "" || got[0].State != state {
			t.Fatalf("Snapshot entries for the container: %+v; want one from %s, %s", got, de.ID, state)
		}
	}
	t.Run("a running container is in the Snapshot once, under Docker", func(t *testing.T) {
		checkOnce(t, model.StateRunning)
		c, _ := h.store.Container(ctrdKey)
		d, _ := h.store.Container(dockerKey)
		if c.PID != d.PID || c.PID <= 0 {
			t.Fatalf("pid: containerd %d, Docker %d; want the same host PID", c.PID, d.PID)
		}
	})

	docker("stop", "-t", "0", id)
	eventually(t, 30*time.Second, "both watchers see the container exit", func() bool {
		d, _ := h.store.Container(dockerKey)
		c, okC := h.store.Container(ctrdKey)
		// dockerd deletes its containerd container once the task exited.
		return d.State == model.StateExited && (!okC || c.State == model.StateExited)
	})
	t.Run("a stopped container is in the Snapshot once, under Docker", func(t *testing.T) {
		checkOnce(t, model.StateExited)
	})

	docker("rm", id)
	eventually(t, 30*time.Second, "both watchers forget the container", func() bool {
		_, okD := h.store.Container(dockerKey)
		_, okC := h.store.Container(ctrdKey)
		return !okD && !okC
	})
	time.Sleep(time.Second)
	t.Run("only Docker's events are emitted", func(t *testing.T) {
		if got := snapshotCopies(h.store, id); len(got) != 0 {
			t.Fatalf("removed container still in the Snapshot: %+v", got)
		}
		evs := h.recorded(id)
		var fromDocker []model.EventType
		for _, ev := range evs {
			if ev.EngineID != de.ID || ev.Container.EngineID != de.ID {
				t.Errorf("event %s from engine %s (container %s/%s)", ev.Type, ev.EngineID, ev.Container.EngineID, ev.Container.Namespace)
				continue
			}
			fromDocker = append(fromDocker, ev.Type)
		}
		// Docker 20.10 tells the die first, the Docker 29 line the stop.
		want := []model.EventType{model.EventCreate, model.EventStart, model.EventDie, model.EventStop, model.EventDestroy}
		stopFirst := []model.EventType{model.EventCreate, model.EventStart, model.EventStop, model.EventDie, model.EventDestroy}
		if !slices.Equal(fromDocker, want) && !slices.Equal(fromDocker, stopFirst) {
			t.Errorf("Docker events %v, want %v (the stop and the die in either order)", fromDocker, want)
		}
	})
}

// TestContainerdInspectManyAnswersForTheBatch proves against the real
// containerd that one InspectMany answers for several containers of a
// namespace, created and started, and leaves out the one that is not there.
func TestContainerdInspectManyAnswersForTheBatch(t *testing.T) {
	testbed.Require(t, testbed.Containerd)
	ns := enginetest.ContainerdNamespace(t)
	e := model.Engine{ID: "containerd-many-" + enginetest.Random(t), Type: model.Containerd, Endpoint: testbed.ContainerdSocket}
	a := newContainerdAdapter(t, e)
	t.Cleanup(func() { _ = a.Close() })
	created, started := "created-"+enginetest.Random(t), "started-"+enginetest.Random(t)
	for _, id := range []string{created, started} {
		testbed.Run(t, "ctr", "-n", ns, "containers", "create", "--label", "agentd.test=many", enginetest.BusyboxRef, id, "/bin/sleep", "1000")
	}
	testbed.Run(t, "ctr", "-n", ns, "tasks", "start", "-d", started)
	ids := []string{ns + "/" + created, ns + "/" + started, ns + "/gone-" + enginetest.Random(t)}
	got, err := a.InspectMany(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d containers for %q, want the two that exist: %+v", len(got), ids, got)
	}
	if c := got[ids[0]]; c.ID != created || c.State != model.StateCreated || c.PID != 0 || c.Labels["agentd.test"] != "many" || c.CgroupPath == "" {
		t.Errorf("the created container: %+v", c)
	}
	pid, _ := ctrTaskPID(t, ns, started)
	if c := got[ids[1]]; c.ID != started || c.State != model.StateRunning || c.PID != pid || c.ImageID == "" {
		t.Errorf("the started container (ctr says pid %d): %+v", pid, c)
	}
}
