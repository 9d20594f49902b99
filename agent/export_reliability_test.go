package agent_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/agenttest"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/telemetry"
)

// outageLength is how long the reliability tests keep the collector away:
// 5 minutes, longer than every interval of agentd (export, retry backoff,
// gRPC reconnect backoff) and of the SDK exporters (10 s timeout);
// AGENTD_TEST_OUTAGE shortens it for a quick local run.
func outageLength(t *testing.T) time.Duration {
	t.Helper()
	if s := os.Getenv("AGENTD_TEST_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("AGENTD_TEST_OUTAGE=%q: %v", s, err)
		}
		return d
	}
	return 5 * time.Minute
}

// churned is a container run to its exit during an outage.
type churned struct {
	name string
	code int
}

// runToExit runs a busybox container that exits with code and removes it:
// create, start, die (with code) and destroy for the engine to report.
// dk is the dockerd to run it on.
func runToExit(t *testing.T, dk *enginetest.Private, name, label string, code int) {
	t.Helper()
	out, err := exec.Command("docker", "-H", "unix://"+dk.Sock, "run", "--network", "none", "--name", name, "--label", "agentd.test="+label, testbed.BusyboxImage,
		"sh", "-c", fmt.Sprintf("sleep 1; exit %d", code)).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != code {
		t.Fatalf("docker run %s: %v, want exit code %d\n%s", name, err, code, out)
	}
	dk.CLI("rm", name)
}

// TestReliabilityCollectorOutageLosesNothing stops the collector for 5
// minutes while containers start and exit with distinct codes and a steady
// container is sampled. After the collector is back, every lifecycle event
// of the churned containers arrives exactly once, the steady container's
// metric points of the outage are there, and the first export lands within
// 5 s of the collector's return.
func TestReliabilityCollectorOutageLosesNothing(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.Docker, testbed.Collector)
	testCollectorOutage(t, "grpc", outageLength(t))
}

// TestReliabilityCollectorOutageOverHTTPLosesNothing is the same over
// OTLP/HTTP, whose requests the export queue takes from the exporters'
// transports: a 90-second outage, longer than every interval on that path
// (the 2 s export, the 4 s retry backoff cap, the 10 s attempt timeout).
func TestReliabilityCollectorOutageOverHTTPLosesNothing(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.Docker, testbed.Collector)
	testCollectorOutage(t, "http/protobuf", min(outageLength(t), 90*time.Second))
}

