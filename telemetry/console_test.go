package telemetry

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/agentd-dev/agentd/model"
)

// consoleFixture is a fixed host: Docker on the host running web-1 and the
// systemd host th, podman inside th running db, and a containerd that is
// down.
type consoleFixture struct {
	host                Host
	docker, podman, ctd model.Engine
	web, th, db         model.Container
}

func newConsoleFixture() consoleFixture {
	f := consoleFixture{host: Host{Name: "host-1", ID: "machine-1"}}
	f.docker = model.Engine{ID: "JSL7:2VJQ:SV", Type: model.Docker, Version: "24.0.7+dfsg1", Endpoint: "/run/docker.sock", PID: 812}
	f.th = model.Container{ID: "a655bbda78a33bbfbec2bf0e0764351fd755d679d8a5e9ef480ab642c6e7f555", Name: "th", EngineID: f.docker.ID, State: model.StateRunning}
	f.web = model.Container{ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Name: "web-1", EngineID: f.docker.ID, State: model.StateRunning}
	f.podman = model.Engine{ID: "podman:/proc/27418/root/run/podman/podman.sock", Type: model.Podman, Version: "4.3.1",
		Endpoint: "/proc/27418/root/run/podman/podman.sock", Prefix: "th", ParentContainerID: f.th.ID, ParentEngineID: f.docker.ID}
	f.db = model.Container{ID: "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210", Name: "db", EngineID: f.podman.ID, State: model.StateRunning}
	f.ctd = model.Engine{ID: "2e2e119e-aae5", Type: model.Containerd, Version: "1.6.20~ds1", Endpoint: "/run/containerd/containerd.sock", PID: 14785}
	return f
}

func gaugeI(name string, v int64, kv ...attribute.KeyValue) metricdata.Metrics {
	return metricdata.Metrics{Name: name, Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{{Attributes: attribute.NewSet(kv...), Value: v}}}}
}

func gaugeF(name string, v float64) metricdata.Metrics {
	return metricdata.Metrics{Name: name, Data: metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{{Value: v}}}}
}

// sumI is a Sum of int points; monotonic false is an UpDownCounter.
func sumI(name string, monotonic bool, pts ...metricdata.DataPoint[int64]) metricdata.Metrics {
	return metricdata.Metrics{Name: name, Data: metricdata.Sum[int64]{DataPoints: pts, IsMonotonic: monotonic, Temporality: metricdata.CumulativeTemporality}}
}

func pt(v int64, kv ...attribute.KeyValue) metricdata.DataPoint[int64] {
	return metricdata.DataPoint[int64]{Attributes: attribute.NewSet(kv...), Value: v}
}

func rm(res *resource.Resource, ms ...metricdata.Metrics) *metricdata.ResourceMetrics {
	return &metricdata.ResourceMetrics{Resource: res, ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: ms}}}
}

// round is one export round of the fixture. Memory comes as a Gauge for
// web-1 and as an UpDownCounter (a non-monotonic Sum) for db: the console
// reads a metric the same whatever its instrument. withCPU false is a first
// sample, before any CPU use is known.
func (f consoleFixture) round(withCPU bool) []*metricdata.ResourceMetrics {
	state := func(s string) attribute.KeyValue { return attribute.String(AttrState, s) }
	dir := func(k, v string) attribute.KeyValue { return attribute.String(k, v) }
	cpu := func(v float64) []metricdata.Metrics {
		if !withCPU {
			return nil
		}
		return []metricdata.Metrics{gaugeF(Metrics[mCPUUsage].Name, v)}
	}
	web := append(cpu(0.0312),
		gaugeI(Metrics[mMemoryUsage].Name, 71_565_312),
		gaugeI(Metrics[mMemoryLimit].Name, 536_870_912),
		gaugeI(Metrics[mPidsCount].Name, 29),
		sumI(Metrics[mNetworkIO].Name, true,
			pt(1_234_567, dir("network.io.direction", "receive"), dir("network.interface.name", "eth0")),
			pt(2_048, dir("network.io.direction", "transmit"), dir("network.interface.name", "eth0"))),
		sumI(Metrics[mDiskIO].Name, true, pt(999_900, dir("disk.io.direction", "read")), pt(0, dir("disk.io.direction", "write"))))
	th := append(cpu(0.1266), gaugeI(Metrics[mMemoryUsage].Name, 73_220_096), gaugeI(Metrics[mPidsCount].Name, 32))
	db := append(cpu(1.5),
		sumI(Metrics[mMemoryUsage].Name, false, pt(5_368_709_120)),
		sumI(Metrics[mPidsCount].Name, false, pt(7)),
		sumI(Metrics[mDiskIO].Name, true, pt(12_000_000, dir("disk.io.direction", "read")), pt(3_500, dir("disk.io.direction", "write"))))
	return []*metricdata.ResourceMetrics{
		rm(ContainerResource(f.host, &f.podman, &f.db, nil), db...),
		rm(EngineResource(f.host, &f.ctd), gaugeI(Metrics[mEngineUp].Name, 0)),
		rm(EngineResource(f.host, &f.podman), gaugeI(Metrics[mEngineUp].Name, 1),
			gaugeI(Metrics[mEngineContainers].Name, 1, state("running")), gaugeI(Metrics[mEngineContainers].Name, 2, state("exited"))),
		rm(ContainerResource(f.host, &f.docker, &f.web, nil), web...),
		rm(EngineResource(f.host, &f.docker), gaugeI(Metrics[mEngineUp].Name, 1),
			gaugeI(Metrics[mEngineContainers].Name, 2, state("running"))),
		rm(ContainerResource(f.host, &f.docker, &f.th, nil), th...),
		rm(resource.NewSchemaless(attribute.String("service.name", "agentd")), gaugeI(Metrics[mExportQueueSize].Name, 0)),
	}
}

