package agent_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// TestFleetPathThroughAGatewayIntoPrometheus proves the fleet path end to end
// with real parts: agentd on the host exports over OTLP/gRPC to a collector
// running the shipped gateway configuration (packaging/examples/gateway.yaml,
// unchanged but for its private ports), which remote-writes to a real
// Prometheus. A PromQL query over Prometheus' HTTP API must return, for a real
// Docker container, the very memory and CPU figures agentd exported: every
// sample Prometheus holds equals the OTLP point agentd sent with the same
// timestamp (the gateway also writes what it received to a file), under the
// Prometheus names of the translation and with the resource attributes as
// labels.
func TestFleetPathThroughAGatewayIntoPrometheus(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector, testbed.Prometheus)
	prom := testbed.StartPrometheus(t)
	gw := testbed.StartGateway(t, "../packaging/examples/gateway.yaml",
		map[string]string{"PROMETHEUS_REMOTE_WRITE_URL": prom.RemoteWriteURL()})

	tag := fmt.Sprintf("%08x", rand.Uint32())
	name := "fleet-" + tag
	label := "agentd.test"
	// Memory that stays (a file in the container's tmpfs) and a little CPU every second.
	id := testbed.Run(t, "docker", "run", "-d", "--name", name, "--label", label+"="+tag,
		"--memory", "64m", "--tmpfs", "/scratch", testbed.BusyboxImage, "sh", "-c",
		"dd if=/dev/zero of=/scratch/f bs=1M count=8 2>/dev/null; "+
			"while true; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 1; done")
	t.Cleanup(func() { _, _ = runQuiet("docker", "rm", "-f", id) })

	startAgent(t, gw, label)
	res := map[string]string{"container.id": id}

	// Wait until agentd has sent a few points of both metrics through the gateway.
	gw.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool {
		mem := m.Metric(res, "container.memory.usage")
		cpu := m.Metric(res, "container.cpu.time")
		return mem != nil && len(mem.Points) >= 3 && cpu != nil && len(cpu.Points) >= 6
	})

	type check struct {
		otlpName string
		point    map[string]string // point attributes of the OTLP series
		promQL   string
	}
	checks := []check{
		{"container.memory.usage", nil, fmt.Sprintf(`container_memory_usage_bytes{container_name=%q}`, name)},
		{"container.cpu.time", map[string]string{"cpu.mode": "user"}, fmt.Sprintf(`container_cpu_time_seconds_total{container_name=%q,cpu_mode="user"}`, name)},
		{"container.cpu.time", map[string]string{"cpu.mode": "system"}, fmt.Sprintf(`container_cpu_time_seconds_total{container_name=%q,cpu_mode="system"}`, name)},
		{"container.cpu.usage", nil, fmt.Sprintf(`container_cpu_usage{container_name=%q}`, name)},
	}
	ctx := context.Background()
	for _, c := range checks {
		// Every sample in Prometheus must be a point agentd sent, value for value;
		// wait until at least three of them have arrived.
		deadline := time.Now().Add(60 * time.Second)
		for {
			series, err := prom.Query(ctx, c.promQL+"[15m]", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			sent := gw.WaitMetrics(t, time.Second, func(*testbed.Metrics) bool { return true }).Metric(res, c.otlpName)
			if sent == nil {
				t.Fatalf("%s: agentd sent no such metric for container %s", c.otlpName, id)
			}
			byMilli := map[int64]float64{}
			for _, p := range sent.Points {
				if hasAll(p.Attrs, c.point) {
					byMilli[p.Time.UnixMilli()] = p.Value
				}
			}
			if len(series) > 1 {
				t.Fatalf("%s: %d series, want one: %v", c.promQL, len(series), series)
			}
			if len(series) == 1 {
				s := series[0]
				for k, want := range map[string]string{"container_id": id, "container_name": name, "container_runtime_name": "docker", "job": "agentd"} {
					if s.Labels[k] != want {
						t.Errorf("%s: label %s = %q, want %q (labels %v)", c.promQL, k, s.Labels[k], want, s.Labels)
					}
				}
				if s.Labels["instance"] == "" {
					t.Errorf("%s: no instance label (service.instance.id): %v", c.promQL, s.Labels)
				}
				for _, smp := range s.Samples {
					v, ok := byMilli[smp.Time.UnixMilli()]
					switch {
					case !ok:
						t.Errorf("%s: sample %v at %s is no point agentd sent", c.promQL, smp.Value, smp.Time.Format(time.RFC3339Nano))
					case v != smp.Value:
						t.Errorf("%s at %s: Prometheus has %v, agentd sent %v", c.promQL, smp.Time.Format(time.RFC3339Nano), smp.Value, v)
					}
				}
				if len(s.Samples) >= 3 {
					last := s.Samples[len(s.Samples)-1]
					t.Logf("%s: %d samples equal agentd's points; last %v at %s", c.promQL, len(s.Samples), last.Value, last.Time.Format(time.RFC3339Nano))
					if c.otlpName == "container.memory.usage" && last.Value < 8<<20 {
						t.Errorf("%s: %v bytes, want at least the 8 MiB the container wrote to its tmpfs", c.promQL, last.Value)
					}
					break
				}
			}
			if t.Failed() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: fewer than 3 samples in Prometheus after 60 s: %v", c.promQL, series)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// hasAll reports whether attrs holds every key and value of match.
func hasAll(attrs, match map[string]string) bool {
	for k, v := range match {
		if attrs[k] != v {
			return false
		}
	}
	return true
}
