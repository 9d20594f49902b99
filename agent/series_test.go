package agent_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/agenttest"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
)

// containerSeries returns the distinct resources (attribute sets) that the
// collector received for container id, on metrics and on events alike.
func containerSeries(t *testing.T, col *testbed.Otelcol, id string) []map[string]string {
	t.Helper()
	m, err := col.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	l, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[string]string{}
	add := func(attrs map[string]string) {
		if attrs["container.id"] != id {
			return
		}
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(attrs)) {
			b.WriteString(k + "=" + attrs[k] + "\n")
		}
		seen[b.String()] = attrs
	}
	for _, r := range m.Resources {
		add(r.Attrs)
	}
	for _, r := range l.Records {
		add(r.Resource)
	}
	return slices.Collect(maps.Values(seen))
}

// requireOneSeries fails the test unless the collector received container
// id as exactly one resource, carrying every attribute of need.
func requireOneSeries(t *testing.T, col *testbed.Otelcol, id string, need ...string) map[string]string {
	t.Helper()
	series := containerSeries(t, col, id)
	if len(series) != 1 {
		var b strings.Builder
		for _, s := range series {
			b.WriteString("\n  ")
			for _, k := range slices.Sorted(maps.Keys(s)) {
				if !strings.HasPrefix(k, "host.") && !strings.HasPrefix(k, "service.") && !strings.HasPrefix(k, "os.") {
					b.WriteString(k + "=" + s[k] + " ")
				}
			}
		}
		t.Fatalf("container %.12s reached the collector as %d resources, want 1:%s", id, len(series), b.String())
	}
	for _, k := range need {
		if series[0][k] == "" {
			t.Errorf("container %.12s: resource without %s: %v", id, k, series[0])
		}
	}
	return series[0]
}

// TestADockerContainerOfANewImageIsOneSeries: a container created from an
// image reference the agent has never seen (a tag made for the test) is
// exported from its create on with its image ID, so that the collector
// receives one resource for it over its whole life: create, start,
// several export rounds, die, destroy.
func TestADockerContainerOfANewImageIsOneSeries(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	tag := enginetest.Random(t)
	image := "local/agentd-series-" + tag + ":v1"
	testbed.Run(t, "docker", "tag", testbed.BusyboxImage, image)
	t.Cleanup(func() { _, _ = runQuiet("docker", "rmi", image) })

	col := testbed.StartCollector(t)
	a, _ := startAgentWith(t, col, nil, testbed.DockerSocket)
	agenttest.WaitEngine(t, a, testbed.DockerSocket, true, time.Minute)

	id := testbed.Run(t, "docker", "run", "-d", "--name", "agentd-series-"+tag, image, "sleep", "1000")
	t.Cleanup(func() { _, _ = runQuiet("docker", "rm", "-f", id) })
	waitEvent(t, col, "container.start", id)
	// Longer than a few export intervals (1 s in these tests).
	res := map[string]string{"container.id": id}
	col.WaitMetrics(t, time.Minute, func(m *testbed.Metrics) bool {
		mt := m.Metric(res, "container.memory.usage")
		return mt != nil && len(mt.Points) >= 4
	})
	testbed.Run(t, "docker", "rm", "-f", id)
	waitEvent(t, col, "container.destroy", id)

	want := strings.TrimSpace(testbed.Run(t, "docker", "image", "inspect", "-f", "{{.Id}}", image))
	got := requireOneSeries(t, col, id, "container.image.id", "container.name", "container.image.name")
	if got["container.image.id"] != want {
		t.Errorf("container.image.id %q, want %q", got["container.image.id"], want)
	}
}

// metricPoints counts the points of metric name the collector received for
// container id, on all of its resources.
func metricPoints(m *testbed.Metrics, id, name string) int {
	n := 0
	for _, r := range m.ResourcesWith(map[string]string{"container.id": id}) {
		if mt := r.Metric(name); mt != nil {
			n += len(mt.Points)
		}
	}
	return n
}

// waitRounds waits until the collector received n more export rounds'
// memory figures of container id than it had.
func waitRounds(t *testing.T, col *testbed.Otelcol, id string, n int) {
	t.Helper()
	m, err := col.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	have := metricPoints(m, id, "container.memory.usage")
	col.WaitMetrics(t, time.Minute, func(m *testbed.Metrics) bool {
		return metricPoints(m, id, "container.memory.usage") >= have+n
	})
}

