package testbed

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func readMetricsFixture(t *testing.T) *Metrics {
	t.Helper()
	m, err := ReadMetricsFile("testdata/otlp-metrics.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readLogsFixture(t *testing.T) *Logs {
	t.Helper()
	l, err := ReadLogsFile("testdata/otlp-logs.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestReadMetricsFile(t *testing.T) {
	m := readMetricsFixture(t)
	container := map[string]string{"container.id": "c0ffee"}

	t.Run("complete lines decode and blank lines and a half-written last line are skipped", func(t *testing.T) {
		if len(m.Requests) != 3 {
			t.Fatalf("%d batches, want 3; %s", len(m.Requests), m.Summary())
		}
	})
	t.Run("batches of the same resource merge whatever their attribute order", func(t *testing.T) {
		if len(m.Resources) != 2 {
			t.Fatalf("%d resources, want 2; %s", len(m.Resources), m.Summary())
		}
		if n := len(m.ResourcesWith(container)); n != 1 {
			t.Errorf("ResourcesWith(container.id=c0ffee) = %d, want 1", n)
		}
		if n := len(m.ResourcesWith(nil)); n != 2 {
			t.Errorf("ResourcesWith(nil) = %d, want 2", n)
		}
	})
	t.Run("resource attributes render strings, ints as strings, bools and arrays", func(t *testing.T) {
		want := map[string]string{"container.id": "c0ffee", "agentd.engine.pid": "812", "container.image.tags": `["1.0","latest"]`}
		r := m.ResourcesWith(container)[0]
		if !hasAttrs(r.Attrs, want) || len(r.Attrs) != len(want) {
			t.Errorf("attrs %v, want %v", r.Attrs, want)
		}
		if up := m.ResourcesWith(map[string]string{"agentd.engine.up": "true"}); len(up) != 1 {
			t.Errorf("no resource with agentd.engine.up=true; %s", m.Summary())
		}
	})
	t.Run("points of every batch append to one metric and Last finds the newest", func(t *testing.T) {
		cpu := m.Metric(container, "container.cpu.time")
		if cpu == nil {
			t.Fatalf("no container.cpu.time; %s", m.Summary())
		}
		if len(cpu.Points) != 3 || cpu.Type != "sum" || !cpu.Monotonic || cpu.Temporality != "cumulative" || cpu.Unit != "s" || cpu.Scope != "agentd" {
			t.Errorf("container.cpu.time: %+v", cpu)
		}
		user, ok := cpu.Last(map[string]string{"cpu.mode": "user"})
		if !ok || user.Value != 2.5 || user.IsInt {
			t.Errorf("newest user point %+v %v, want the double 2.5", user, ok)
		}
		if want := time.Unix(0, 1795603467000000000).UTC(); !user.Time.Equal(want) {
			t.Errorf("time %v, want %v", user.Time, want)
		}
		if _, ok := cpu.Last(map[string]string{"cpu.mode": "steal"}); ok {
			t.Error("Last found a point for an attribute value no point has")
		}
	})
	t.Run("an int64 given as a string decodes exactly", func(t *testing.T) {
		p, ok := m.Metric(container, "container.memory.usage").Last(nil)
		if !ok || !p.IsInt || p.Int != math.MaxInt64 || m.Metric(container, "container.memory.usage").Type != "gauge" {
			t.Errorf("memory point %+v %v, want int %d", p, ok, int64(math.MaxInt64))
		}
	})
	t.Run("a delta non-monotonic sum and a histogram keep their shape", func(t *testing.T) {
		engine := map[string]string{"container.runtime.name": "docker"}
		c := m.Metric(engine, "agentd.engine.containers")
		if c == nil || c.Monotonic || c.Temporality != "delta" {
			t.Errorf("agentd.engine.containers: %+v", c)
		}
		h := m.Metric(engine, "agentd.export.duration")
		p, ok := h.Last(nil)
		if h.Type != "histogram" || !ok || p.Count != 4 || p.Value != 0.5 {
			t.Errorf("histogram %+v point %+v", h, p)
		}
	})
	t.Run("hex trace IDs of exemplars decode to their bytes", func(t *testing.T) {
		ex := m.Requests[1].GetResourceMetrics()[0].GetScopeMetrics()[0].GetMetrics()[1].GetHistogram().GetDataPoints()[0].GetExemplars()[0]
		if got := hex.EncodeToString(ex.GetTraceId()); got != "5b8efff798038103d269b633813fc60c" {
			t.Errorf("exemplar trace ID %s", got)
		}
		if got := hex.EncodeToString(ex.GetSpanId()); got != "eee19b7ec3c1b174" {
			t.Errorf("exemplar span ID %s", got)
		}
	})
	t.Run("an absent metric is nil and has no points", func(t *testing.T) {
		if mt := m.Metric(container, "no.such.metric"); mt != nil {
			t.Errorf("got %+v", mt)
		}
		if _, ok := m.Metric(container, "no.such.metric").Last(nil); ok {
			t.Error("Last on a nil metric found a point")
		}
	})
}

func TestReadLogsFile(t *testing.T) {
	l := readLogsFixture(t)
	if len(l.Records) != 3 {
		t.Fatalf("%d records, want 3; %s", len(l.Records), l.Summary())
	}
	die, found, plain := l.Records[0], l.Records[1], l.Records[2]

	t.Run("an event keeps its name, severity, body, typed attributes, times and resource", func(t *testing.T) {
		if die.EventName != "container.die" || die.Severity != 13 || die.SeverityText != "WARN" || die.Body != "container exited with code 137" {
			t.Errorf("record %+v", die)
		}
		if !die.HasAttrs(map[string]string{"container.exit_code": "137", "container.oom": "true", "ratio": "0.5"}) {
			t.Errorf("attrs %v", die.Attrs)
		}
		if !die.HasResource(map[string]string{"container.id": "c0ffee", "container.name": "web"}) || die.Scope != "agentd" {
			t.Errorf("resource %v scope %q", die.Resource, die.Scope)
		}
		if !die.Time.Equal(time.Unix(0, 1795603447246579502)) || !die.ObservedTime.Equal(time.Unix(0, 1795603447246582306)) {
			t.Errorf("time %v observed %v", die.Time, die.ObservedTime)
		}
	})
	t.Run("hex trace and span IDs survive decoding", func(t *testing.T) {
		if die.TraceID != "5b8efff798038103d269b633813fc60c" || die.SpanID != "eee19b7ec3c1b174" {
			t.Errorf("trace %q span %q", die.TraceID, die.SpanID)
		}
	})
	t.Run("empty IDs, a key-value body and bytes attributes render", func(t *testing.T) {
		if found.TraceID != "" || found.SpanID != "" {
			t.Errorf("trace %q span %q, want empty", found.TraceID, found.SpanID)
		}
		if found.Body != `{"engine":"podman","pid":"812"}` || found.Attrs["raw"] != "aGVsbG8=" {
			t.Errorf("body %q attrs %v", found.Body, found.Attrs)
		}
	})
	t.Run("a plain record without event name, resource or times decodes", func(t *testing.T) {
		if plain.EventName != "" || plain.Severity != 9 || plain.Body != "plain log line" || len(plain.Resource) != 0 || !plain.Time.IsZero() {
			t.Errorf("record %+v", plain)
		}
	})
	t.Run("Events and Filter select records", func(t *testing.T) {
		if got := l.Events("agentd.engine.found"); len(got) != 1 || got[0].Body != found.Body {
			t.Errorf("Events(agentd.engine.found) = %+v", got)
		}
		if got := l.Filter(func(r LogRecord) bool { return r.Severity >= 13 }); len(got) != 1 {
			t.Errorf("Filter(severity >= WARN) = %d records, want 1", len(got))
		}
	})
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{"a line of the wrong shape names its line", "{\"resourceLogs\":[]}\n{\"resourceLogs\":[{\"resource\":{\"attributes\":\"not a list\"}}]}\n", "line 2"},
		{"a line that is not JSON is an error", "\n\nnot json\n", "line 3"},
		{"two documents on one line are an error", "{} {}\n", "more than one document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLogs(strings.NewReader(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	t.Run("a file error names the file", func(t *testing.T) {
		_, err := ReadLogsFile("testdata/otlp-bad.jsonl")
		if err == nil || !strings.Contains(err.Error(), "testdata/otlp-bad.jsonl: line 2") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a missing file reads as empty", func(t *testing.T) {
		m, err := ReadMetricsFile("testdata/no-such-file.jsonl")
		if err != nil || len(m.Resources) != 0 || m.Summary() != "no metrics (0 batches)" {
			t.Errorf("%+v, %v", m, err)
		}
		l, err := ReadLogsFile("testdata/no-such-file.jsonl")
		if err != nil || len(l.Records) != 0 {
			t.Errorf("%+v, %v", l, err)
		}
	})
}

func TestValueString(t *testing.T) {
	str := func(s string) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
	}
	tests := []struct {
		name string
		v    *commonpb.AnyValue
		want string
	}{
		{"a string is itself", str("a b"), "a b"},
		{"an int is decimal", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: -42}}, "-42"},
		{"a double is the shortest decimal", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.1}}, "0.1"},
		{"a bool is true or false", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}, "false"},
		{"bytes are base64", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte("hi")}}, "aGk="},
		{"an array is JSON of its renderings", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
			Values: []*commonpb.AnyValue{str("x"), {Value: &commonpb.AnyValue_IntValue{IntValue: 1}}}}}}, `["x","1"]`},
		{"an empty array is an empty JSON array", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{}}}, `[]`},
		{"a key-value list is a JSON object", &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{
			Values: []*commonpb.KeyValue{{Key: "b", Value: str("2")}, {Key: "a", Value: str("1")}}}}}, `{"a":"1","b":"2"}`},
		{"an empty value is empty", &commonpb.AnyValue{}, ""},
		{"a nil value is empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValueString(tt.v); got != tt.want {
				t.Errorf("ValueString = %q, want %q", got, tt.want)
			}
		})
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the
// calling goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *fatalRecorder) message() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msg
}