// emitEvents sends, through a real LoggerProvider, the records the
// pipeline would for web-1 dying with 137 and an engine found.
func (f consoleFixture) emitEvents(t *testing.T, exp sdklog.Exporter, at time.Time) {
	t.Helper()
	emit := func(res *resource.Resource, name string, kv ...attribute.KeyValue) {
		lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
		var r log.Record
		r.SetEventName(name)
		r.SetTimestamp(at)
		r.AddAttributes(kv...)
		lp.Logger("test").Emit(context.Background(), r)
		if err := lp.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	emit(ContainerResource(f.host, &f.docker, &f.web, nil), string(model.EventDie),
		attribute.Int(AttrExitCode, 137), attribute.Bool(AttrOOMKilled, true))
	emit(EngineResource(f.host, &f.podman), string(model.EventEngineFound))
	emit(ContainerResource(f.host, &f.podman, &f.db, nil), string(model.EventStart))
}

// checkGolden compares got with testdata/console/name, rewritten with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	compareGolden(t, filepath.Join("testdata", "console", name), got, "the console view", "TestConsole")
}

// compareGolden compares got with the file golden, rewritten with -update;
// what names the output and test the test that rewrites it.
func compareGolden(t *testing.T, golden, got, what, test string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s changed; if that is intended, run go test ./telemetry -run %s -update\n--- got\n%s\n--- want\n%s", what, test, got, want)
	}
}

var consoleClock = time.Date(2026, 12, 5, 12, 48, 4, 0, time.UTC)

func TestConsoleGolden(t *testing.T) {
	f := newConsoleFixture()
	opts := func(terminal bool) ConsoleOptions {
		return ConsoleOptions{Terminal: terminal, Now: func() time.Time { return consoleClock }, Location: time.UTC,
			Hint: func() string { return "no container engine found.\n(the hint)\n" }}
	}
	t.Run("piped, the rounds and events are appended as plain text", func(t *testing.T) {
		var out bytes.Buffer
		c := NewConsole(&out, opts(false))
		if err := c.ExportMetrics(context.Background(), f.round(false)); err != nil {
			t.Fatal(err)
		}
		f.emitEvents(t, c, consoleClock.Add(time.Second))
		if err := c.ExportMetrics(context.Background(), f.round(true)); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "\x1b") {
			t.Errorf("escape sequences in piped output:\n%q", out.String())
		}
		checkGolden(t, "piped.golden", out.String())
	})
	t.Run("on a terminal, each round redraws the view with the latest events under it", func(t *testing.T) {
		var out bytes.Buffer
		c := NewConsole(&out, opts(true))
		f.emitEvents(t, c, consoleClock.Add(-time.Second)) // before any round: kept, not drawn
		if out.Len() != 0 {
			t.Fatalf("events drawn before the first round: %q", out.String())
		}
		if err := c.ExportMetrics(context.Background(), f.round(true)); err != nil {
			t.Fatal(err)
		}
		first := out.String()
		if !strings.HasPrefix(first, "\x1b[2J\x1b[H") || !strings.HasSuffix(first, "\x1b[J") {
			t.Errorf("the first draw does not clear the screen and draw from the top: %q", first)
		}
		out.Reset()
		if err := c.ExportMetrics(context.Background(), f.round(true)); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), "\x1b[H") {
			t.Errorf("a redraw does not start at the top: %q", out.String())
		}
		checkGolden(t, "terminal.golden", strings.ReplaceAll(out.String(), "\x1b", "ESC"))
	})
	t.Run("with no engine the hint is printed, in full once when piped", func(t *testing.T) {
		var out bytes.Buffer
		c := NewConsole(&out, opts(false))
		for range 2 {
			if err := c.ExportMetrics(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
		}
		checkGolden(t, "no-engine.golden", out.String())
	})
}

