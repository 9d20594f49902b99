package agent_test

import (
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/agenttest"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/telemetry"
)

// startAgentWith runs a real agent of agenttest.Config without socket
// activation, watching only the engines on socks, changed by tune first,
// logging at debug level.
func startAgentWith(t *testing.T, col *testbed.Otelcol, tune func(*config.Config), socks ...string) (*agent.Agent, *testbed.LogBuffer) {
	t.Helper()
	cfg := agenttest.Config(col)
	cfg.Activation.Enabled = false
	agenttest.Scope(&cfg, socks...)
	if tune != nil {
		tune(&cfg)
	}
	return agenttest.Run(t, cfg, slog.LevelDebug)
}

// trapCmd is a container command that exits with code 7 on SIGTERM, so that
// a kill from the host gives a known exit code.
var trapCmd = []string{"sh", "-c", `trap "exit 7" TERM; sleep 1000 & wait`}

// gapContainer is one container of a private engine in an outage test.
type gapContainer struct {
	engine *enginetest.Private
	name   string
	id     string
	// hostKill: its process is sent SIGTERM from the host during the gap.
	hostKill bool
	pid      int
	// dies: a die is expected after the gap, with exit code exit, or none
	// when exitUnknown.
	dies        bool
	exit        int
	exitUnknown bool
}

// The fault tests of this package run side by side (t.Parallel), each
// agent scoped to the private engines of its own test (agenttest.Scope) and
// exporting to a collector of its own.

func TestReliabilityEngineRestart30s(t *testing.T) {
	t.Parallel()
	testEngineOutage(t, 30*time.Second, "")
}

func TestReliabilityEngineRestart3m(t *testing.T) {
	t.Parallel()
	testEngineOutage(t, 3*time.Minute, "")
}

// TestReliabilityTodaysEnginesRestart30s is the outage of
// TestReliabilityEngineRestart30s on today's engines: the Docker 29 line's
// daemon on containerd 2, and containerd 2, with runc 1.5 (podman stays
// Debian's and is left out).
func TestReliabilityTodaysEnginesRestart30s(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.Engines2)
	testEngineOutage(t, 30*time.Second, testbed.Engines2Dir())
}