// runFatal runs f with a fatalRecorder and returns what it failed with, "" when it returned.
func runFatal(t *testing.T, f func(tb testing.TB)) string {
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(rec)
	}()
	<-done
	return rec.message()
}

func TestWaitFailsWithASummary(t *testing.T) {
	c := &Otelcol{metricsFile: "testdata/otlp-metrics.jsonl", logsFile: "testdata/otlp-logs.jsonl"}
	t.Run("metrics that never match fail with each resource, metric and newest value", func(t *testing.T) {
		msg := runFatal(t, func(tb testing.TB) {
			c.WaitMetrics(tb, 150*time.Millisecond, func(*Metrics) bool { return false })
		})
		for _, want := range []string{"not met within 150ms", `"container.id"="c0ffee"`, "container.cpu.time (sum s cumulative) 3 points, newest 2.5"} {
			if !strings.Contains(msg, want) {
				t.Errorf("failure %q lacks %q", msg, want)
			}
		}
	})
	t.Run("logs that never match fail with each record", func(t *testing.T) {
		msg := runFatal(t, func(tb testing.TB) {
			c.WaitLogs(tb, 150*time.Millisecond, func(*Logs) bool { return false })
		})
		if !strings.Contains(msg, `event="container.die" severity=13 body="container exited with code 137"`) {
			t.Errorf("failure %q lacks the container.die record", msg)
		}
	})
	t.Run("a matching file returns at once", func(t *testing.T) {
		var got *Logs
		msg := runFatal(t, func(tb testing.TB) {
			got = c.WaitLogs(tb, time.Second, func(l *Logs) bool { return len(l.Events("container.die")) == 1 })
		})
		if msg != "" || got == nil {
			t.Errorf("failed with %q", msg)
		}
	})
	t.Run("a file that does not decode fails at once", func(t *testing.T) {
		bad := &Otelcol{logsFile: "testdata/otlp-bad.jsonl"}
		start := time.Now()
		msg := runFatal(t, func(tb testing.TB) {
			bad.WaitLogs(tb, time.Minute, func(*Logs) bool { return true })
		})
		if !strings.Contains(msg, "line 2") || time.Since(start) > 10*time.Second {
			t.Errorf("failure %q after %v", msg, time.Since(start))
		}
	})
}