// TestAPodmanContainerIsOneSeriesAsItsServiceComesAndGoes: a container of a
// podman storage is reported by the daemonless view, then by a podman
// service started on that storage, then by the daemonless view again when
// the service is gone (as podman's service exits when idle), twice over,
// each view for several export rounds, then stopped and removed: the
// collector receives it as one resource throughout, with its image ID and
// the storage as its engine.
func TestAPodmanContainerIsOneSeriesAsItsServiceComesAndGoes(t *testing.T) {
	p, tag := daemonlessPodman(t)
	id := p.CLI("run", "-d", "--network", "none", "--name", "series-"+tag, testbed.BusyboxImage, "sleep", "1000")
	col := testbed.StartCollector(t)
	a, _ := startAgentWith(t, col, nil, p.Root(), p.Sock)
	dl := waitDaemonless(t, a, p.Root(), time.Minute)
	waitCopies(t, a, id, dl.ID)
	waitRounds(t, col, id, 3)
	for range 2 {
		p.Start()
		svc := agenttest.WaitEngine(t, a, p.Sock, true, 2*time.Minute)
		waitCopies(t, a, id, svc.ID)
		waitRounds(t, col, id, 3)
		p.Kill()
		agenttest.WaitEngine(t, a, p.Sock, false, time.Minute)
		waitCopies(t, a, id, dl.ID)
		waitRounds(t, col, id, 3)
	}
	p.CLI("stop", "-t", "1", id)
	waitEvent(t, col, "container.die", id)
	p.CLI("rm", id)
	waitEvent(t, col, "container.destroy", id)
	got := requireOneSeries(t, col, id, "container.image.id", "container.name", "container.image.name")
	if got["agentd.engine.endpoint"] != p.Root() {
		t.Errorf("agentd.engine.endpoint %q, want the storage %s", got["agentd.engine.endpoint"], p.Root())
	}
}

// TestAPodmanContainerKeepsItsLabelsWhenItsServiceGoes: with a label
// allowlisted, a container of a podman whose service is running is
// reported by the service (labels and all), then by the daemonless view
// when the service is gone, which cannot read labels but keeps those the
// service told, then by the service again: one resource, with its label,
// throughout.
func TestAPodmanContainerKeepsItsLabelsWhenItsServiceGoes(t *testing.T) {
	p, tag := daemonlessPodman(t)
	const label = "agentd.test"
	p.Start()
	col := testbed.StartCollector(t)
	a, _ := startAgentWith(t, col, func(c *config.Config) { c.Labels.Allowlist = []string{label} }, p.Root(), p.Sock)
	svc := agenttest.WaitEngine(t, a, p.Sock, true, 2*time.Minute)
	id := p.CLI("run", "-d", "--network", "none", "--label", label+"="+tag, "--name", "series-l-"+tag, testbed.BusyboxImage, "sleep", "1000")
	waitCopies(t, a, id, svc.ID)
	waitRounds(t, col, id, 3)
	p.Kill()
	agenttest.WaitEngine(t, a, p.Sock, false, time.Minute)
	dl := waitDaemonless(t, a, p.Root(), time.Minute)
	waitCopies(t, a, id, dl.ID)
	waitRounds(t, col, id, 3)
	p.Start()
	agenttest.WaitEngine(t, a, p.Sock, true, 2*time.Minute)
	waitCopies(t, a, id, svc.ID)
	waitRounds(t, col, id, 3)
	got := requireOneSeries(t, col, id, "container.image.id", "container.name")
	if got["container.label."+label] != tag {
		t.Errorf("container.label.%s = %q, want %q", label, got["container.label."+label], tag)
	}
}

// A podman container started with no service running is reported by the
// daemonless view with the labels podman keeps in its state database, so
// that the service, once it runs, tells the same resource.
func TestAPodmanContainerStartedWithoutItsServiceCarriesItsLabels(t *testing.T) {
	p, tag := daemonlessPodman(t)
	const label = "agentd.test"
	col := testbed.StartCollector(t)
	a, _ := startAgentWith(t, col, func(c *config.Config) { c.Labels.Allowlist = []string{label} }, p.Root(), p.Sock)
	id := p.CLI("run", "-d", "--network", "none", "--label", label+"="+tag, "--name", "series-d-"+tag, testbed.BusyboxImage, "sleep", "1000")
	dl := waitDaemonless(t, a, p.Root(), time.Minute)
	waitCopies(t, a, id, dl.ID)
	waitRounds(t, col, id, 3)
	p.Start()
	svc := agenttest.WaitEngine(t, a, p.Sock, true, 2*time.Minute)
	waitCopies(t, a, id, svc.ID)
	waitRounds(t, col, id, 3)
	got := requireOneSeries(t, col, id, "container.image.id", "container.name")
	if got["container.label."+label] != tag {
		t.Errorf("container.label.%s = %q, want %q", label, got["container.label."+label], tag)
	}
}
