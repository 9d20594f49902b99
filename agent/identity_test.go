package agent_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/telemetry"
)

// TestResourceIdentityReachesTheCollector: what OTEL_RESOURCE_ATTRIBUTES and
// OTEL_SERVICE_NAME say arrives on the resources of a real container at the
// collector, with agentd's stable service.instance.id, on metrics and on
// events alike.
func TestResourceIdentityReachesTheCollector(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	tag := fmt.Sprintf("identity-%08x", rand.Uint32())
	label := "agentd.test"
	t.Setenv(telemetry.EnvResourceAttributes, "deployment.environment.name=prod%2Ceu, team=obs ,service.name=ignored,k8s.cluster.name=eu-1")
	t.Setenv(telemetry.EnvServiceName, "edge-agentd")

	col := testbed.StartCollector(t)
	startAgent(t, col, label)
	id := testbed.Run(t, "docker", "run", "-d", "--name", "agentd-"+tag, "--label", label+"="+tag, testbed.BusyboxImage, "sleep", "3600")
	t.Cleanup(func() { _, _ = runQuiet("docker", "rm", "-f", id) })

	machineID, _ := os.ReadFile("/etc/machine-id")
	host, _ := os.Hostname()
	want := map[string]string{
		"container.id":                id,
		"container.name":              "agentd-" + tag,
		"service.name":                "edge-agentd",
		"service.instance.id":         telemetry.InstanceID(strings.TrimSpace(string(machineID)), host),
		"service.version":             "test",
		"deployment.environment.name": "prod,eu",
		"team":                        "obs",
		"k8s.cluster.name":            "eu-1",
	}
	check := func(what string, got map[string]string) {
		t.Helper()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", what, k, got[k], v)
			}
		}
	}
	m := col.WaitMetrics(t, time.Minute, func(m *testbed.Metrics) bool {
		return len(m.ResourcesWith(map[string]string{"container.id": id})) > 0
	})
	check("metrics", m.ResourcesWith(map[string]string{"container.id": id})[0].Attrs)
	testbed.Run(t, "docker", "kill", id)
	l := col.WaitLogs(t, time.Minute, func(l *testbed.Logs) bool {
		for _, r := range l.Records {
			if r.Resource["container.id"] == id && r.EventName == "container.die" {
				return true
			}
		}
		return false
	})
	for _, r := range l.Records {
		if r.Resource["container.id"] == id && r.EventName == "container.die" {
			check("event "+r.EventName, r.Resource)
			break
		}
	}
}