func TestStartCollector(t *testing.T) {
	var endpoints []string
	t.Run("two collectors run side by side on their own ports", func(t *testing.T) {
		a, b := StartCollector(t), StartCollector(t)
		if a.Endpoint() == b.Endpoint() {
			t.Fatalf("both collectors on %s", a.Endpoint())
		}
		for _, c := range []*Otelcol{a, b} {
			if err := dialTCP(c.Endpoint()); err != nil {
				t.Errorf("receiver %s: %v", c.Endpoint(), err)
			}
			if !strings.HasPrefix(c.Endpoint(), "127.0.0.1:") {
				t.Errorf("endpoint %s is not on loopback", c.Endpoint())
			}
		}
		endpoints = append(endpoints, a.Endpoint(), b.Endpoint())
	})
	t.Run("cleanup stops them", func(t *testing.T) {
		for _, ep := range endpoints {
			if err := dialTCP(ep); err == nil {
				t.Errorf("receiver %s still accepts after cleanup", ep)
			}
		}
	})
	t.Run("a taken port is reported as taken so StartCollector can retry", func(t *testing.T) {
		Require(t, Collector)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		dir := t.TempDir()
		c := &Otelcol{endpoint: l.Addr().String(), dir: dir,
			metricsFile: dir + "/m.jsonl", logsFile: dir + "/l.jsonl", outputFile: dir + "/out.log"}
		err = c.start()
		if err == nil {
			c.stop(t)
			t.Fatal("the collector started on a port another listener holds")
		}
		if !errors.Is(err, errPortTaken) {
			t.Errorf("err = %v, want errPortTaken; output:\n%s", err, c.output())
		}
	})
	t.Run("the configuration is valid for the built collector", func(t *testing.T) {
		c := StartCollector(t)
		out := Run(t, CollectorBinary(), "validate", "--config=file:"+c.dir+"/config.yaml")
		if strings.Contains(strings.ToLower(out), "error") {
			t.Errorf("validate: %s", out)
		}
	})
}

func FuzzParseMetrics(f *testing.F) {
	addFixtureLines(f, "testdata/otlp-metrics.jsonl")
	f.Add([]byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"exemplars":[{"traceId":"zz"}]}]}]}]}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := ParseMetrics(bytes.NewReader(append(line, '\n')))
		if err == nil {
			_ = m.Summary()
		}
	})
}

func FuzzParseLogs(f *testing.F) {
	addFixtureLines(f, "testdata/otlp-logs.jsonl")
	addFixtureLines(f, "testdata/otlp-bad.jsonl")
	f.Fuzz(func(t *testing.T, line []byte) {
		l, err := ParseLogs(bytes.NewReader(append(line, '\n')))
		if err == nil {
			_ = l.Summary()
		}
	})
}

func addFixtureLines(f *testing.F, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f.Add(append([]byte(nil), sc.Bytes()...))
	}
}
