package watch

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

func hostDocker(t *testing.T) (model.Engine, engine.Adapter) {
	t.Helper()
	e := model.Engine{ID: "docker-host-test", Type: model.Docker, Endpoint: testbed.DockerSocket}
	a, err := docker.NewAdapter(e, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return e, a
}

func TestDockerLifecycle(t *testing.T) {
	testbed.Require(t, testbed.Docker)
	e, a := hostDocker(t)
	dockerLifecycle(t, e, a, []string{"docker"})
}

// TestDockerLifecycleOnTodaysEngines runs the lifecycle of TestDockerLifecycle
// on today's engines: the Docker 29 line's daemon (API 1.44 and newer; the
// host's docker CLI drives it at 1.41, agentd negotiates the daemon's own) on
// containerd 2 and runc 1.5, each a private engine of the test.
func TestDockerLifecycleOnTodaysEngines(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Engines2)
	ctrd := enginetest.StartPrivateContainerdFrom(t, testbed.Engines2Dir())
	d := enginetest.StartPrivateDockerdFrom(t, testbed.Engines2Dir(), ctrd.Sock)
	if v := d.CLI("version", "--format", "{{.Server.APIVersion}} {{range .Server.Components}}{{.Name}} {{.Version}}; {{end}}"); !strings.HasPrefix(v, "1.5") {
		t.Fatalf("private dockerd of the second engine set: server %q, want API 1.5x", v)
	} else {
		t.Logf("server: API %s", v)
	}
	e := model.Engine{ID: "docker-todays-test", Type: model.Docker, Endpoint: d.Sock}
	a, err := docker.NewAdapter(e, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	dockerLifecycle(t, e, a, []string{"docker", "-H", "unix://" + d.Sock})
}

// dockerLifecycle drives one container through its whole life with the
// docker CLI (cli: its command line up to the subcommand) and checks the
// events the Watcher of e emits and the model's state after every step.
func dockerLifecycle(t *testing.T, e model.Engine, a engine.Adapter, cli []string) {
	t.Helper()
	label := testLabel(t)
	h := startWatcher(t, e, a, label, Options{})
	docker := func(args ...string) string { return testbed.Run(t, cli[0], append(slices.Clone(cli[1:]), args...)...) }
	id := docker("create", "--network", "none", "--label", "agentd.test="+label, testbed.BusyboxImage, "sleep", "1000")
	t.Cleanup(func() { _ = exec.Command(cli[0], append(slices.Clone(cli[1:]), "rm", "-f", id)...).Run() })

	steps := []struct {
		name  string
		run   []string
		want  []model.EventType
		state model.ContainerState
	}{
		{"create reports create", nil, []model.EventType{model.EventCreate}, model.StateCreated},
		{"start reports start", []string{"start", id}, []model.EventType{model.EventStart}, model.StateRunning},
		{"pause reports pause", []string{"pause", id}, []model.EventType{model.EventPause}, model.StatePaused},
		{"unpause reports unpause", []string{"unpause", id}, []model.EventType{model.EventUnpause}, model.StateRunning},
		{"stop reports die and stop", []string{"stop", "-t", "1", id}, []model.EventType{model.EventDie, model.EventStop}, model.StateExited},
		{"start again reports start", []string{"start", id}, []model.EventType{model.EventStart}, model.StateRunning},
		{"kill reports die", []string{"kill", id}, []model.EventType{model.EventDie}, model.StateExited},
		{"rm reports destroy", []string{"rm", id}, []model.EventType{model.EventDestroy}, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.run != nil {
				docker(s.run...)
			}
			evs := h.expectUnordered(s.want...)
			if got := h.state("", id); got != s.state {
				t.Errorf("model state %q, want %q", got, s.state)
			}
			for _, ev := range evs {
				if ev.Time.IsZero() || time.Since(ev.Time) > time.Minute {
					t.Errorf("%s: engine timestamp %v", ev.Type, ev.Time)
				}
				if ev.Resync {
					t.Errorf("%s marked as resync", ev.Type)
				}
				switch ev.Type {
				case model.EventStart:
					if ev.Container.ImageName != "local/busybox" || !slices.Equal(ev.Container.ImageTags, []string{"latest"}) {
						t.Errorf("start: image %q %v", ev.Container.ImageName, ev.Container.ImageTags)
					}
					c := h.started(id)
					want := docker("inspect", "-f", "{{.State.Pid}}", id)
					if strconv.Itoa(c.PID) != want {
						t.Errorf("after the start: pid %d, docker says %s", c.PID, want)
					}
					if !strings.HasSuffix(c.CgroupPath, id) && !strings.HasSuffix(c.CgroupPath, id+".scope") {
						t.Errorf("after the start: cgroup path %q", c.CgroupPath)
					}
				case model.EventDie:
					if ev.ExitCode != 137 || ev.Signal != "SIGKILL" {
						t.Errorf("die: exit code %d signal %q, want 137 SIGKILL", ev.ExitCode, ev.Signal)
					}
				case model.EventStop:
					// Its exit code is the die's when the die came first.
					if dieFirst := evs[0].Type == model.EventDie; dieFirst && (ev.ExitUnknown || ev.ExitCode != 137) || !dieFirst && !ev.ExitUnknown {
						t.Errorf("stop (die first: %v): exit code %d, unknown %v", dieFirst, ev.ExitCode, ev.ExitUnknown)
					}
				}
			}
		})
	}
	h.quiet(500 * time.Millisecond)
	if st := h.w.Stats(); st.Malformed != 0 {
		t.Errorf("malformed events: %d", st.Malformed)
	}
}

