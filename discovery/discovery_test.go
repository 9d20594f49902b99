package discovery

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/podman"
	"github.com/agentd-dev/agentd/model"
)

func TestListeningSockets(t *testing.T) {
	root := t.TempDir()
	writeFakeProc(t, root, []fakeProc{{
		pid: 100, ppid: 1, comm: "containerd", start: 10,
		fds: map[int]string{
			3: "socket:[11]", 4: "socket:[12]", 5: "socket:[13]", 6: "socket:[14]",
			7: "socket:[15]", 8: "socket:[16]", 9: "socket:[17]", 10: "pipe:[18]",
			11: "/dev/null", 12: "socket:[19]", 13: "anon_inode:[eventpoll]",
		},
		netUnix: unixRow(11, "/run/containerd/containerd.sock") +
			"0000000000000000:  00000002  00000000  00010000  0001  01  12  /run/with two  spaces.sock\n" +
			unixRow(13, "@/containerd-shim/abstract.sock") +
			unixRow(14, "/run/containerd/containerd.sock.ttrpc") +
			unixRow(15, "/run/containerd/debug.sock") +
			unixRow(16, "/run/containerd/metrics.sock") +
			unixRow(17, "relative.sock") +
			unixRow(99, "/run/someone-else.sock") +
			"0000000000000000: 00000003 00000000 00000000 0001 03 19 /run/containerd/containerd.sock\n",
	}})
	p := NewProcFS(root)
	must(t, p.Refresh(nil))
	got, err := p.ListeningSockets(100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/run/containerd/containerd.sock", "/run/with two  spaces.sock"}
	if !slices.Equal(got, want) {
		t.Fatalf("ListeningSockets = %q, want %q", got, want)
	}
}

func TestProcFSVanishedProcesses(t *testing.T) {
	root := t.TempDir()
	writeFakeProc(t, root, []fakeProc{
		{pid: 1, comm: "init", start: 1},
		{pid: 7, ppid: 1, comm: "podman", start: 5, noDetail: true},
	})
	must(t, os.MkdirAll(filepath.Join(root, "8"), 0o755)) // exited before its stat was read
	must(t, os.MkdirAll(filepath.Join(root, "self"), 0o755))
	p := NewProcFS(root)
	var seen []int
	must(t, p.Refresh(func(pid int, _ []byte) { seen = append(seen, pid) }))
	slices.Sort(seen)
	if !slices.Equal(seen, []int{1, 7}) {
		t.Fatalf("Refresh saw %v, want [1 7]", seen)
	}
	t.Run("a process gone between stat and status is ErrVanished", func(t *testing.T) {
		if _, err := p.Process(7); !errors.Is(err, ErrVanished) {
			t.Fatalf("Process(7) error = %v, want ErrVanished", err)
		}
	})
	t.Run("a process the table does not hold is ErrVanished", func(t *testing.T) {
		if _, err := p.Process(8); !errors.Is(err, ErrVanished) {
			t.Fatalf("Process(8) error = %v, want ErrVanished", err)
		}
	})
	t.Run("its fd directory is ErrVanished too", func(t *testing.T) {
		if _, err := p.ListeningSockets(7); !errors.Is(err, ErrVanished) {
			t.Fatalf("ListeningSockets(7) error = %v, want ErrVanished", err)
		}
	})
	t.Run("a removed process leaves the table on the next refresh", func(t *testing.T) {
		must(t, os.RemoveAll(filepath.Join(root, "7")))
		must(t, p.Refresh(nil))
		if _, _, _, ok := p.Lookup(7); ok || p.Len() != 1 {
			t.Fatalf("process 7 still in a table of %d", p.Len())
		}
	})
}

// nestedTree is a host with a Docker container "th" (init 201, PID namespace 2)
// running podman (250, PID 30 inside th), whose container "inner" (init 501,
// PID 41 in th's namespace, namespace 3) runs a dockerd; a one-off podman
// command; a dockerd without sockets; and a dockerd that exits mid-scan.
func nestedTree() []fakeProc {
	return []fakeProc{
		{pid: 1, comm: "init", start: 1, cmdline: []string{"/sbin/init"},
			sockets: []string{"/run/docker.sock"}, links: map[string]string{"/var/run": "/run"}},
		{pid: 100, ppid: 1, comm: "dockerd", start: 10, cmdline: []string{"dockerd"},
			fds:     map[int]string{3: "socket:[11]", 4: "socket:[12]"},
			netUnix: unixRow(11, "/var/run/docker.sock") + unixRow(12, "/var/run/docker/metrics.sock")},
		{pid: 200, ppid: 1, comm: "containerd-shim", start: 20},
		{pid: 201, ppid: 200, comm: "systemd", start: 21, nspid: []int{201, 1}, pidns: 2, mntns: 2},
		{pid: 250, ppid: 201, comm: "podman", start: 25, nspid: []int{250, 30}, pidns: 2, mntns: 2,
			cmdline: []string{"/usr/bin/podman", "--log-level=info", "system", "service"},
			fds:     map[int]string{3: "socket:[21]"}, netUnix: unixRow(21, "/run/podman/podman.sock")},
		{pid: 201, comm: "-", start: 21}, // placeholder replaced below
		{pid: 500, ppid: 201, comm: "conmon", start: 50, nspid: []int{500, 40}, pidns: 2, mntns: 2},
		{pid: 501, ppid: 500, comm: "sh", start: 51, nspid: []int{501, 41, 1}, pidns: 3, mntns: 3},
		{pid: 502, ppid: 501, comm: "dockerd", start: 52, nspid: []int{502, 42, 5}, pidns: 3, mntns: 3,
			cmdline: []string{"dockerd"}, fds: map[int]string{3: "socket:[31]"}, netUnix: unixRow(31, "/run/docker.sock")},
		{pid: 600, ppid: 1, comm: "dockerd", start: 60, cmdline: []string{"dockerd", "--no-sockets"}},
		{pid: 700, ppid: 1, comm: "podman", start: 70, cmdline: []string{"podman", "run", "busybox"}},
		{pid: 800, ppid: 1, comm: "crio", start: 80, noDetail: true},
	}
}

// writeNestedTree writes nestedTree, with the socket files of each process in
// the root of the outermost process of its mount namespace (init's for the
// host's: a fake tree has no /proc/self to tell the reader's namespace).
func writeNestedTree(t testing.TB, root string) {
	var procs []fakeProc
	for _, p := range nestedTree() {
		if p.comm == "-" {
			continue
		}
		procs = append(procs, p)
	}
	writeFakeProc(t, root, procs)
	for pid, sock := range map[string]string{"201": "/run/podman/podman.sock", "501": "/run/docker.sock"} {
		path := filepath.Join(root, pid, "root", sock)
		must(t, os.MkdirAll(filepath.Dir(path), 0o755))
		must(t, mknodSocket(path))
	}
}

// nestedModel is the workload model of nestedTree (written under root) as
// the watchers keep it, engines named by the fake families: th's init is host
// PID 201 (podman's ancestor), inner's 501 (the inner dockerd's parent);
// other and deep hold no engine, and a stopped container holds nothing.
func nestedModel(root string) *fakeModel {
	fm := &fakeModel{}
	fm.set("docker:"+filepath.Join(root, "1/root/run/docker.sock"), running("c-th", "th", 201),
		running("c-other", "other", 9999), model.Container{ID: "c-stopped", Name: "stopped", State: model.StateExited})
	fm.set("podman:"+filepath.Join(root, "201/root/run/podman/podman.sock"), running("c-inner", "inner", 501))
	fm.set("docker:"+filepath.Join(root, "501/root/run/docker.sock"), running("c-deep", "deep", 9998))
	return fm
}

func mknodSocket(path string) error {
	return syscall.Mknod(path, syscall.S_IFSOCK|0o600, 0)
}

// fakeEngines stands in for the engine families: every family's probe answers
// on any socket with one engine named after its type and the endpoint, and
// counts its calls.
type fakeEngines struct {
	mu     sync.Mutex
	probes map[string]int // endpoint -> probe calls
}

func newFakeEngines() *fakeEngines {
	return &fakeEngines{probes: map[string]int{}}
}

func (f *fakeEngines) probe(typ model.EngineType) func(context.Context, string) ([]model.Engine, error) {
	return func(_ context.Context, endpoint string) ([]model.Engine, error) {
		f.mu.Lock()
		f.probes[endpoint]++
		f.mu.Unlock()
		return []model.Engine{{ID: string(typ) + ":" + endpoint, Type: typ, Version: "1", Endpoint: endpoint}}, nil
	}
}

// families returns fake families shaped like agentd's real list: the same
// order, process names and podman's command-line rule, with counting probes
// and no adapters.
func (f *fakeEngines) families() engine.Families {
	fam := func(name string, typ model.EngineType, comms ...string) engine.Family {
		return engine.Family{Name: name, Types: []model.EngineType{typ}, Comms: comms, Probe: f.probe(typ)}
	}
	pm := fam("podman", model.Podman, "podman")
	pm.Match = podman.IsService
	return engine.Families{pm, fam("docker", model.Docker, "dockerd"),
		fam("containerd", model.Containerd, "containerd"), fam("cri", model.CRI, "containerd", "crio")}
}

func (f *fakeEngines) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.probes {
		n += c
	}
	return n
}

