package agent_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/agenttest"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/procfs"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
	"github.com/agentd-dev/agentd/telemetry"
)

// twoLevelsSock is where the level-2 podman listens inside its container: a
// path no other engine of the testbed uses, so that the agent can be scoped
// to it.
const twoLevelsSock = "/run/agentd-twolevels/podman.sock"

// twoLevelsStorage is the level-2 podman's storage root, a path of its own
// for the same reason: agentd sees it as a daemonless view of that podman.
const twoLevelsStorage = "/var/lib/containers/agentd-twolevels"

// twoLevels is an engine two levels down: podman in a container (l1) of the
// systemd host's Docker, which itself runs in a container (th) of the host's
// Docker.
type twoLevels struct {
	th, thID string   // the systemd host: its name and ID in the host's Docker
	l1, l1ID string   // the container that runs podman: its name and ID in the systemd host's Docker
	cli      []string // podman's command line inside l1
}

// startLevelOne runs cmd in a container (l1) of the systemd host's Docker,
// made from the systemd host's own image (which has podman, runc and
// systemd), with the systemd host's own capabilities and mounts and the
// extra docker run flags. Everything it creates is removed when the test
// ends, and the systemd host's Docker is put back behind its socket if that
// is how it was found. The returned cli is plain podman.
func startLevelOne(t *testing.T, tag, label string, flags []string, cmd ...string) twoLevels {
	t.Helper()
	th := testbed.SystemdHostName()
	l := twoLevels{th: th, thID: testbed.Run(t, "docker", "inspect", "-f", "{{.Id}}", th), l1: "agentd-l1-" + tag, cli: []string{"podman"}}
	if out, _ := runQuiet("docker", "exec", th, "systemctl", "is-active", "docker.service"); out != "active" {
		// The docker commands below activate it through docker.socket.
		t.Cleanup(func() {
			_, _ = runQuiet("docker", "exec", th, "systemctl", "stop", "docker.service", "containerd.service")
			_, _ = runQuiet("docker", "exec", th, "systemctl", "start", "docker.socket")
		})
	}

	// The image: the systemd host's own, loaded into its Docker under a name
	// of the test's.
	hostImage := testbed.Run(t, "docker", "inspect", "-f", "{{.Config.Image}}", th)
	image := "local/agentd-twolevels:" + tag
	_, hadImage := runQuiet("docker", "exec", th, "docker", "image", "inspect", hostImage)
	if hadImage != nil {
		t.Cleanup(func() { _, _ = runQuiet("docker", "exec", th, "docker", "rmi", hostImage) })
	}
	pipeCommands(t, 5*time.Minute, []string{"docker", "save", hostImage}, []string{"docker", "exec", "-i", th, "docker", "load", "-q"})
	t.Cleanup(func() { _, _ = runQuiet("docker", "exec", th, "docker", "rmi", image) })
	testbed.RunInSystemdHost(t, "docker", "tag", hostImage, image)

	// podman's storage cannot be overlay on overlay: a volume.
	vol := "agentd-twolevels-" + tag
	testbed.RunInSystemdHost(t, "docker", "volume", "create", vol)
	t.Cleanup(func() { _, _ = runQuiet("docker", "exec", th, "docker", "volume", "rm", "-f", vol) })

	// The capabilities and mounts the systemd host itself runs with, for
	// the same reasons (no --privileged on this kernel; podman creates
	// cgroups in the host's tree).
	args := []string{"docker", "run", "-d", "--name", l.l1, "--label", label + "=l1-" + tag, "--network", "none",
		"--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "MKNOD",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "-v", vol + ":/var/lib/containers",
		"--tmpfs", "/run", "--tmpfs", "/tmp"}
	args = append(append(append(args, flags...), image), cmd...)
	l.l1ID = testbed.RunInSystemdHost(t, args...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := runQuiet("docker", "exec", th, "docker", "logs", "--tail", "50", l.l1)
			t.Logf("%s in %s, its last log lines:\n%s", l.l1, th, out)
		}
		_, _ = runQuiet("docker", "exec", th, "docker", "rm", "-f", "-v", l.l1)
	})
	return l
}

