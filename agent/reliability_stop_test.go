package agent_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/sdnotify"
	"github.com/agentd-dev/agentd/internal/testbed"
)

// privateDockerd starts a dockerd of the test's own (socket, data and exec
// roots under a directory of its own, its own network namespace, a
// containerd namespace of its own on the host's containerd), loads the
// busybox image into it and returns its socket and process. It is stopped
// and its state removed at cleanup; never the host's dockerd.
func privateDockerd(t *testing.T, name string) (string, *os.Process) {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", name+"-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(conf, []byte(`{"deprecated-key-path": "`+filepath.Join(dir, "key.json")+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dockerd",
		"--host", "unix://"+sock,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		// Its own engine ID: the ID comes from the trust key, by default
		// the host dockerd's /etc/docker/key.json.
		"--config-file", conf,
		"--bridge=none", "--iptables=false", "--ip-masq=false",
		"--containerd", testbed.ContainerdSocket,
		"--containerd-namespace", name,
		"--containerd-plugins-namespace", name+"-plugins",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	dk := func(args ...string) *exec.Cmd {
		return exec.Command("docker", append([]string{"-H", "unix://" + sock}, args...)...)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		out, _ := dk("ps", "-aq").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = dk("rm", "-f", id).Run()
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = exec.Command("ctr", "namespaces", "remove", name).Run()
		_ = exec.Command("ctr", "namespaces", "remove", name+"-plugins").Run()
		_ = exec.Command("sh", "-c", "awk '{print $5}' /proc/self/mountinfo | grep '^"+dir+"/' | sort -r | xargs -r umount -l").Run()
		_ = os.RemoveAll(dir)
	})
	deadline := time.Now().Add(90 * time.Second)
	for dk("version").Run() != nil {
		select {
		case <-done:
			deadline = time.Time{}
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Fatalf("private dockerd did not answer within 90 s:\n%s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := exec.Command("sh", "-c", "docker save "+testbed.BusyboxImage+" | docker -H unix://"+sock+" load").CombinedOutput(); err != nil {
		t.Fatalf("loading busybox into the private dockerd: %v\n%s", err, out)
	}
	return sock, cmd.Process
}

// watchdogPings runs sdnotify.Watchdog with healthy, as cmd/agentd does,
// against a notify socket of the test's own (WatchdogSec 2 s: a ping every
// second), and returns a function that reports the times of the pings so far.
func watchdogPings(t *testing.T, healthy func() bool) func() []time.Time {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "2000000")
	var mu sync.Mutex
	var pings []time.Time
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), "WATCHDOG=1") {
				mu.Lock()
				pings = append(pings, time.Now())
				mu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		if err := sdnotify.Watchdog(ctx, healthy); err != nil {
			t.Errorf("watchdog: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		c.Close()
		wg.Wait()
	})
	return func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), pings...)
	}
}

// maxGap is the longest time between two of ts within [from, to], counting
// the edges.
func maxGap(ts []time.Time, from, to time.Time) time.Duration {
	last, gap := from, time.Duration(0)
	for _, x := range ts {
		if x.Before(from) || x.After(to) {
			continue
		}
		gap = max(gap, x.Sub(last))
		last = x
	}
	return max(gap, to.Sub(last))
}

// stopHold is how long TestReliabilityStoppedEngineStallsOnlyItsWatcher
// keeps the private dockerd stopped: longer than every interval of the
// agent (discovery scan 1 s here and 5 s by default, export 1 s, the
// watcher's backoff up to a minute, the probe timeout 30 s, the watchdog's
// 10 s progress timeout).
const stopHold = 150 * time.Second