// fakeModel stands in for the workload model: each engine's containers as
// its watcher would have stored them, init PIDs on the host.
type fakeModel struct {
	mu       sync.Mutex
	byEngine map[string][]model.Container
}

var _ Containers = (*fakeModel)(nil)

func (m *fakeModel) EngineInits(engineID string, buf []model.Init) ([]model.Init, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.byEngine[engineID] {
		if c.PID > 0 && c.State.Running() {
			buf = append(buf, model.Init{ContainerID: c.ID, Name: c.Name, PID: c.PID})
		}
	}
	return buf, len(m.byEngine[engineID])
}

// engineContainers returns a copy of the containers of the engine with this ID.
func (m *fakeModel) engineContainers(engineID string) []model.Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.byEngine[engineID])
}

// set replaces the containers of engine id.
func (m *fakeModel) set(id string, cs ...model.Container) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byEngine == nil {
		m.byEngine = map[string][]model.Container{}
	}
	m.byEngine[id] = cs
}

// running is a running container whose init process has host PID pid.
func running(id, name string, pid int) model.Container {
	return model.Container{ID: id, Name: name, PID: pid, State: model.StateRunning}
}

// newFakeDiscoverer returns a Discoverer over a fake procfs with fe's
// families and containers as its model (nil: none), a controllable clock and
// a captured log.
func newFakeDiscoverer(t testing.TB, root string, fe *fakeEngines, containers Containers) (*Discoverer, *time.Time, *bytes.Buffer) {
	t.Helper()
	var logBuf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logBuf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := New(Config{ProcRoot: root, RetryBackoff: time.Minute}, fe.families(), containers, log)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	d.now = func() time.Time { return now }
	return d, &now, &logBuf
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestDiscovererOnFakeTree(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	hostDocker := filepath.Join(root, "1/root/run/docker.sock")
	podman := filepath.Join(root, "201/root/run/podman/podman.sock")
	innerDocker := filepath.Join(root, "501/root/run/docker.sock")
	fe := newFakeEngines()
	d, now, _ := newFakeDiscoverer(t, root, fe, nestedModel(root))
	sub := d.Subscribe()
	defer sub.Close()
	ctx := context.Background()

	engines, err := d.Scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]model.Engine{}
	for _, e := range engines {
		byID[e.ID] = e
	}
	want := []model.Engine{
		{ID: "docker:" + hostDocker, Type: model.Docker, Version: "1", Endpoint: hostDocker, PID: 100},
		{ID: "podman:" + podman, Type: model.Podman, Version: "1", Endpoint: podman, PID: 250,
			Prefix: "th", ParentContainerID: "c-th", ParentEngineID: "docker:" + hostDocker},
		{ID: "docker:" + innerDocker, Type: model.Docker, Version: "1", Endpoint: innerDocker, PID: 502,
			Prefix: "th/inner", ParentContainerID: "c-inner", ParentEngineID: "podman:" + podman},
	}
	t.Run("the engines and their two-level hierarchy are found", func(t *testing.T) {
		if len(engines) != len(want) {
			t.Fatalf("found %d engines %+v, want %d", len(engines), engines, len(want))
		}
		for _, w := range want {
			if got := byID[w.ID]; got != w {
				t.Errorf("engine %s:\n got  %+v\n want %+v", w.ID, got, w)
			}
		}
	})
	t.Run("subscribers hear one found change per engine", func(t *testing.T) {
		for range want {
			c := nextChange(t, sub)
			if c.Kind != EngineFound {
				t.Fatalf("change %+v, want found", c)
			}
		}
	})
	probesAfterFirst := fe.calls()
	t.Run("a rescan probes nothing already probed nor in backoff", func(t *testing.T) {
		if _, err := d.Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if got := fe.calls(); got != probesAfterFirst {
			t.Fatalf("probe calls %d after rescan, want %d", got, probesAfterFirst)
		}
		if len(sub.C()) != 0 {
			t.Fatalf("a rescan without changes published %d changes", len(sub.C()))
		}
	})
	t.Run("a failed process is retried once its backoff has passed", func(t *testing.T) {
		// Process 600 has no socket and counts as failed: give it one.
		must(t, os.RemoveAll(filepath.Join(root, "600")))
		writeFakeProc(t, root, []fakeProc{{pid: 600, ppid: 1, comm: "dockerd", start: 60,
			cmdline: []string{"dockerd"}, fds: map[int]string{3: "socket:[61]"},
			netUnix: unixRow(61, "/run/late.sock")}})
		must(t, mknodSocket(filepath.Join(root, "1/root/run/late.sock")))
		if _, err := d.Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if got := fe.calls(); got != probesAfterFirst {
			t.Fatalf("probed during backoff: %d calls, want %d", got, probesAfterFirst)
		}
		*now = now.Add(2 * time.Minute)
		es, _ := d.Scan(ctx)
		if got := fe.calls(); got != probesAfterFirst+1 {
			t.Fatalf("probe calls %d after backoff, want %d", got, probesAfterFirst+1)
		}
		if len(es) != 4 {
			t.Fatalf("%d engines after the retry, want 4", len(es))
		}
		if c := nextChange(t, sub); c.Kind != EngineFound || c.Engine.PID != 600 {
			t.Fatalf("change %+v, want found for PID 600", c)
		}
	})
	t.Run("an engine whose process exits stays known, without a PID, for the grace period", func(t *testing.T) {
		must(t, os.RemoveAll(filepath.Join(root, "502")))
		es, _ := d.Scan(ctx)
		if len(es) != 4 {
			t.Fatalf("%d engines, want 4", len(es))
		}
		c := nextChange(t, sub)
		if c.Kind != EngineUpdated || c.Engine.ID != "docker:"+innerDocker || c.Engine.PID != 0 {
			t.Fatalf("change %+v, want the inner docker updated to PID 0", c)
		}
	})
	t.Run("and is lost when the grace period is over", func(t *testing.T) {
		*now = now.Add(5*time.Minute + time.Second)
		es, _ := d.Scan(ctx)
		if len(es) != 3 {
			t.Fatalf("%d engines, want 3", len(es))
		}
		c := nextChange(t, sub)
		if c.Kind != EngineLost || c.Engine.ID != "docker:"+innerDocker || c.Engine.Prefix != "th/inner" {
			t.Fatalf("change %+v, want the inner docker lost", c)
		}
	})
	late := filepath.Join(root, "1/root/run/late.sock")
	t.Run("a reused PID is a new process and is probed again", func(t *testing.T) {
		must(t, os.RemoveAll(filepath.Join(root, "600")))
		writeFakeProc(t, root, []fakeProc{{pid: 600, ppid: 1, comm: "dockerd", start: 61,
			cmdline: []string{"dockerd"}, fds: map[int]string{3: "socket:[62]"},
			netUnix: unixRow(62, "/run/late2.sock")}})
		must(t, mknodSocket(filepath.Join(root, "1/root/run/late2.sock")))
		before := fe.calls()
		d.Scan(ctx)
		if fe.calls() != before+1 {
			t.Fatalf("probe calls %d, want %d", fe.calls(), before+1)
		}
		got := map[ChangeKind]string{}
		for range 2 {
			c := nextChange(t, sub)
			got[c.Kind] = c.Engine.Endpoint
		}
		if got[EngineFound] != filepath.Join(root, "1/root/run/late2.sock") || got[EngineUpdated] != late {
			t.Fatalf("changes %v, want late2 found and late (its process gone) updated", got)
		}
	})
	t.Run("an engine back within the grace period under a new PID is the same engine", func(t *testing.T) {
		writeFakeProc(t, root, []fakeProc{{pid: 610, ppid: 1, comm: "dockerd", start: 70,
			cmdline: []string{"dockerd"}, fds: map[int]string{3: "socket:[63]"},
			netUnix: unixRow(63, "/run/late.sock")}})
		*now = now.Add(time.Minute)
		es, _ := d.Scan(ctx)
		c := nextChange(t, sub)
		if c.Kind != EngineUpdated || c.Engine.Endpoint != late || c.Engine.PID != 610 {
			t.Fatalf("change %+v, want late updated to PID 610", c)
		}
		if len(es) != 4 || len(sub.C()) != 0 {
			t.Fatalf("%d engines and %d more changes, want 4 and none", len(es), len(sub.C()))
		}
	})
	if sub.Dropped() != 0 {
		t.Fatalf("dropped %d changes", sub.Dropped())
	}
}