// startTwoLevels runs podman's service on twoLevelsSock, with its storage at
// twoLevelsStorage and cgroupfs as its cgroup manager (there is no systemd),
// as the only process of l1 (under docker's init), and loads the busybox
// image into it. Its cli is a client of that service.
func startTwoLevels(t *testing.T, tag, label string) twoLevels {
	t.Helper()
	service := fmt.Sprintf("mkdir -p %s && exec podman --root %s --cgroup-manager cgroupfs --events-backend file system service --time 0 unix://%s",
		path.Dir(twoLevelsSock), twoLevelsStorage, twoLevelsSock)
	l := startLevelOne(t, tag, label, []string{"--init"}, "sh", "-c", service)
	l.cli = []string{"podman", "--remote", "--url", "unix://" + twoLevelsSock}
	l.waitFor(t, time.Minute, "podman answers on "+twoLevelsSock, append(l.cli, "version")...)
	pipeCommands(t, time.Minute, []string{"docker", "save", testbed.BusyboxImage}, append([]string{"docker"}, l.podmanArgs("load", "-q")...))
	return l
}

// waitFor runs the command args (in l1) until it succeeds, failing t after
// timeout.
func (l twoLevels) waitFor(t *testing.T, timeout time.Duration, what string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, err := runQuiet("docker", append([]string{"exec", l.th, "docker", "exec", l.l1}, args...)...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s in %s: %v", what, timeout, l.l1, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// podmanArgs are the arguments of a docker command (on the host) that runs
// the podman CLI inside l1.
func (l twoLevels) podmanArgs(args ...string) []string {
	return append(append([]string{"exec", "-i", l.th, "docker", "exec", "-i", l.l1}, l.cli...), args...)
}

// podman runs the podman CLI inside l1 and returns its trimmed output.
func (l twoLevels) podman(t *testing.T, args ...string) string {
	t.Helper()
	return testbed.Run(t, "docker", l.podmanArgs(args...)...)
}

// podmanFigures are a container's stats as podman reports them.
type podmanFigures struct {
	mem, pids uint64
	cpu       float64 // seconds
	at        time.Time
}

// stats asks the level-2 podman for the stats of container id.
func (l twoLevels) stats(t *testing.T, id string) podmanFigures {
	t.Helper()
	out := l.podman(t, "stats", "--no-stream", "--format", "{{.ContainerStats.MemUsage}} {{.ContainerStats.PIDs}} {{.ContainerStats.CPUNano}}", id)
	f := strings.Fields(out)
	if len(f) != 3 {
		t.Fatalf("podman stats %s: %q, want memory, PIDs and CPU time", id, out)
	}
	var p podmanFigures
	var cpu uint64
	var err1, err2, err3 error
	p.mem, err1 = strconv.ParseUint(f[0], 10, 64)
	p.pids, err2 = strconv.ParseUint(f[1], 10, 64)
	cpu, err3 = strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("podman stats %s: %q: %v %v %v", id, out, err1, err2, err3)
	}
	p.cpu, p.at = float64(cpu)/1e9, time.Now()
	return p
}

// pipeCommands runs from with its output piped into to, failing t when either
// fails or both have not ended within timeout.
func pipeCommands(t *testing.T, timeout time.Duration, from, to []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	src := exec.CommandContext(ctx, from[0], from[1:]...)
	dst := exec.CommandContext(ctx, to[0], to[1:]...)
	out, err := src.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	dst.Stdin = out
	var srcErr, dstErr strings.Builder
	src.Stderr, dst.Stderr = &srcErr, &dstErr
	if err := dst.Start(); err != nil {
		t.Fatalf("%v: %v", to, err)
	}
	if err := src.Run(); err != nil {
		_ = dst.Wait()
		t.Fatalf("%v: %v: %s", from, err, srcErr.String())
	}
	if err := dst.Wait(); err != nil {
		t.Fatalf("%v: %v: %s", to, err, dstErr.String())
	}
}

// twoLevelsLoad is the level-2 container's command: 16 MiB in /dev/shm, yes
// burning CPU for two seconds, then three sleeps besides the shell (four
// PIDs, and a CPU time that no longer grows), the shell exiting 7 on
// SIGTERM.
const twoLevelsLoad = `trap "exit 7" TERM
dd if=/dev/zero of=/dev/shm/load bs=1M count=16 2>/dev/null
yes >/dev/null & y=$!
sleep 2; kill $y
sleep 1000 & sleep 1000 & sleep 1000 &
wait`

// TestAgentWatchesAnEngineTwoLevelsDown: podman serving its API in a
// container of the systemd host's Docker, itself a container of the host's
// Docker (host dockerd → agentd-th → Docker → container → podman →
// container). agentd on the host, running before either container exists,
// must find that podman (its process in the process table, its socket
// through its container's root), place it under both containers from its
// found event on, and export its container with that place, with stats
// that agree with podman's, read from the container's own cgroup through
// its PID translated from l1's PID namespace (the third) to the host's, and
// its stop as a die with the exit code.
func TestAgentWatchesAnEngineTwoLevelsDown(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.SystemdHost, testbed.Collector)
	tag := enginetest.Random(t)
	label := "agentd.test"
	col := testbed.StartCollector(t)
	// The host's Docker and the systemd host's (both on /run/docker.sock in
	// their roots) place the containers around the podman; the systemd
	// host's Docker is activated by the test's own docker commands.
	a, logs := startAgentWith(t, col, func(c *config.Config) { c.Labels.Allowlist = []string{label} },
		testbed.DockerSocket, twoLevelsSock, twoLevelsStorage)
	l := startTwoLevels(t, tag, label)
	prefix := l.th + "/" + l.l1
	place := map[string]string{"agentd.engine.prefix": prefix, "agentd.engine.parent.container.id": l.l1ID}

	var engineID string
	t.Run("the podman two levels down is found, placed under both containers", func(t *testing.T) {
		isOurs := func(r testbed.LogRecord) bool {
			return r.EventName == "agentd.engine.found" && strings.HasSuffix(r.Resource[telemetry.AttrEngineEndpoint], "/root"+twoLevelsSock)
		}
		lg := col.WaitLogs(t, 90*time.Second, func(l *testbed.Logs) bool { return len(l.Filter(isOurs)) > 0 })
		found := lg.Filter(isOurs)
		if len(found) != 1 {
			t.Errorf("%d agentd.engine.found records of the podman, want 1", len(found))
		}
		r := found[0]
		engineID = r.Resource[telemetry.AttrEngineID]
		if !r.HasResource(place) || r.Resource[telemetry.AttrEngineType] != "podman" {
			t.Errorf("agentd.engine.found: resource %v, want a podman with %v", r.Resource, place)
		}
		if ep := r.Resource[telemetry.AttrEngineEndpoint]; !strings.HasPrefix(ep, "/proc/") {
			t.Errorf("engine endpoint %q, want %s reached through a process's root", ep, twoLevelsSock)
		}
		// Its PID is the host's PID of a podman process three PID
		// namespaces down (host, systemd host, l1).
		pid, err := strconv.Atoi(r.Resource[telemetry.AttrEnginePID])
		if err != nil {
			t.Fatalf("agentd.engine.pid %q: %v", r.Resource[telemetry.AttrEnginePID], err)
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
		st, err := procfs.ReadStatus("/proc", pid)
		if string(trimNL(comm)) != "podman" || err != nil || len(st.NSpid) != 3 {
			t.Errorf("agentd.engine.pid %d: comm %q, NSpid %v (%v); want podman in the third PID namespace", pid, trimNL(comm), st.NSpid, err)
		}
	})
	if engineID == "" {
		t.FailNow()
	}

	// The podman is watched: its container's whole life is told.
	l2 := "agentd-l2-" + tag
	id := l.runLoad(t, l2, label+"="+tag)
	res := map[string]string{"container.id": id}
	ours := map[string]string{"container.id": id, "container.name": l2, "container.runtime.name": "podman",
		telemetry.AttrEngineID: engineID, "agentd.engine.prefix": prefix, "agentd.engine.parent.container.id": l.l1ID}

	t.Run("its container's start and resource carry the hierarchy and the engine", func(t *testing.T) {
		start := waitEvent(t, col, "container.start", id)
		if !start.HasResource(ours) {
			t.Errorf("start of %s: resource %v, want %v", id, start.Resource, ours)
		}
		// The container that holds the podman, one level up in the systemd
		// host's Docker, and the podman's own resource, up.
		outer := map[string]string{"container.id": l.l1ID, "agentd.engine.prefix": l.th, "agentd.engine.parent.container.id": l.thID}
		engineUp := func(m *testbed.Metrics) bool {
			for _, r := range m.ResourcesWith(map[string]string{telemetry.AttrEngineID: engineID, "agentd.engine.prefix": prefix}) {
				if p, ok := r.Metric("agentd.engine.up").Last(nil); ok && r.Attrs["container.id"] == "" && p.Value == 1 {
					return true
				}
			}
			return false
		}
		m := col.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool {
			return m.Metric(ours, "container.memory.usage") != nil && m.Metric(outer, "container.memory.usage") != nil && engineUp(m)
		})
		if rs := m.ResourcesWith(res); len(rs) != 1 {
			t.Errorf("%d resources for %s, want one", len(rs), id)
		}
	})

	t.Run("its storage is a daemonless view of the same podman, placed alike and hidden", func(t *testing.T) {
		deadline := time.Now().Add(time.Minute)
		for {
			var dl []model.Engine
			for _, e := range a.Store().Snapshot().Engines {
				if e.Daemonless && e.Storage == twoLevelsStorage {
					dl = append(dl, e)
				}
			}
			if len(dl) == 1 && dl[0].Connected && dl[0].Prefix == prefix && dl[0].ParentContainerID == l.l1ID {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("daemonless views of %s: %+v; want one, connected, with prefix %s and parent %s", twoLevelsStorage, dl, prefix, l.l1ID)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The service's view is the one exported.
		m, err := col.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if rs := m.ResourcesWith(res); len(rs) != 1 || rs[0].Attrs[telemetry.AttrEngineID] != engineID {
			t.Errorf("%d resources for %s; want one, of the service %s", len(rs), id, engineID)
		}
	})

	t.Run("its stats agree with podman's within 5 %", func(t *testing.T) {
		checkLevelTwoStats(t, col, logs, l, id, l2)
	})

	t.Run("its stop reaches the collector as a die with the exit code", func(t *testing.T) {
		checkLevelTwoDie(t, col, l, id, ours)
	})
}

// runLoad runs twoLevelsLoad in a container of l's podman named name, with
// the label (KEY=VALUE), removed when the test ends. It returns its ID.
func (l twoLevels) runLoad(t *testing.T, name, label string) string {
	t.Helper()
	id := l.podman(t, "run", "-d", "--network", "none", "--name", name, "--label", label,
		testbed.BusyboxImage, "sh", "-c", twoLevelsLoad)
	t.Cleanup(func() {
		_, _ = runQuiet("docker", l.podmanArgs("rm", "-f", "-t", "0", id)...)
		// podman's cgroupfs manager made the container's cgroups in the
		// host's tree; should podman not have removed them (it was gone
		// first), remove what is left, empty by then.
		for _, pattern := range []string{"/sys/fs/cgroup/*/*/libpod-" + id, "/sys/fs/cgroup/*/libpod-" + id} {
			dirs, _ := filepath.Glob(pattern)
			for _, d := range dirs {
				_ = os.Remove(d)
			}
		}
	})
	return id
}

// checkLevelTwoStats compares the stats agentd exports for container id
// (running twoLevelsLoad, named name, in l's podman) with podman's own, once
// the load has settled: within 5 %, and read from the container's cgroup.
func checkLevelTwoStats(t *testing.T, col *testbed.Otelcol, logs *testbed.LogBuffer, l twoLevels, id, l2 string) {
	t.Helper()
	res := map[string]string{"container.id": id}
	// Wait for the load to settle: the burner gone, the three sleeps there.
	var p podmanFigures
	deadline := time.Now().Add(3 * time.Minute)
	for p = l.stats(t, id); p.pids != 4; p = l.stats(t, id) {
		if time.Now().After(deadline) {
			t.Fatalf("podman reports %d PIDs in %s, want 4 once its load settled", p.pids, l2)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// An export sampled after podman's reading.
	m := col.WaitMetrics(t, 30*time.Second, func(m *testbed.Metrics) bool {
		pt, ok := m.Metric(res, "container.pids.count").Last(nil)
		return ok && pt.Time.After(p.at)
	})
	mem, _ := m.Metric(res, "container.memory.usage").Last(nil)
	pids, _ := m.Metric(res, "container.pids.count").Last(nil)
	user, ok1 := m.Metric(res, "container.cpu.time").Last(map[string]string{"cpu.mode": "user"})
	system, ok2 := m.Metric(res, "container.cpu.time").Last(map[string]string{"cpu.mode": "system"})
	if !ok1 || !ok2 {
		t.Fatalf("container.cpu.time: user %v, system %v", ok1, ok2)
	}
	for _, c := range []struct {
		name           string
		agentd, engine float64
	}{
		{"container.memory.usage", mem.Value, float64(p.mem)},
		{"container.pids.count", pids.Value, float64(p.pids)},
		{"container.cpu.time", user.Value + system.Value, p.cpu},
	} {
		diff := math.Abs(c.agentd-c.engine) / c.engine
		t.Logf("%s: agentd %.3f, podman %.3f (%.2f %%)", c.name, c.agentd, c.engine, 100*diff)
		if c.engine == 0 || diff > 0.05 {
			t.Errorf("%s: agentd %.3f, podman %.3f: more than 5 %% apart", c.name, c.agentd, c.engine)
		}
	}
	// Read from the container's cgroup, not asked of podman.
	if n := logs.Count(`msg="container stats source"`, "container_id="+id, "source="+string(stats.SourceCgroupV1)); n == 0 {
		t.Errorf("no stats of %s read from its cgroup (v1)", id)
	}
	if n := logs.Count(`msg="container stats source"`, "container_id="+id, "source="+string(stats.SourceEngineAPI)); n != 0 {
		t.Errorf("stats of %s asked of podman %d times", id, n)
	}
	if p.mem < 16<<20 {
		t.Errorf("podman reports %d bytes, less than the 16 MiB in /dev/shm", p.mem)
	}
}

// checkLevelTwoDie stops container id (running twoLevelsLoad in l's podman)
// and checks that its die reaches the collector once, with exit code 7 and
// the resource ours.
func checkLevelTwoDie(t *testing.T, col *testbed.Otelcol, l twoLevels, id string, ours map[string]string) {
	t.Helper()
	l.podman(t, "stop", "-t", "10", id)
	die := waitEvent(t, col, "container.die", id)
	if die.Attrs[telemetry.AttrExitCode] != "7" {
		t.Errorf("die with exit code %q, want 7", die.Attrs[telemetry.AttrExitCode])
	}
	if !die.HasResource(ours) {
		t.Errorf("die's resource %v, want %v", die.Resource, ours)
	}
	// Told once (no other view of the same podman, such as a daemonless one
	// that saw the exit file, tells it again): waits longer than the event
	// flush and a daemonless reading.
	time.Sleep(3 * time.Second)
	lg, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(agenttest.CountEvents(lg, "container.die", id)); n != 1 {
		t.Errorf("%d container.die records of %s, want 1", n, id)
	}
}

// TestAgentActivatesPodmanTwoLevelsDown: a systemd host inside the systemd
// host (systemd as PID 1 of a container of the systemd host's Docker) with
// podman.socket listening and podman.service not running, and a container
// that podman ran without its service. agentd on the host must reach that
// systemd's bus through its container's root, activate its podman.socket,
// and export the container with both enclosing containers as its place,
// with stats that agree with podman's and its die with the exit code.
func TestAgentActivatesPodmanTwoLevelsDown(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.SystemdHost, testbed.Collector)
	tag := enginetest.Random(t)
	label := "agentd.test"
	l := startLevelOne(t, tag, label, []string{"--tmpfs", "/run/lock"}, "/lib/systemd/systemd")
	l.waitFor(t, 2*time.Minute, "systemd booted", "sh", "-c", `s=$(systemctl is-system-running); [ "$s" = running ] || [ "$s" = degraded ]`)
	// Only podman.socket: its Docker stays down (it would be watched too,
	// on /run/docker.sock).
	l.waitFor(t, time.Minute, "docker.socket stopped", "systemctl", "disable", "--now", "docker.socket")
	pipeCommands(t, time.Minute, []string{"docker", "save", testbed.BusyboxImage}, append([]string{"docker"}, l.podmanArgs("load", "-q")...))
	l2 := "agentd-l2-" + tag
	id := l.runLoad(t, l2, label+"="+tag)
	if out, _ := runQuiet("docker", "exec", l.th, "docker", "exec", l.l1, "systemctl", "is-active", "podman.service"); out == "active" {
		t.Fatalf("podman.service is active in %s before agentd starts", l.l1)
	}

	col := testbed.StartCollector(t)
	// The systemd host's own podman.socket is left out: only the one two
	// levels down is the test's.
	thPodman := fmt.Sprintf("/proc/%d/root/run/podman/podman.sock", testbed.SystemdHostPID(t))
	_, logs := startAgentWith(t, col, func(c *config.Config) {
		c.Labels.Allowlist = []string{label}
		c.Activation.Enabled = true
		c.Discovery.ExcludeEndpoints = []string{thPodman}
	}, testbed.DockerSocket, "/run/podman/podman.sock")
	prefix := l.th + "/" + l.l1
	ours := map[string]string{"container.id": id, "container.name": l2, "container.runtime.name": "podman",
		"agentd.engine.prefix": prefix, "agentd.engine.parent.container.id": l.l1ID}

	t.Run("podman.socket two levels down is activated and its container exported with both containers as its place", func(t *testing.T) {
		col.WaitMetrics(t, 2*time.Minute, func(m *testbed.Metrics) bool {
			return m.Metric(ours, "container.memory.usage") != nil
		})
		if out, _ := runQuiet("docker", "exec", l.th, "docker", "exec", l.l1, "systemctl", "is-active", "podman.service"); out != "active" {
			t.Errorf("podman.service in %s is %q after agentd started", l.l1, out)
		}
		if n := logs.Count("unit=podman.socket", "engine socket"); n == 0 {
			t.Errorf("agentd did not take podman.socket of %s in", l.l1)
		}
		if n := logs.Count("activation failed", "unit=podman.socket"); n != 0 {
			t.Errorf("%d failed activations of podman.socket", n)
		}
	})

	t.Run("its stats agree with podman's within 5 %", func(t *testing.T) {
		checkLevelTwoStats(t, col, logs, l, id, l2)
	})

	t.Run("its stop reaches the collector as a die with the exit code", func(t *testing.T) {
		checkLevelTwoDie(t, col, l, id, ours)
	})
}