// TestReliabilityStoppedEngineStallsOnlyItsWatcher stops a private dockerd
// with SIGSTOP for 2.5 minutes while containers of another dockerd come and
// go. The other dockerd's container events must keep reaching the collector during
// the stop, the metric export must go on, and the systemd watchdog must keep
// being pinged. A container of the stopped dockerd killed meanwhile must be
// reported dead (exit code 137) once after SIGCONT, and the engine watched
// again (a new container's start exported).
//
// It is the one fault test of this package that does not run in parallel:
// the watchdog it checks reads NOTIFY_SOCKET and WATCHDOG_USEC from the
// process's environment (t.Setenv). It runs before the parallel ones.
func TestReliabilityStoppedEngineStallsOnlyItsWatcher(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Containerd, testbed.Collector)
	tag := fmt.Sprintf("hung-stop-%08x", rand.Uint32())
	sock, dockerd := privateDockerd(t, tag)
	hostID := testbed.Run(t, "docker", "info", "-f", "{{.ID}}")
	if privID := testbed.Run(t, "docker", "-H", "unix://"+sock, "info", "-f", "{{.ID}}"); privID == hostID {
		t.Fatalf("the private dockerd has the host dockerd's engine ID %s", hostID)
	}
	pdk := func(args ...string) string {
		t.Helper()
		return testbed.Run(t, "docker", append([]string{"-H", "unix://" + sock}, args...)...)
	}
	before := pdk("run", "-d", "--name", tag+"-a", "--network", "none", "--label", "agentd.test="+tag, testbed.BusyboxImage, "sleep", "3600")
	beforePID := pdk("inspect", "-f", "{{.State.Pid}}", before)

	// The engine that goes on meanwhile: a dockerd of the test's own, not
	// the host's, which may hold any number of other tests' containers.
	other := enginetest.StartPrivateDockerd(t, enginetest.StartPrivateContainerd(t).Sock)

	col := testbed.StartCollector(t)
	a, _ := startAgent(t, col, "agentd.test", other.Sock, sock)
	pings := watchdogPings(t, a.Healthy)
	events := func(name, id string) []testbed.LogRecord {
		l, err := col.Logs()
		if err != nil {
			t.Fatal(err)
		}
		return l.Filter(func(r testbed.LogRecord) bool {
			return r.EventName == name && r.HasResource(map[string]string{"container.id": id, "container.runtime.name": "docker"})
		})
	}
	col.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool {
		return m.Metric(map[string]string{"container.id": before}, "container.memory.usage") != nil
	})
	metricRequests := func() int {
		m, err := col.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		return len(m.Requests)
	}

	// The stop. SIGCONT also runs at cleanup (privateDockerd), should the
	// test end early.
	if err := dockerd.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	requestsAtStop := metricRequests()
	t.Logf("private dockerd (pid %d) stopped", dockerd.Pid)
	// Its container dies while it cannot tell.
	testbed.Run(t, "kill", "-KILL", beforePID)

	type churned struct {
		id   string
		code int
		died time.Time
	}
	var churn []churned
	for i := 1; time.Since(stopped) < stopHold-10*time.Second; i++ {
		code := i%100 + 1
		id := other.CLI("run", "-d", "--name", fmt.Sprintf("%s-churn-%d", tag, i), "--network", "none",
			"--label", "agentd.test="+tag, testbed.BusyboxImage, "sh", "-c", fmt.Sprintf("sleep 1; exit %d", code))
		churn = append(churn, churned{id: id, code: code, died: time.Now().Add(time.Second)})
		time.Sleep(2 * time.Second)
	}
	for time.Since(stopped) < stopHold {
		time.Sleep(time.Second)
	}
	// Everything the other dockerd did meanwhile arrived while the private
	// dockerd was still stopped.
	l, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, c := range churn {
		ok := false
		for _, r := range l.Events("container.die") {
			if r.HasResource(map[string]string{"container.id": c.id, "container.runtime.name": "docker"}) && r.Attrs["agentd.container.exit_code"] == fmt.Sprint(c.code) {
				ok = true
			}
		}
		if !ok {
			missing++
			t.Errorf("no container.die (exit %d) of the other dockerd's %s exported while the private dockerd was stopped", c.code, c.id[:12])
		}
	}
	t.Logf("%d host containers churned during the stop, %d deaths missing", len(churn), missing)
	contAt := time.Now()
	requests := metricRequests() - requestsAtStop
	if want := int(stopHold/time.Second) / 2; requests < want {
		t.Errorf("%d metric exports during the %v stop, want at least %d (export every second)", requests, stopHold, want)
	}
	gap := maxGap(pings(), stopped, contAt)
	if gap > 5*time.Second {
		t.Errorf("the watchdog went %v without a ping during the stop (a ping every second)", gap)
	}
	t.Logf("during the stop: %d metric exports, longest watchdog gap %v", requests, gap.Round(time.Millisecond))
	if n := len(events("container.die", before)); n != 0 {
		t.Fatalf("the stopped dockerd's container reported dead %d times before SIGCONT", n)
	}

	if err := dockerd.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	col.WaitLogs(t, 90*time.Second, func(l *testbed.Logs) bool {
		for _, r := range l.Events("container.die") {
			if r.HasResource(map[string]string{"container.id": before, "container.runtime.name": "docker"}) {
				return true
			}
		}
		return false
	})
	recovered := time.Since(resumed)
	t.Logf("the stopped dockerd's container death exported %v after SIGCONT", recovered.Round(time.Millisecond))
	after := pdk("run", "-d", "--name", tag+"-b", "--network", "none", "--label", "agentd.test="+tag, testbed.BusyboxImage, "sleep", "3600")
	col.WaitLogs(t, 30*time.Second, func(l *testbed.Logs) bool {
		for _, r := range l.Events("container.start") {
			if r.HasResource(map[string]string{"container.id": after, "container.runtime.name": "docker"}) {
				return true
			}
		}
		return false
	})
	t.Logf("a new container of the resumed dockerd exported %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
	dies := events("container.die", before)
	if len(dies) != 1 {
		t.Errorf("the stopped dockerd's container reported dead %d times, want once", len(dies))
	} else if code := dies[0].Attrs["agentd.container.exit_code"]; code != "137" {
		t.Errorf("its exit code %q, want 137", code)
	}
	if n := len(events("container.start", before)); n > 1 {
		t.Errorf("the stopped dockerd's container reported started %d times", n)
	}
}