func TestSubscribersNeverBlock(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	d, _, _ := newFakeDiscoverer(t, root, newFakeEngines(), nil)
	d.cfg.SubscriberBuffer = 1
	sub := d.Subscribe()
	defer sub.Close()
	if _, err := d.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sub.C()) != 1 || sub.Dropped() != 2 {
		t.Fatalf("buffered %d, dropped %d; want 1 and 2", len(sub.C()), sub.Dropped())
	}
}

func TestUnreadableFDDirectoryIsReportedOncePerProcess(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	d, now, logBuf := newFakeDiscoverer(t, root, newFakeEngines(), nil)
	fdDir := filepath.Join(root, "100", "fd")
	d.procs.open = func(name string) (*os.File, error) {
		if name == fdDir {
			return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
		}
		return os.Open(name)
	}
	const msg = "cannot read the fd directory"
	for i := 0; i < 4; i++ {
		if _, err := d.Scan(context.Background()); err != nil {
			t.Fatal(err)
		}
		*now = now.Add(time.Hour) // past any backoff: the process is retried every scan
	}
	if n := strings.Count(logBuf.String(), msg); n != 1 {
		t.Fatalf("warned %d times over 4 scans, want once:\n%s", n, logBuf.String())
	}
	t.Run("a new process under the same PID is reported again", func(t *testing.T) {
		must(t, os.RemoveAll(filepath.Join(root, "100")))
		writeFakeProc(t, root, []fakeProc{{pid: 100, ppid: 1, comm: "dockerd", start: 11, cmdline: []string{"dockerd"}}})
		d.Scan(context.Background())
		d.Scan(context.Background())
		if n := strings.Count(logBuf.String(), msg); n != 2 {
			t.Fatalf("warned %d times, want 2", n)
		}
	})
}