func TestDockerOOM(t *testing.T) {
	testbed.Require(t, testbed.Docker)
	label := testLabel(t)
	e, a := hostDocker(t)
	h := startWatcher(t, e, a, label, Options{})
	id := testbed.Run(t, "docker", "run", "-d", "--network", "none", "--memory", "8m", "--memory-swap", "8m",
		"--label", "agentd.test="+label, testbed.BusyboxImage, "sh", "-c", "x=a; while true; do x=$x$x; done")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
	h.expect(model.EventCreate, model.EventStart)
	eventually(t, 60*time.Second, "the container exits", func() bool { return h.state("", id) == model.StateExited })
	// Whether the engine noticed the OOM is the engine's word (containerd's
	// memory.oom_control notifier): this host's dockerd/containerd pair does
	// not always report it on cgroup v1, and then no engine event exists.
	engineOOM := testbed.Run(t, "docker", "inspect", "-f", "{{.State.OOMKilled}}", id) == "true"
	want := []model.EventType{model.EventDie}
	if engineOOM {
		want = []model.EventType{model.EventOOM, model.EventDie}
	} else {
		t.Logf("the engine did not report the OOM kill (docker inspect .State.OOMKilled=false): expecting die only")
	}
	evs := h.expect(want...)
	die := evs[len(evs)-1]
	if die.ExitCode != 137 || die.Signal != "SIGKILL" || die.Container.OOMKilled != engineOOM {
		t.Errorf("die: exit code %d signal %q oom %v, want 137 SIGKILL %v", die.ExitCode, die.Signal, die.Container.OOMKilled, engineOOM)
	}
	c := h.container(id)
	if c.State != model.StateExited || c.ExitCode != 137 || c.OOMKilled != engineOOM {
		t.Errorf("model: %+v", c)
	}
	h.quiet(500 * time.Millisecond)
}