// testCollectorOutage runs the collector outage test over protocol.
func testCollectorOutage(t *testing.T, protocol string, outage time.Duration) {
	tag := fmt.Sprintf("export-%d", rand.IntN(1e6))
	steady := tag + "-steady"
	// A dockerd of the test's own: the host's may hold any number of
	// other tests' containers, whose metrics would swell the collector's
	// files the test reads.
	dk := enginetest.StartPrivateDockerd(t, enginetest.StartPrivateContainerd(t).Sock)
	dk.CLI("run", "-d", "--network", "none", "--name", steady, "--label", "agentd.test="+tag, testbed.BusyboxImage, "sleep", "3600")

	var col *testbed.Otelcol
	const interval = 2 * time.Second
	cfg := config.Default()
	if protocol == "grpc" {
		col = testbed.StartCollector(t)
		cfg.Export.Endpoint = col.Endpoint()
		cfg.Export.Insecure = true
	} else {
		col = testbed.StartCollector(t, testbed.WithHTTPReceiver())
		cfg.Export.Protocol = protocol
		cfg.Export.Endpoint = "http://" + col.HTTPEndpoint()
	}
	cfg.Export.Interval = config.Duration(interval)
	cfg.Events.FlushInterval = config.Duration(200 * time.Millisecond)
	cfg.Discovery.Interval = config.Duration(time.Second)
	cfg.Activation.Enabled = false
	cfg.Filters.IncludeEngines = []string{"docker"}
	agenttest.Scope(&cfg, dk.Sock)
	cfg.Status.Socket = ""
	_, lb := agenttest.Run(t, cfg, slog.LevelInfo)
	byName := func(n string) map[string]string { return map[string]string{"container.name": n} }
	col.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool { return m.Metric(byName(steady), "container.uptime") != nil })

	up := col.Down(t)
	down := time.Now()
	t.Logf("collector down for %v", outage)
	var churn []churned
	const cycles = 10
	for i := range cycles {
		c := churned{name: fmt.Sprintf("%s-%d", tag, i), code: 11 + i}
		runToExit(t, dk, c.name, tag, c.code)
		churn = append(churn, c)
		if wait := time.Until(down.Add(outage * time.Duration(i+1) / cycles)); wait > 0 {
			time.Sleep(wait) // the outage itself: the fault is held, not a condition waited for
		}
	}
	size := col.MetricsFile()
	before := fileSize(size)
	starting := time.Now()
	up() // returns once the collector says it is ready
	back := time.Now()
	for fileSize(size) == before {
		if time.Since(back) > 60*time.Second {
			t.Fatalf("no metrics at the collector within 60 s of its return\n%s", lb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	recovery := time.Since(back)
	t.Logf("first export at the collector %v after it was ready, %v after it was started (collector startup %v; outage %v)",
		recovery.Round(10*time.Millisecond), time.Since(starting).Round(10*time.Millisecond), back.Sub(starting).Round(10*time.Millisecond),
		back.Sub(down).Round(time.Second))
	if recovery > 5*time.Second {
		t.Errorf("first export %v after the collector was back, want within 5 s", recovery)
	}

	events := []string{"container.create", "container.start", "container.die", "container.destroy"}
	col.WaitLogs(t, 2*time.Minute, func(l *testbed.Logs) bool {
		for _, c := range churn {
			for _, ev := range events {
				if len(l.Filter(func(r testbed.LogRecord) bool { return r.EventName == ev && r.HasResource(byName(c.name)) })) == 0 {
					return false
				}
			}
		}
		return true
	})
	time.Sleep(3 * time.Second) // duplicates would come with or right after the rest
	l, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range churn {
		for _, ev := range events {
			rs := l.Filter(func(r testbed.LogRecord) bool { return r.EventName == ev && r.HasResource(byName(c.name)) })
			if len(rs) != 1 {
				t.Errorf("%s: %d %s events, want exactly 1", c.name, len(rs), ev)
				continue
			}
			if ev == "container.die" && rs[0].Attrs[telemetry.AttrExitCode] != strconv.Itoa(c.code) {
				t.Errorf("%s: die with exit code %q, want %d", c.name, rs[0].Attrs[telemetry.AttrExitCode], c.code)
			}
		}
	}

	m := col.WaitMetrics(t, 2*time.Minute, func(m *testbed.Metrics) bool {
		u := m.Metric(byName(steady), "container.uptime")
		return u != nil && len(u.Points) > 0 && u.Points[len(u.Points)-1].Time.After(back)
	})
	inOutage := 0
	var last time.Time
	var gap time.Duration
	for _, p := range m.Metric(byName(steady), "container.uptime").Points {
		if p.Time.After(down) && p.Time.Before(back) {
			inOutage++
			if !last.IsZero() {
				gap = max(gap, p.Time.Sub(last))
			}
			last = p.Time
		}
	}
	want := int(outage/interval) * 8 / 10
	t.Logf("%d points of container.uptime of %s from the outage of %v (one round every %v), longest gap between two %v",
		inOutage, steady, back.Sub(down).Round(time.Second), interval, gap.Round(10*time.Millisecond))
	if inOutage < want {
		t.Errorf("%d points of the outage arrived, want at least %d", inOutage, want)
	}
	self := map[string]string{"service.name": "agentd"}
	var peak float64
	rounds := 0
	if q := m.Metric(self, "agentd.export.queue.size"); q != nil {
		for _, p := range q.Points {
			peak = max(peak, p.Value)
			if p.Time.After(down) && p.Time.Before(back) {
				rounds++
			}
		}
	} else {
		t.Errorf("no agentd.export.queue.size from agentd's own resource")
	}
	// Every round carries agentd's own metrics and the steady container's
	// in the same request: as many of one as of the other, or a round's
	// container points were lost (a round that ran late is no loss).
	t.Logf("agentd made %d export rounds during the outage", rounds)
	if inOutage < rounds {
		t.Errorf("%d rounds during the outage, but %d points of the steady container", rounds, inOutage)
	}
	t.Logf("export queue peak %.0f bytes (%.2f MiB) during the outage", peak, peak/(1<<20))
	if d := m.Metric(self, "agentd.export.dropped"); d != nil {
		for _, p := range d.Points {
			if p.Value != 0 {
				t.Errorf("agentd dropped %v requests (%v)", p.Value, p.Attrs)
			}
		}
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
