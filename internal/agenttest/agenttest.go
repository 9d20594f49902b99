package agenttest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// Config is the configuration of the agent tests: export to col every
// second, events flushed within 200 ms, a discovery scan every second, no
// status socket.
func Config(col *testbed.Otelcol) config.Config {
	cfg := config.Default()
	cfg.Export.Endpoint = col.Endpoint()
	cfg.Export.Insecure = true
	cfg.Export.Interval = config.Duration(time.Second)
	cfg.Events.FlushInterval = config.Duration(200 * time.Millisecond)
	cfg.Discovery.Interval = config.Duration(time.Second)
	cfg.Status.Socket = ""
	return cfg
}

// Scope limits cfg's agent to the engines listening on socks
// (discovery.include_endpoints): the engines other tests start on the same
// host are never dialled, watched or exported by it.
func Scope(cfg *config.Config, socks ...string) {
	cfg.Discovery.IncludeEndpoints = append(cfg.Discovery.IncludeEndpoints, socks...)
}

// Run runs an agent of cfg (validated first) until the test ends, its log
// at level and above going to the test log and kept for counting.
func Run(t *testing.T, cfg config.Config, level slog.Level) (*agent.Agent, *testbed.LogBuffer) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	lb := testbed.NewLogBuffer(t)
	a, err := agent.New(cfg, agent.Options{Log: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: level})), Stdout: io.Discard, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("agent did not stop within 15 s of its context ending")
		}
	})
	return a, lb
}

// WaitEngine waits until the agent watches the engine at sock, connected or not.
func WaitEngine(t *testing.T, a *agent.Agent, sock string, connected bool, timeout time.Duration) model.Engine {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range a.Store().Snapshot().Engines {
			if e.Endpoint == sock && e.Connected == connected {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent has no engine at %s with connected=%v after %s", sock, connected, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CountEvents returns the records of event name of container id.
func CountEvents(l *testbed.Logs, name, id string) []testbed.LogRecord {
	return l.Filter(func(r testbed.LogRecord) bool {
		return r.EventName == name && r.Resource["container.id"] == id
	})
}

// LeakOptions are the goleak options of the packages that run agents: grpc
// and the docker client keep idle connection goroutines briefly.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	}
}