func TestDockerBurstOf200(t *testing.T) {
	testbed.Require(t, testbed.Docker)
	label := testLabel(t)
	e, a := hostDocker(t)
	h := startWatcher(t, e, a, label, Options{})
	cli, err := client.NewClientWithOpts(client.WithHost("unix://"+testbed.DockerSocket), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	const n = 200
	ids := make([]string, n)
	t.Cleanup(func() {
		for _, id := range ids {
			if id != "" {
				_ = cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
			}
		}
	})
	parallel(t, n, func(i int) error {
		r, err := cli.ContainerCreate(ctx, &container.Config{Image: testbed.BusyboxImage, Cmd: []string{"true"},
			Labels: map[string]string{"agentd.test": label}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
		ids[i] = r.ID
		return err
	})
	start := time.Now()
	created := h.expect(repeat(model.EventCreate, n)...)
	t.Logf("200 creates observed %s after the last create returned", time.Since(start))
	assertOnce(t, created, ids)
	listed := dockerPS(t, cli, label)
	if got := h.labelled(); !slices.Equal(got, listed) {
		t.Fatalf("model has %d labelled containers, docker ps -a %d", len(got), len(listed))
	}
	parallel(t, n, func(i int) error { return cli.ContainerRemove(ctx, ids[i], container.RemoveOptions{}) })
	destroyed := h.expect(repeat(model.EventDestroy, n)...)
	assertOnce(t, destroyed, ids)
	h.quiet(500 * time.Millisecond)
	if got, listed := h.labelled(), dockerPS(t, cli, label); len(got) != 0 || len(listed) != 0 {
		t.Fatalf("after removal: model %d, docker ps -a %d", len(got), len(listed))
	}
}

func dockerPS(t *testing.T, cli *client.Client, label string) []string {
	t.Helper()
	l, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "agentd.test="+label))})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(l))
	for _, c := range l {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

func repeat(t model.EventType, n int) []model.EventType {
	out := make([]model.EventType, n)
	for i := range out {
		out[i] = t
	}
	return out
}

// assertOnce checks that evs name each of ids exactly once.
func assertOnce(t *testing.T, evs []model.Event, ids []string) {
	t.Helper()
	seen := map[string]int{}
	for _, ev := range evs {
		seen[ev.Container.ID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("container %s: %d events, want 1", id, seen[id])
		}
	}
}

// parallel runs f(0..n-1) on 8 workers and fails t on the first error.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// privateDockerd runs a dockerd of the test's own on the host containerd,
// in a containerd namespace of its own, so that the test may kill it.
type privateDockerd struct {
	t    *testing.T
	dir  string
	sock string
	ns   string
	cmd  *exec.Cmd
	done chan struct{}
}

func startPrivateDockerd(t *testing.T, dir, ns string) *privateDockerd {
	t.Helper()
	d := &privateDockerd{t: t, dir: dir, sock: filepath.Join(dir, "docker.sock"), ns: ns}
	d.start()
	return d
}

func (d *privateDockerd) start() {
	d.t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.dir, "dockerd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	d.cmd = exec.Command("dockerd",
		"--host", "unix://"+d.sock,
		"--data-root", filepath.Join(d.dir, "data"),
		"--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"),
		"--bridge=none", "--iptables=false", "--ip-masq=false",
		"--containerd", testbed.ContainerdSocket,
		"--containerd-namespace", d.ns,
		"--containerd-plugins-namespace", d.ns+"-plugins",
	)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own network namespace: a dockerd started with --bridge=none deletes
	// docker0 in its namespace, which must not be the host's shared one.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNET}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		d.t.Fatal(err)
	}
	logf.Close()
	d.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(d.cmd, d.done)
	eventually(d.t, 60*time.Second, "private dockerd answers", func() bool {
		return exec.Command("docker", "-H", "unix://"+d.sock, "version").Run() == nil
	})
}

func (d *privateDockerd) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

func (d *privateDockerd) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.kill()
	}
}

func (d *privateDockerd) docker(args ...string) string {
	d.t.Helper()
	return testbed.Run(d.t, "docker", append([]string{"-H", "unix://" + d.sock}, args...)...)
}