// testEngineOutage kills a private dockerd, containerd and podman service at
// once with SIGKILL, holds them down for gap (longer than the discovery scan
// and the watcher's backoff; shorter than the grace period), kills one
// container of each from the host meanwhile, and starts them again on the
// same sockets. Every container's death must reach the collector exactly once
// with its exit code, no container is started twice, the engines are never
// lost, and Docker's containers never surface as the moby namespace of its
// containerd. bin holds the Docker and containerd binaries ("": the host's;
// a podman service joins the outage then).
func testEngineOutage(t *testing.T, gap time.Duration, bin string) {
	testbed.Require(t, testbed.Docker, testbed.Containerd, testbed.Root)
	if _, err := exec.LookPath("podman"); err != nil && bin == "" {
		testbed.Unavailable(t, "podman is not installed: %v", err)
	}
	col := testbed.StartCollector(t)

	// Docker on a containerd of its own, in containerd's moby namespace.
	dockerCtrd := enginetest.StartPrivateContainerdFrom(t, bin)
	docker := enginetest.StartPrivateDockerdFrom(t, bin, dockerCtrd.Sock)
	ctrd := enginetest.StartPrivateContainerdFrom(t, bin)
	const ns = "engines"
	enginetest.ImportBusybox(t, ctrd.Sock, ns)
	engines := []*enginetest.Private{docker, ctrd}
	if bin == "" {
		engines = append(engines, enginetest.StartPrivatePodman(t))
	}
	socks := []string{dockerCtrd.Sock}
	for _, p := range engines {
		socks = append(socks, p.Sock)
	}

	a, lb := startAgentWith(t, col, nil, socks...)
	for _, p := range append(engines, dockerCtrd) {
		agenttest.WaitEngine(t, a, p.Sock, true, 2*time.Minute)
	}

	label := "engines-" + enginetest.Random(t)
	var cs []*gapContainer
	for _, p := range engines {
		for _, kill := range []bool{false, true} {
			c := &gapContainer{engine: p, hostKill: kill, name: fmt.Sprintf("%s-%s-run", label, p.Kind)}
			cmd := []string{"sleep", "1000"}
			if kill {
				c.name = fmt.Sprintf("%s-%s-trap", label, p.Kind)
				cmd = trapCmd
				c.dies, c.exit = true, 7
			}
			switch p.Kind {
			case "containerd":
				p.CLI(append([]string{"-n", ns, "run", "-d", "--label", "agentd.test=" + label, "docker.io/" + testbed.BusyboxImage, c.name}, cmd...)...)
				c.id = c.name
			default:
				c.id = p.CLI(append([]string{"run", "-d", "--network", "none", "--name", c.name, "--label", "agentd.test=" + label, testbed.BusyboxImage}, cmd...)...)
			}
			if p.Kind == "containerd" && kill && bin != "" {
				// containerd 2 deletes the task of a container whose
				// shim it finds dead when it starts, and with it the
				// exit code: nobody can tell it.
				c.exitUnknown = true
			}
			if p.Kind == "dockerd" && !kill {
				// dockerd (without live-restore) kills the containers it
				// finds running when it starts again: a die is expected.
				c.dies = true
			}
			cs = append(cs, c)
		}
	}
	col.WaitLogs(t, 2*time.Minute, func(l *testbed.Logs) bool {
		for _, c := range cs {
			if len(agenttest.CountEvents(l, "container.start", c.id)) == 0 {
				return false
			}
		}
		return true
	})
	for _, c := range cs {
		if !c.hostKill {
			continue
		}
		var out string
		switch c.engine.Kind {
		case "containerd":
			for _, line := range strings.Split(c.engine.CLI("-n", ns, "tasks", "ls"), "\n") {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == c.id {
					out = f[1]
				}
			}
		default:
			out = c.engine.CLI("inspect", "-f", "{{.State.Pid}}", c.id)
		}
		pid, err := strconv.Atoi(out)
		if err != nil || pid <= 0 {
			t.Fatalf("PID of %s: %q", c.name, out)
		}
		c.pid = pid
	}

	// The outage.
	down := time.Now()
	for _, p := range engines {
		p.Kill()
	}
	for _, p := range engines {
		agenttest.WaitEngine(t, a, p.Sock, false, time.Minute)
	}
	for _, c := range cs {
		if c.hostKill {
			if err := syscall.Kill(c.pid, syscall.SIGTERM); err != nil {
				t.Fatalf("kill %s (pid %d): %v", c.name, c.pid, err)
			}
		}
	}
	time.Sleep(time.Until(down.Add(gap)))
	for _, p := range engines {
		agenttest.WaitEngine(t, a, p.Sock, false, time.Second) // still known, not lost
	}
	restarted := map[string]time.Time{} // when each engine answered again
	for _, p := range engines {
		p.Start()
		restarted[p.Kind] = time.Now()
	}
	t.Logf("engines down for %s, back after %s", gap, time.Since(down).Round(time.Second))

	for _, c := range cs {
		if c.dies && !c.hostKill {
			code, err := strconv.Atoi(c.engine.CLI("inspect", "-f", "{{.State.ExitCode}}", c.id))
			if err != nil {
				t.Fatal(err)
			}
			c.exit = code
		}
	}
	recovered := map[string]time.Duration{}
	col.WaitLogs(t, 3*time.Minute, func(l *testbed.Logs) bool {
		missing := map[string]bool{}
		for _, c := range cs {
			if c.dies && len(agenttest.CountEvents(l, "container.die", c.id)) == 0 {
				missing[c.engine.Kind] = true
			}
		}
		for _, c := range cs {
			if _, ok := recovered[c.engine.Kind]; !ok && !missing[c.engine.Kind] {
				recovered[c.engine.Kind] = time.Since(restarted[c.engine.Kind])
			}
		}
		return len(missing) == 0
	})
	for _, p := range engines {
		agenttest.WaitEngine(t, a, p.Sock, true, time.Minute)
	}
	// Time for a duplicate to arrive: several event flushes and exports.
	time.Sleep(10 * time.Second)
	l, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		starts := agenttest.CountEvents(l, "container.start", c.id)
		if len(starts) != 1 {
			t.Errorf("%s: %d container.start records, want 1", c.name, len(starts))
		}
		dies := agenttest.CountEvents(l, "container.die", c.id)
		switch {
		case !c.dies && len(dies) != 0:
			t.Errorf("%s kept running but %d container.die records were exported", c.name, len(dies))
		case !c.dies:
		case len(dies) != 1:
			t.Errorf("%s: %d container.die records, want exactly 1", c.name, len(dies))
		case c.exitUnknown:
			if code, ok := dies[0].Attrs[telemetry.AttrExitCode]; ok {
				t.Errorf("%s: die with exit code %q, want none (unknown)", c.name, code)
			}
		case dies[0].Attrs[telemetry.AttrExitCode] != strconv.Itoa(c.exit):
			t.Errorf("%s: die with exit code %q, want %d", c.name, dies[0].Attrs[telemetry.AttrExitCode], c.exit)
		}
	}
	for _, r := range l.Records {
		if r.Resource["containerd.namespace"] == model.NamespaceMoby {
			t.Errorf("a container of containerd's moby namespace surfaced: %s %s", r.EventName, r.Resource["container.id"])
		}
		if r.EventName == "agentd.engine.lost" {
			for _, p := range engines {
				if r.Resource["agentd.engine.endpoint"] == p.Sock {
					t.Errorf("the %s was reported lost during a %s outage", p.Kind, gap)
				}
			}
		}
	}
	for _, p := range engines {
		n := len(l.Filter(func(r testbed.LogRecord) bool {
			return r.EventName == "agentd.engine.found" && r.Resource["agentd.engine.endpoint"] == p.Sock
		}))
		if n != 1 {
			t.Errorf("the %s was found %d times, want once", p.Kind, n)
		}
		t.Logf("%s: down %s, every missed death at the collector %s after it answered again (polled every 100 ms)", p.Kind, gap, recovered[p.Kind].Round(100*time.Millisecond))
	}
	if n := lb.Count("engine lost"); n != 0 {
		t.Errorf("agent logged %d engine lost lines", n)
	}
}