func TestAddKeepsAnEngineWhoseProcessIsGone(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	d, _, _ := newFakeDiscoverer(t, root, newFakeEngines(), nestedModel(root))
	ctx := context.Background()
	d.Scan(ctx)
	podman := filepath.Join(root, "201/root/run/podman/podman.sock")
	// Stand in for Add (whose probe activates the service) by marking what
	// the scan already found as added.
	d.mu.Lock()
	r := d.engines["podman:"+podman]
	r.added, r.e.Unit = true, "podman.socket"
	d.mu.Unlock()
	sub := d.Subscribe()
	defer sub.Close()
	must(t, os.RemoveAll(filepath.Join(root, "250")))
	es, _ := d.Scan(ctx)
	var got *model.Engine
	for i := range es {
		if es[i].ID == "podman:"+podman {
			got = &es[i]
		}
	}
	if got == nil || got.PID != 0 || got.Unit != "podman.socket" || got.Prefix != "th" {
		t.Fatalf("engine after its process exited = %+v, want kept with PID 0 under th", got)
	}
	if c := nextChange(t, sub); c.Kind != EngineUpdated {
		t.Fatalf("change %+v, want updated", c)
	}
	d.Remove(podman)
	if c := nextChange(t, sub); c.Kind != EngineLost {
		t.Fatalf("change %+v after Remove, want lost", c)
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	d, _, _ := newFakeDiscoverer(t, root, newFakeEngines(), nil)
	if err := d.SetInterval(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if len(d.Engines()) != 3 {
		t.Fatalf("%d engines, want 3", len(d.Engines()))
	}
}

func TestDetectorsGroupFamiliesByProcessName(t *testing.T) {
	fams := newFakeEngines().families()
	got := map[string][]string{}
	var comms []string
	for _, det := range detectors(fams) {
		comms = append(comms, det.comm)
		for _, f := range det.fams {
			got[det.comm] = append(got[det.comm], f.Name)
		}
	}
	if want := []string{"podman", "dockerd", "containerd", "crio"}; !slices.Equal(comms, want) {
		t.Fatalf("detectors for %q, want %q in the families' order", comms, want)
	}
	if want := []string{"containerd", "cri"}; !slices.Equal(got["containerd"], want) {
		t.Errorf("containerd processes asked by %q, want %q", got["containerd"], want)
	}
	if want := []string{"cri"}; !slices.Equal(got["crio"], want) {
		t.Errorf("crio processes asked by %q, want %q", got["crio"], want)
	}
}

// TestOnlyAPodmanServiceIsACandidate: the podman family's Match keeps one-off
// podman commands from being probed (and retried with backoff forever).
func TestOnlyAPodmanServiceIsACandidate(t *testing.T) {
	tests := []struct {
		cmd  []string
		want bool
	}{
		{[]string{"/usr/bin/podman", "--log-level=info", "system", "service"}, true},
		{[]string{"podman", "system", "service", "--time=5"}, true},
		{[]string{"podman", "system", "service", "--time=0", "unix:///run/podman/podman.sock"}, true},
		{[]string{"podman", "run", "busybox"}, false},
		{[]string{"podman", "system", "prune"}, false},
		{[]string{"podman"}, false},
	}
	root := t.TempDir()
	var procs []fakeProc
	for i, tt := range tests {
		procs = append(procs, fakeProc{pid: 10 + i, ppid: 1, comm: "podman", start: 4, cmdline: tt.cmd})
	}
	writeFakeProc(t, root, procs)
	d, err := New(Config{ProcRoot: root}, engine.Families{podman.Family(nil)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	must(t, d.procs.Refresh(nil))
	for i, tt := range tests {
		t.Run(strings.Join(tt.cmd, " "), func(t *testing.T) {
			if got := d.detect(10+i, "podman") != nil; got != tt.want {
				t.Fatalf("candidate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEndpointAnchorPID(t *testing.T) {
	tests := []struct {
		ep   string
		want int
	}{
		{"/proc/18419/root/run/podman/podman.sock", 18419},
		{"/run/docker.sock", 0},
		{"/proc/self/root/x", 0},
		{"/proc/12/cwd/x", 0},
	}
	for _, tt := range tests {
		t.Run(tt.ep, func(t *testing.T) {
			if got := endpointAnchorPID("/proc", tt.ep); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// nextChange returns the subscription's next change or fails t.
func nextChange(t *testing.T, sub *Subscription) Change {
	t.Helper()
	select {
	case c := <-sub.C():
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no change published")
	}
	return Change{}
}

// TestTwoEnginesAnsweringWithOneIDAreTwoEngines runs the fake tree's two
// dockerd processes (the host's and the one nested in a container), both
// answering with one engine ID, as two dockerds sharing
// /etc/docker/key.json do: both must be known, under two IDs, and a rescan
// changes nothing.
func TestTwoEnginesAnsweringWithOneIDAreTwoEngines(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	fe := newFakeEngines()
	fams := fe.families()
	for i := range fams {
		if fams[i].Name == "docker" {
			fams[i].Probe = func(_ context.Context, endpoint string) ([]model.Engine, error) {
				return []model.Engine{{ID: "SAME:KEY", Type: model.Docker, Version: "1", Endpoint: endpoint}}, nil
			}
		}
	}
	d, err := New(Config{ProcRoot: root}, fams, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sub := d.Subscribe()
	defer sub.Close()
	engines, err := d.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range engines {
		if e.Type == model.Docker {
			ids = append(ids, e.ID)
			if e.ID != "SAME:KEY" && e.ID != "SAME:KEY@"+e.Endpoint {
				t.Errorf("engine ID %q at %s, want SAME:KEY or SAME:KEY@%s", e.ID, e.Endpoint, e.Endpoint)
			}
		}
	}
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("docker engines %v, want two distinct", ids)
	}
	for len(sub.C()) > 0 {
		<-sub.C()
	}
	if _, err := d.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(sub.C()); n != 0 {
		t.Errorf("a rescan published %d changes, want none", n)
	}
}