func TestConsoleSnapshot(t *testing.T) {
	f := newConsoleFixture()
	var got []Snapshot
	c := NewConsole(nil, ConsoleOptions{Snapshot: func(s Snapshot) { got = append(got, s) }})
	for _, withCPU := range []bool{false, true} {
		if err := c.ExportMetrics(context.Background(), f.round(withCPU)); err != nil {
			t.Fatal(err)
		}
	}
	f.emitEvents(t, c, consoleClock) // dropped: a snapshot has no events
	if len(got) != 2 {
		t.Fatalf("%d snapshots, want 2", len(got))
	}
	if got[0].Engines != 3 || got[0].Containers != 3 {
		t.Errorf("snapshot counts %d engines, %d containers; want 3, 3", got[0].Engines, got[0].Containers)
	}
	// containerd is down in the fixture: never complete.
	if got[0].Complete || got[1].Complete {
		t.Errorf("a round with an engine down is complete")
	}
	if !strings.Contains(got[1].Text, "150.00%") || strings.Contains(got[1].Text, "die") {
		t.Errorf("snapshot text:\n%s", got[1].Text)
	}
}

// TestConsoleReadsTheBuildersRounds renders a round as the pipeline builds
// it, whatever instruments the metric table declares: every container of the
// workload is listed under its engine with its memory and PIDs.
func TestConsoleReadsTheBuildersRounds(t *testing.T) {
	cfg := DefaultConfig()
	cs, es := fixedWorkload(2)
	b := newBuilder(&cfg, Host{Name: "host-1"}, "test")
	var out bytes.Buffer
	c := NewConsole(&out, ConsoleOptions{})
	now := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	for i := range 2 {
		if err := c.ExportMetrics(context.Background(), b.build(now.Add(time.Duration(i)*10*time.Second), cs, es)); err != nil {
			t.Fatal(err)
		}
	}
	text := out.String()
	for _, s := range cs {
		if !strings.Contains(text, s.container.Name) {
			t.Errorf("container %s missing:\n%s", s.container.Name, text)
		}
	}
	if strings.Contains(text, "-- /") || !strings.Contains(text, "MEM USAGE / LIMIT") {
		t.Errorf("memory not read from the builder's round:\n%s", text)
	}
}