// TestReliabilityEngineGoneForGoodIsPruned kills a private podman service for
// good: its engine stays known for the grace period and is then lost, its
// containers pruned from the model.
func TestReliabilityEngineGoneForGoodIsPruned(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.Root)
	if _, err := exec.LookPath("podman"); err != nil {
		testbed.Unavailable(t, "podman is not installed: %v", err)
	}
	col := testbed.StartCollector(t)
	podman := enginetest.StartPrivatePodman(t)
	const grace = 20 * time.Second
	a, _ := startAgentWith(t, col, func(c *config.Config) { c.Discovery.GracePeriod = config.Duration(grace) }, podman.Sock)
	e := agenttest.WaitEngine(t, a, podman.Sock, true, 2*time.Minute)
	id := podman.CLI("run", "-d", "--network", "none", "--name", "engines-"+enginetest.Random(t), testbed.BusyboxImage, "sleep", "1000")
	col.WaitLogs(t, time.Minute, func(l *testbed.Logs) bool { return len(agenttest.CountEvents(l, "container.start", id)) == 1 })

	podman.Kill()
	gone := time.Now()
	col.WaitLogs(t, grace+time.Minute, func(l *testbed.Logs) bool {
		return len(l.Filter(func(r testbed.LogRecord) bool {
			return r.EventName == "agentd.engine.lost" && r.Resource["agentd.engine.endpoint"] == podman.Sock
		})) == 1
	})
	after := time.Since(gone)
	t.Logf("engine lost %s after its process was killed (grace period %s)", after.Round(100*time.Millisecond), grace)
	if after < grace {
		t.Errorf("engine lost after %s, before the grace period of %s", after, grace)
	}
	if cs := a.Store().EngineContainers(e.ID); len(cs) != 0 {
		t.Errorf("%d containers of the lost engine are still in the model", len(cs))
	}
	if _, ok := a.Store().Engine(e.ID); ok {
		t.Error("the lost engine is still in the model")
	}
}
