package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
)

// queuedEvents reads the event requests in the export queue directory dir
// (the files of telemetry's disk queue: a 12-byte header, then an OTLP
// ExportLogsServiceRequest) and returns "NAME EVENT" for every record.
func queuedEvents(t *testing.T, dir string) map[string]int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.events.otlp"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 12 || int(binary.BigEndian.Uint32(b[4:])) != len(b)-12 {
			continue // delivered and removed meanwhile, or being written
		}
		var req collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(b[12:], &req); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, rl := range req.GetResourceLogs() {
			name := testbed.AttrMap(rl.GetResource().GetAttributes())["container.name"]
			for _, sl := range rl.GetScopeLogs() {
				for _, r := range sl.GetLogRecords() {
					out[name+" "+r.GetEventName()]++
				}
			}
		}
	}
	return out
}

// TestReliabilityDiskQueueSurvivesARestart runs the agentd binary with the
// export queue on disk. With the collector down, containers start and exit;
// agentd is stopped (SIGTERM) and started again, more containers come and go,
// and then the collector returns: every lifecycle event arrives, once, and
// the queue directory is empty again.
func TestReliabilityDiskQueueSurvivesARestart(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	bin := buildAgentd(t)
	// A dockerd of the test's own: the host's may hold any number of other
	// tests' containers, whose metrics would swell the collector's files
	// the test reads.
	dk := enginetest.StartPrivateDockerd(t, enginetest.StartPrivateContainerd(t).Sock)
	col := testbed.StartCollector(t)
	dir := t.TempDir()
	queue := filepath.Join(dir, "state", "queue")
	cfg := filepath.Join(dir, "agentd.yaml")
	body := fmt.Sprintf(`export:
  endpoint: %s
  insecure: true
  interval: 2s
  queue_dir: %s
events:
  flush_interval: 200ms
discovery:
  interval: 1s
  include_endpoints: [%s]
activation:
  enabled: false
filters:
  include_engines: [docker]
status:
  socket: ""
`, col.Endpoint(), queue, dk.Sock)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("export-%d", rand.IntN(1e6))
	self := map[string]string{"service.name": "agentd"}

	first := startAgentd(t, bin, "run", "--config", cfg)
	col.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool { return m.Metric(self, "agentd.export.queue.size") != nil })
	col.WaitLogs(t, 60*time.Second, func(l *testbed.Logs) bool { return len(l.Events("agentd.engine.found")) > 0 })

	up := col.Down(t)
	down := time.Now()
	events := []string{"container.create", "container.start", "container.die", "container.destroy"}
	type churned struct {
		name string
		code int
	}
	var churn []churned
	run := func(n int) {
		for range n {
			c := churned{name: fmt.Sprintf("%s-%d", tag, len(churn)), code: 21 + len(churn)}
			out, err := exec.Command("docker", "-H", "unix://"+dk.Sock, "run", "--network", "none", "--name", c.name, "--label", "agentd.test="+tag, testbed.BusyboxImage,
				"sh", "-c", fmt.Sprintf("exit %d", c.code)).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != c.code {
				t.Fatalf("docker run %s: %v, want exit code %d\n%s", c.name, err, c.code, out)
			}
			dk.CLI("rm", c.name)
			churn = append(churn, c)
		}
	}
	onDisk := func() bool {
		q := queuedEvents(t, queue)
		for _, c := range churn {
			for _, ev := range events {
				if q[c.name+" "+ev] == 0 {
					return false
				}
			}
		}
		return true
	}
	run(3)
	waitFor(t, 60*time.Second, "the first agentd's events in the disk queue", onDisk)
	first.stop(t)
	files, _ := filepath.Glob(filepath.Join(queue, "*.otlp"))
	t.Logf("first agentd stopped with the collector down %v: %d requests on disk", time.Since(down).Round(time.Second), len(files))

	second := startAgentd(t, bin, "run", "--config", cfg)
	// Containers that come and go before agentd watches their engine are
	// not its to report: churn once the second agentd found Docker.
	waitFor(t, 60*time.Second, "the second agentd's engine.found in the disk queue", func() bool {
		return queuedEvents(t, queue)[" agentd.engine.found"] > 0
	})
	run(2)
	waitFor(t, 60*time.Second, "the second agentd's events in the disk queue", onDisk)
	time.Sleep(15 * time.Second) // the second agentd retries against the absent collector meanwhile
	up()
	back := time.Now()

	col.WaitLogs(t, 2*time.Minute, func(l *testbed.Logs) bool {
		for _, c := range churn {
			for _, ev := range events {
				if len(l.Filter(func(r testbed.LogRecord) bool {
					return r.EventName == ev && r.Resource["container.name"] == c.name
				})) == 0 {
					return false
				}
			}
		}
		return true
	})
	t.Logf("every event of %d containers at the collector %v after its return", len(churn), time.Since(back).Round(100*time.Millisecond))
	waitFor(t, 60*time.Second, "the disk queue to empty", func() bool {
		f, _ := filepath.Glob(filepath.Join(queue, "*.otlp"))
		return len(f) == 0
	})
	time.Sleep(3 * time.Second)
	l, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range churn {
		for _, ev := range events {
			rs := l.Filter(func(r testbed.LogRecord) bool { return r.EventName == ev && r.Resource["container.name"] == c.name })
			if len(rs) != 1 {
				t.Errorf("%s: %d %s events, want exactly 1", c.name, len(rs), ev)
				continue
			}
			if ev == "container.die" && rs[0].Attrs["agentd.container.exit_code"] != fmt.Sprint(c.code) {
				t.Errorf("%s: die with exit code %q, want %d", c.name, rs[0].Attrs["agentd.container.exit_code"], c.code)
			}
		}
	}
	m, err := col.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	firstRunPoints := 0
	if q := m.Metric(self, "agentd.export.queue.size"); q != nil {
		for _, p := range q.Points {
			if p.Time.After(down) && p.Time.Before(back) {
				firstRunPoints++
			}
		}
	}
	t.Logf("%d rounds of agentd's own metrics from the outage arrived", firstRunPoints)
	if firstRunPoints == 0 {
		t.Error("no metrics of the outage arrived")
	}
	if corrupt, _ := filepath.Glob(filepath.Join(queue, "*.corrupt")); len(corrupt) > 0 {
		t.Errorf("corrupt queue files: %v", corrupt)
	}
	if s := second.stderr.String(); !strings.Contains(s, "queued again") {
		t.Errorf("the second agentd did not log the requests it queued again:\n%s", s)
	}
	second.stop(t)
}