func TestEngineName(t *testing.T) {
	tests := []struct {
		name                                          string
		typ, runtime, version, prefix, parentType, id string
		want                                          string
	}{
		{"a host engine drops its distribution suffix", "docker", "docker", "24.0.7+dfsg1", "", "", "JSL7", "docker 24.0.7 (host)"},
		{"a nested engine says which container of which engine", "containerd", "containerd", "v1.7.2", "kind-control-plane", "docker", "x", "containerd 1.7.2 in docker:kind-control-plane"},
		{"a CRI view names its runtime", "cri", "containerd", "1.6.20~ds1", "", "", "cri:/run/c.sock", "cri on containerd 1.6.20 (host)"},
		{"an unknown parent engine leaves its type out", "podman", "podman", "4.3.1", "th/inner", "", "p", "podman 4.3.1 in th/inner"},
		{"no type falls back to the ID", "", "", "", "", "", "cri:/proc/28", "cri:/proc/28 (host)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EngineName(tt.typ, tt.runtime, tt.version, tt.prefix, tt.parentType, tt.id); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHumanSizes(t *testing.T) {
	tests := []struct {
		n             int64
		binary, decim string
	}{
		{0, "0B", "0B"},
		{1023, "1023B", "1.02kB"},
		{71_565_312, "68.25MiB", "71.6MB"},
		{999_900, "976.5KiB", "1MB"},
		{5_368_709_120, "5GiB", "5.37GB"},
	}
	for _, tt := range tests {
		if got := binarySize(tt.n); got != tt.binary {
			t.Errorf("binarySize(%d) = %s, want %s", tt.n, got, tt.binary)
		}
		if got := decimalSize(tt.n); got != tt.decim {
			t.Errorf("decimalSize(%d) = %s, want %s", tt.n, got, tt.decim)
		}
	}
}

// FuzzConsoleRound renders rounds whose engines and containers name each
// other in any way (an engine inside its own container, two engines each in
// the other's container, unknown parents): every engine is listed once and
// nothing panics.
func FuzzConsoleRound(f *testing.F) {
	f.Add("e1", "c1", "e2", "c2", "th", "c1", "c2")
	f.Add("e1", "c1", "e1", "c1", "", "c1", "")
	f.Add("", "", "", "", "a/b", "x", "y")
	f.Fuzz(func(t *testing.T, e1, c1, e2, c2, prefix, parent1, parent2 string) {
		h := Host{Name: "h"}
		eng1 := model.Engine{ID: e1, Type: model.Docker, Prefix: prefix, ParentContainerID: parent1}
		eng2 := model.Engine{ID: e2, Type: model.Podman, Prefix: prefix, ParentContainerID: parent2}
		ct1 := model.Container{ID: c1, Name: c1, EngineID: e2}
		ct2 := model.Container{ID: c2, Name: c2, EngineID: e1}
		batch := []*metricdata.ResourceMetrics{
			rm(EngineResource(h, &eng1), gaugeI(Metrics[mEngineUp].Name, 1)),
			rm(EngineResource(h, &eng2), gaugeI(Metrics[mEngineUp].Name, 1)),
			rm(ContainerResource(h, &eng2, &ct1, nil), gaugeI(Metrics[mPidsCount].Name, 1)),
			rm(ContainerResource(h, &eng1, &ct2, nil), gaugeI(Metrics[mPidsCount].Name, 1)),
		}
		var out bytes.Buffer
		if err := NewConsole(&out, ConsoleOptions{}).ExportMetrics(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		if e1 != "" && e2 != "" && e1 != e2 {
			tree := out.String()[:strings.Index(out.String(), "\n\n")+1]
			if n := strings.Count(tree, " up "); n != 2 {
				t.Errorf("%d engines listed, want 2:\n%s", n, out.String())
			}
		}
	})
}

func TestPrintableKeepsTheTerminalSafe(t *testing.T) {
	for in, want := range map[string]string{
		"web-1":             "web-1",
		"evil\x1b[2Jname":   "evil?[2Jname",
		"tab\tand\nnewline": "tab?and?newline",
		"bad\xffutf8":       "bad?utf8",
		"ünïcode-名前":        "ünïcode-名前",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConsoleListsOnlyRunningContainers: a stopped container's resource,
// which carries only its state, restarts and health, gets no row.
func TestConsoleListsOnlyRunningContainers(t *testing.T) {
	engine := resource.NewSchemaless(attribute.String(AttrEngineID, "e1"), attribute.String("container.runtime.name", "docker"))
	state := func(s string) metricdata.Metrics {
		return metricdata.Metrics{Name: Metrics[mState].Name, Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{
			{Attributes: attribute.NewSet(attribute.String(AttrState, s)), Value: 1}}}}
	}
	ctr := func(id, s string) *metricdata.ResourceMetrics {
		return &metricdata.ResourceMetrics{
			Resource:     resource.NewSchemaless(attribute.String("container.id", id), attribute.String("container.name", id), attribute.String(AttrEngineID, "e1")),
			ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: []metricdata.Metrics{state(s)}}},
		}
	}
	r := reduceRound([]*metricdata.ResourceMetrics{{Resource: engine}, ctr("up", "running"), ctr("done", "exited"), ctr("new", "created")})
	if r.containers != 1 || len(r.engines) != 1 || len(r.engines[0].containers) != 1 || r.engines[0].containers[0].name != "up" {
		t.Fatalf("want only the running container, got %d containers", r.containers)
	}
}