// testDockerd starts a private dockerd for the test, removed with all its
// state when the test ends, and a watcher of it with a MaxBackoff of 1 s.
func testDockerd(t *testing.T, label string) (*privateDockerd, *harness) {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "agentd-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	ns := "agentd-test-" + label[len(label)-8:]
	d := startPrivateDockerd(t, dir, ns)
	t.Cleanup(func() {
		out, _ := exec.Command("docker", "-H", "unix://"+d.sock, "ps", "-aq").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("docker", "-H", "unix://"+d.sock, "rm", "-f", id).Run()
		}
		d.stop()
		_ = exec.Command("ctr", "namespaces", "remove", ns).Run()
		_ = exec.Command("ctr", "namespaces", "remove", ns+"-plugins").Run()
		_ = exec.Command("sh", "-c", "awk '{print $5}' /proc/self/mountinfo | grep '^"+dir+"/' | sort -r | xargs -r umount -l").Run()
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("removing %s: %v", dir, err)
		}
	})
	e := model.Engine{ID: "docker-private-" + ns, Type: model.Docker, Endpoint: d.sock}
	a, err := docker.NewAdapter(e, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return d, startWatcher(t, e, a, label, Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
}

func TestDockerResyncAfterSIGKILL(t *testing.T) {
	testbed.Require(t, testbed.Docker, testbed.Containerd, testbed.Root)
	label := testLabel(t)
	d, h := testDockerd(t, label)
	d.docker("import", filepath.Join(testbed.CacheDir(), "busybox.tar"), testbed.BusyboxImage)
	const n = 3
	var ids []string
	for i := range n {
		ids = append(ids, d.docker("run", "-d", "--network", "none", "--name", fmt.Sprintf("resync-%d", i),
			"--label", "agentd.test="+label, testbed.BusyboxImage, "sleep", "1000"))
	}
	stopped := d.docker("create", "--network", "none", "--label", "agentd.test="+label, testbed.BusyboxImage, "true")
	for range n {
		h.expect(model.EventCreate, model.EventStart)
	}
	h.expect(model.EventCreate)

	d.kill()
	eventually(t, 30*time.Second, "the watcher notices the daemon is gone", func() bool { return h.w.Stats().Reconnects >= 1 })
	syncs := h.w.Stats().Syncs
	d.start()
	h.waitSyncs(syncs + 1)
	evs := h.expect(repeat(model.EventDie, n)...)
	assertOnce(t, evs, ids)
	for _, ev := range evs {
		if !ev.Resync {
			t.Errorf("die of %s not marked as resync", ev.Container.Name)
		}
		if ev.Container.State != model.StateExited {
			t.Errorf("die of %s with state %s", ev.Container.Name, ev.Container.State)
		}
	}
	// The restarted daemon itself reports the containers it found dead as
	// stopped: live engine events, one per container, not resync duplicates.
	stops := h.expect(repeat(model.EventStop, n)...)
	assertOnce(t, stops, ids)
	h.quiet(2 * time.Second)
	for _, id := range ids {
		if s := h.state("", id); s != model.StateExited {
			t.Errorf("container %s: model state %q", id, s)
		}
	}
	if s := h.state("", stopped); s != model.StateCreated {
		t.Errorf("never started container: model state %q", s)
	}
}

// TestEngineConnectedFollowsADockerdOutage checks the state behind
// agentd.engine.up against a private dockerd (needs Docker, containerd, root)
// that is stopped for several times the watcher's MaxBackoff.
func TestEngineConnectedFollowsADockerdOutage(t *testing.T) {
	testbed.Require(t, testbed.Docker, testbed.Containerd, testbed.Root)
	d, h := testDockerd(t, testLabel(t))
	connected := func() bool { e, _ := h.store.Engine(h.w.engine.ID); return e.Connected }
	t.Run("a listed engine is connected", func(t *testing.T) {
		if !connected() {
			t.Fatal("not connected after the first list")
		}
	})
	t.Run("a stopped engine is disconnected for as long as it is stopped", func(t *testing.T) {
		d.stop()
		eventually(t, 30*time.Second, "the engine is disconnected", func() bool { return !connected() })
		reconnects := h.w.Stats().Reconnects
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if connected() {
				t.Fatal("connected while the engine is stopped")
			}
		}
		if n := h.w.Stats().Reconnects - reconnects; n < 2 {
			t.Errorf("%d retries during the outage, want several", n)
		}
	})
	t.Run("a restarted engine is connected again", func(t *testing.T) {
		syncs := h.w.Stats().Syncs
		d.start()
		h.waitSyncs(syncs + 1)
		if !connected() {
			t.Fatal("not connected after the resync")
		}
	})
}
