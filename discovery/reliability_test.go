package discovery

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/internal/wait"
	"github.com/agentd-dev/agentd/model"
)

// The test binary serves as a fake engine process when fakeEngineEnv is set
// (see TestMain): "hang" accepts connections on the socket at fakeSocketEnv
// and never answers, "garbage" answers every request with bytes that are no
// HTTP.
const (
	fakeEngineEnv = "AGENTD_TEST_FAKE_ENGINE"
	fakeSocketEnv = "AGENTD_TEST_FAKE_SOCKET"
)

// serveFakeEngine listens on sock and serves as mode says, until killed.
func serveFakeEngine(mode, sock string) int {
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		switch mode {
		case "hang":
			held = append(held, c) // never read, never answered, never closed
		default:
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				_, _ = r.ReadString('\n')
				_, _ = c.Write([]byte("\x00\xffSSH-2.0-nothing-like-an-engine\r\n\r\n"))
			}()
		}
	}
}

// startFakeDockerd runs this test binary as a process named dockerd (its
// comm, which discovery matches) listening on dir/docker.sock, and returns
// the socket's path. The process is killed at cleanup.
func startFakeDockerd(t *testing.T, mode string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "dockerd")
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), fakeEngineEnv+"="+mode, fakeSocketEnv+"="+sock)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if !wait.Sleep(ctx, 50*time.Millisecond) {
			t.Fatalf("fake dockerd (%s) did not listen on %s", mode, sock)
		}
	}
}

// TestReliabilityFalseEnginesStallNothing runs discovery (Run, every second)
// next to two processes named dockerd that listen on a docker.sock: one
// accepts and never answers, one answers garbage. For 80 s, longer than the
// probe timeout (30 s) and the first retry backoff (10 s), so that both are
// probed again: each is reported once in the log, the scans keep their
// period, the host's Docker is found at the first scan and stays, and neither
// fake becomes an engine.
func TestReliabilityFalseEnginesStallNothing(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker)
	hang := startFakeDockerd(t, "hang")
	garbage := startFakeDockerd(t, "garbage")

	lb := testbed.NewLogBuffer(t)
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const interval = time.Second
	// The engines of tests running side by side are left out.
	d, err := New(Config{Interval: interval, Endpoints: EndpointFilter{Include: []string{testbed.DockerSocket, hang, garbage}}}, realFamilies(), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var passes []time.Time
	d.passDone = func() {
		mu.Lock()
		passes = append(passes, time.Now())
		mu.Unlock()
	}
	sub := d.Subscribe()
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- d.Run(ctx) }()

	hold := 80 * time.Second
	deadline := time.After(hold)
	var dockerFound time.Duration
	for run := true; run; {
		select {
		case c := <-sub.C():
			switch {
			case c.Engine.Endpoint == hang || c.Engine.Endpoint == garbage:
				t.Errorf("a fake dockerd became an engine: %+v", c)
			case c.Kind == EngineFound && c.Engine.Type == model.Docker && c.Engine.Endpoint == testbed.DockerSocket && dockerFound == 0:
				dockerFound = time.Since(began)
			case c.Kind == EngineLost:
				t.Errorf("engine lost while the fakes ran: %+v", c.Engine)
			}
		case <-deadline:
			run = false
		}
	}
	cancel()
	stopped := time.Now()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	// Run returns once the probe left in the background has ended with ctx.
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("Run took %v to return after its context ended", d)
	}

	if dockerFound == 0 || dockerFound > 5*time.Second {
		t.Errorf("host Docker found %v after Run began, want within 5 s (0: never)", dockerFound)
	} else {
		t.Logf("host Docker found %v after Run began", dockerFound.Round(time.Millisecond))
	}
	mu.Lock()
	var maxGap time.Duration
	for i := 1; i < len(passes); i++ {
		maxGap = max(maxGap, passes[i].Sub(passes[i-1]))
	}
	n := len(passes)
	mu.Unlock()
	// A pass waits at most ScanWait (2 s) for the probes it started; the
	// ticker's next tick follows. Give the loaded machine 3 s more.
	if maxGap > interval+2*time.Second+3*time.Second {
		t.Errorf("longest gap between scans %v, want about the %v interval", maxGap, interval)
	}
	if min := int(hold / (interval + 2*time.Second)); n < min {
		t.Errorf("%d scans in %v, want at least %d", n, hold, min)
	}
	t.Logf("%d scans in %v, longest gap %v", n, hold, maxGap.Round(time.Millisecond))
	for _, sock := range []string{hang, garbage} {
		if c := lb.Count("does not answer as an engine", "socket="+sock); c != 1 {
			t.Errorf("%s reported %d times, want once", sock, c)
		}
	}
	// Both were probed again after a backoff, quietly.
	probes := lb.Count("engine process did not answer; will retry", "process=dockerd")
	if probes < 3 {
		t.Errorf("%d failed probes of the fakes, want them retried (at least 3)", probes)
	}
	t.Logf("failed probes of the fakes: %d (Debug), warnings: %d", probes, lb.Count("does not answer as an engine"))
}
