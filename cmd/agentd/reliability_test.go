package main

import (
	"context"
	"fmt"
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

// waitForEngine waits until the agent's status socket reports an engine at
// endpoint.
func waitForEngine(t *testing.T, sock, endpoint string, d time.Duration) {
	t.Helper()
	waitFor(t, d, "the status socket to report the engine at "+endpoint, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rep, err := status.Fetch(ctx, sock)
		if err != nil {
			return false
		}
		for _, e := range rep.Engines {
			if e.Endpoint == endpoint {
				return true
			}
		}
		return false
	})
}

// TestReliabilityReloadKeepsEveryEventOnce: `systemctl reload agentd`
// (SIGHUP) while containers start and die. Each reload changes what a
// running agent can take without a rebuild (the discovery interval, the
// export interval and the label allowlist, which rebuild the exporters):
// every container's start and die reach the collector exactly once, the
// engine is found once, and the --otlp-endpoint/--otlp-insecure of the
// command line survive every reload (the events after the last reload
// arrive at the collector named only on the command line).
func TestReliabilityReloadKeepsEveryEventOnce(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	bin := buildAgentd(t)
	col := testbed.StartCollector(t)
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	cfgPath := filepath.Join(t.TempDir(), "agentd.yaml")
	writeCfg := func(discovery, export string, labels []string) {
		t.Helper()
		body := fmt.Sprintf("export:\n  interval: %s\nevents:\n  flush_interval: 1s\ndiscovery:\n  interval: %s\n  include_endpoints: [%s]\n"+
			"labels:\n  allowlist: [%s]\nstatus:\n  socket: %s\n", export, discovery, testbed.DockerSocket, strings.Join(labels, ", "), sock)
		if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("5s", "2s", nil)
	p := startAgentd(t, bin, "run", "--config", cfgPath, "--otlp-endpoint", col.Endpoint(), "--otlp-insecure")
	cmd, stderr := p.cmd, p.stderr
	waitForEngine(t, sock, testbed.DockerSocket, 60*time.Second)

	// Churn: containers that start and exit on their own, one after the
	// other, for the whole time of the reloads.
	tag := fmt.Sprintf("reload-%d", os.Getpid())
	var (
		mu  sync.Mutex
		ids []string
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if len(ids) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	})
	ctx, stopChurn := context.WithCancel(context.Background())
	const workers = 3
	churnDone := make(chan error, workers)
	var churn sync.WaitGroup
	t.Cleanup(func() { stopChurn(); churn.Wait() })
	for w := range workers {
		churn.Add(1)
		go func() {
			defer churn.Done()
			for i := 0; ctx.Err() == nil; i++ {
				out, err := exec.Command("docker", "run", "-d", "--name", fmt.Sprintf("%s-%d-%d", tag, w, i),
					"--label", "agentd.test="+tag, testbed.BusyboxImage, "sh", "-c", "sleep 0.2; exit 3").Output()
				if err != nil {
					churnDone <- fmt.Errorf("docker run: %w", err)
					return
				}
				mu.Lock()
				ids = append(ids, strings.TrimSpace(string(out)))
				mu.Unlock()
			}
		}()
	}

	reloads := []struct {
		discovery, export string
		labels            []string
	}{
		{"2s", "2s", nil},
		{"2s", "1s", []string{"agentd.test"}},
		{"7s", "1s", []string{"agentd.test"}},
		{"7s", "3s", nil},
		{"3s", "1s", []string{"agentd.test"}},
	}
	for i, r := range reloads {
		time.Sleep(2 * time.Second)
		writeCfg(r.discovery, r.export, r.labels)
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("reload %d to be applied", i+1), func() bool {
			return strings.Count(stderr.String(), "configuration reloaded") == i+1
		})
	}
	time.Sleep(2 * time.Second) // churn after the last reload too
	stopChurn()
	churn.Wait()
	close(churnDone)
	for err := range churnDone {
		t.Fatal(err)
	}
	mu.Lock()
	want := append([]string(nil), ids...)
	mu.Unlock()
	if len(want) < 5 {
		t.Fatalf("only %d containers churned during %d reloads; the test proves nothing", len(want), len(reloads))
	}

	count := func(l *testbed.Logs, event, id string) int {
		n := 0
		for _, r := range l.Records {
			if r.EventName == event && r.Resource["container.id"] == id {
				n++
			}
		}
		return n
	}
	col.WaitLogs(t, 90*time.Second, func(l *testbed.Logs) bool {
		for _, id := range want {
			if count(l, "container.start", id) == 0 || count(l, "container.die", id) == 0 {
				return false
			}
		}
		return true
	})
	// Duplicates would come late (a resync after a rebuild): give them two
	// export intervals and a discovery interval.
	time.Sleep(5 * time.Second)
	l, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range want {
		for _, ev := range []string{"container.start", "container.die"} {
			if n := count(l, ev, id); n != 1 {
				t.Errorf("container %.12s: %d %s events at the collector, want exactly 1", id, n, ev)
			}
		}
	}
	found := 0
	for _, r := range l.Records {
		if r.EventName == "agentd.engine.found" && r.Resource["agentd.engine.endpoint"] == testbed.DockerSocket {
			found++
		}
	}
	if found != 1 {
		t.Errorf("%d agentd.engine.found events for %s after %d reloads, want 1", found, testbed.DockerSocket, len(reloads))
	}
	if strings.Contains(stderr.String(), "rebuilding the agent") {
		t.Errorf("a reload rebuilt the whole agent; only the changed parts should be")
	}
	t.Logf("%d containers started and died during %d reloads: each start and die exported once, the engine found once", len(want), len(reloads))
}
