package agent_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/agenttest"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
)

// TestEndpointFiltersScopeTheAgentToTheEnginesNamed runs an agent with
// discovery.include_endpoints naming two private containerds (one by a
// glob on its directory, one by its path) and exclude_endpoints naming the
// second again, next to the host's Docker and containerd: it watches the
// first only, and the others are left out at the scan, before any probe.
func TestEndpointFiltersScopeTheAgentToTheEnginesNamed(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Containerd, testbed.Collector)
	in := enginetest.StartPrivateContainerd(t)
	out := enginetest.StartPrivateContainerd(t)
	col := testbed.StartCollector(t)
	a, lb := startAgentWith(t, col, func(c *config.Config) {
		c.Discovery.ExcludeEndpoints = []string{out.Sock}
	}, filepath.Join(filepath.Dir(in.Sock), "*.sock"), out.Sock)
	agenttest.WaitEngine(t, a, in.Sock, true, 2*time.Minute)
	// Several scans (one a second) after the first engine was watched.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range a.Store().Snapshot().Engines {
			if e.Endpoint != in.Sock {
				t.Fatalf("the agent watches %s at %s, left out by the filter", e.Type, e.Endpoint)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, sock := range []string{out.Sock, testbed.DockerSocket, testbed.ContainerdSocket} {
		if n := lb.Count("engine socket left out by the endpoint filter", "socket="+sock); n == 0 {
			t.Errorf("no scan left out %s", sock)
		}
		if n := lb.Count("engine found", "endpoint="+sock); n != 0 {
			t.Errorf("%s found %d times", sock, n)
		}
	}
	col.WaitLogs(t, time.Minute, func(l *testbed.Logs) bool { return len(l.Events("agentd.engine.found")) > 0 })
	l, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range l.Events("agentd.engine.found") {
		if ep := r.Resource["agentd.engine.endpoint"]; ep != in.Sock {
			t.Errorf("agentd.engine.found exported for %s", ep)
		}
	}
}
