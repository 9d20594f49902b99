package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/status"
)

// buildAgentd builds the real binary once per test.
func buildAgentd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agentd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer is a bytes.Buffer safe for a process's writes and a test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// TestRunStopsCleanlyOnSIGTERM runs the real binary against the testbed's
// engines and a real collector: it must become ready, export, answer on its
// status socket, and on SIGTERM flush and exit 0 within 5 s.
func TestRunStopsCleanlyOnSIGTERM(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	bin := buildAgentd(t)
	col := testbed.StartCollector(t)
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	cfg := filepath.Join(t.TempDir(), "agentd.yaml")
	if err := os.WriteFile(cfg, []byte("export:\n  interval: 1s\nstatus:\n  socket: "+sock+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startAgentd(t, bin, "run", "--config", cfg, "--otlp-endpoint", col.Endpoint(), "--otlp-insecure")

	waitFor(t, 30*time.Second, "the status socket to report the host Docker", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rep, err := status.Fetch(ctx, sock)
		if err != nil {
			return false
		}
		for _, e := range rep.Engines {
			if e.Type == "docker" && e.Endpoint == testbed.DockerSocket {
				return true
			}
		}
		return false
	})
	col.WaitMetrics(t, 30*time.Second, func(m *testbed.Metrics) bool {
		return len(m.ResourcesWith(map[string]string{"container.runtime.name": "docker"})) > 0
	})

	t.Logf("agentd exited 0, %v after SIGTERM", p.stopWith(t, syscall.SIGTERM, 5*time.Second))
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the status socket %s is left behind after a clean stop (err %v)", sock, err)
	}
}

// TestRunWithoutEndpointPrintsWhatItSees is `make run` on a fresh machine: no
// configuration, no collector; agentd prints the engines and containers it
// finds in readable form on stdout.
func TestRunWithoutEndpointPrintsWhatItSees(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker)
	bin := buildAgentd(t)
	name := "agentd-run-" + strings.ReplaceAll(t.Name(), "/", "-")
	id := testbed.Run(t, "docker", "run", "-d", "--name", strings.ToLower(name), "--label", "agentd.test="+name, testbed.BusyboxImage, "sleep", "3600")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })

	cfg := filepath.Join(t.TempDir(), "agentd.yaml")
	if err := os.WriteFile(cfg, []byte("export:\n  interval: 1s\nstatus:\n  socket: "+filepath.Join(t.TempDir(), "s.sock")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startAgentdEnv(t, bin, noOTLPEnv, "run", "--config", cfg)
	stdout := p.stdout
	waitFor(t, 30*time.Second, "the container to be printed with its engine", func() bool {
		out := stdout.String()
		return strings.Contains(out, "ENGINE") && strings.Contains(out, "docker") && strings.Contains(out, strings.ToLower(name))
	})
	p.stopWith(t, syscall.SIGINT, 5*time.Second)
}

// TestRunStopsCleanlyWithoutACollector: a collector that is down when agentd
// stops costs the last interval (logged), not a failed stop.
func TestRunStopsCleanlyWithoutACollector(t *testing.T) {
	testbed.Require(t, testbed.Root)
	bin := buildAgentd(t)
	cfg := filepath.Join(t.TempDir(), "agentd.yaml")
	// Nothing listens on this unix socket.
	body := "export:\n  endpoint: unix://" + filepath.Join(t.TempDir(), "nobody.sock") + "\n  insecure: true\n  interval: 1s\nstatus:\n  socket: \"\"\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startAgentd(t, bin, "run", "--config", cfg)
	time.Sleep(3 * time.Second) // a few export rounds fail meanwhile
	p.stopWith(t, syscall.SIGTERM, 5*time.Second)
}
