package telemetry

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// These tests need the testbed's Collector part: each starts a private
// collector with the receivers it needs (TLS, mTLS, OTLP/HTTP, a bearer
// token) and checks what the collector wrote to its files.

// testRound is one round of a hand-made resource: a monotonic cumulative
// counter (test.counter, started at start, value v) and a gauge.
func testRound(res *resource.Resource, start, now time.Time, v int64) []*metricdata.ResourceMetrics {
	return []*metricdata.ResourceMetrics{{
		Resource: res,
		ScopeMetrics: []metricdata.ScopeMetrics{{
			Scope: instrumentation.Scope{Name: ScopeName},
			Metrics: []metricdata.Metrics{
				{Name: "test.counter", Unit: "By", Data: metricdata.Sum[int64]{
					Temporality: metricdata.CumulativeTemporality, IsMonotonic: true,
					DataPoints: []metricdata.DataPoint[int64]{{Attributes: attribute.NewSet(attribute.String("dir", "rx")), StartTime: start, Time: now, Value: v}},
				}},
				{Name: "test.gauge", Unit: "1", Data: metricdata.Gauge[float64]{
					DataPoints: []metricdata.DataPoint[float64]{{Time: now, Value: float64(v) / 2}},
				}},
			},
		}},
	}}
}

// exportProcessor exports every record at once and keeps the error.
type exportProcessor struct {
	exp sdklog.Exporter
	err error
}

func (p *exportProcessor) OnEmit(ctx context.Context, r *sdklog.Record) error {
	p.err = p.exp.Export(ctx, []sdklog.Record{*r})
	return p.err
}
func (p *exportProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (p *exportProcessor) Shutdown(context.Context) error                         { return nil }
func (p *exportProcessor) ForceFlush(context.Context) error                       { return nil }

// outcome is one delivery attempt of a signal's request, as the export
// queue reports it.
type outcome struct {
	signal string
	err    error
	at     time.Time
}

// startExport builds NewOTLP's exporters of layer over env, sends one round
// of metrics and one event of resource case=name, and returns the channel
// of the export queue's delivery outcomes. The exporters shut down when the
// test ends (a request still refused is dropped after 2 s).
func startExport(t *testing.T, name string, layer OTLPSettings, env map[string]string) (<-chan outcome, error) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.OTLP = layer
	cfg.Getenv = envOf(env)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms, lex, err := NewOTLP(ctx, &cfg)
	if err != nil {
		t.Fatalf("NewOTLP: %v", err)
	}
	// The exporters only queue; the outcomes are the delivery attempts.
	outcomes := make(chan outcome, 256)
	report := func(signal string, _ int, err error) {
		select {
		case outcomes <- outcome{signal, err, time.Now()}:
		default:
		}
	}
	lex.(queueHolder).exportQueue().onResult.Store(&report)
	t.Cleanup(func() {
		// A refused request stays queued (a TLS failure is retryable):
		// the drain ends with its context.
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		_ = ms.Shutdown(sctx)
		_ = lex.Shutdown(sctx)
	})
	res := resource.NewSchemaless(attribute.String("case", name))
	now := time.Now()
	if err := ms.ExportMetrics(ctx, testRound(res, now.Add(-time.Minute), now, 100)); err != nil {
		return nil, err
	}
	p := &exportProcessor{exp: lex}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(p))
	var r log.Record
	r.SetEventName("agentd.test")
	r.SetTimestamp(now)
	r.SetBody(attribute.StringValue(name))
	lp.Logger(ScopeName).Emit(ctx, r)
	_ = lp.Shutdown(context.Background())
	if p.err != nil {
		return nil, p.err
	}
	return outcomes, nil
}

// exportOnce sends as startExport does and returns the outcome of the
// first delivery attempt of each signal.
func exportOnce(t *testing.T, name string, layer OTLPSettings, env map[string]string) (metricsErr, logsErr error) {
	t.Helper()
	outcomes, err := startExport(t, name, layer, env)
	if err != nil {
		return err, err
	}
	deadline := time.After(20 * time.Second)
	seen := map[string]bool{}
	for !seen[SignalMetrics] || !seen[SignalEvents] {
		select {
		case o := <-outcomes:
			if seen[o.signal] {
				continue
			}
			seen[o.signal] = true
			if o.signal == SignalMetrics {
				metricsErr = o.err
			} else {
				logsErr = o.err
			}
		case <-deadline:
			t.Fatalf("no delivery outcome of both signals within 20 s (metrics %t, events %t)", seen[SignalMetrics], seen[SignalEvents])
		}
	}
	return metricsErr, logsErr
}

// waitCase waits until the collector holds the metrics and the event of
// case name.
func waitCase(t *testing.T, col *testbed.Otelcol, name string) {
	t.Helper()
	col.WaitMetrics(t, 30*time.Second, func(m *testbed.Metrics) bool {
		c := m.Metric(map[string]string{"case": name}, "test.counter")
		return c != nil && len(c.Points) > 0 && c.Points[0].Int == 100
	})
	col.WaitLogs(t, 30*time.Second, func(l *testbed.Logs) bool {
		for _, r := range l.Events("agentd.test") {
			if r.Resource["case"] == name && r.Body == name {
				return true
			}
		}
		return false
	})
}

// TestOTLPSettingsAgainstTheCollector proves TLS, mTLS, OTLP/HTTP and
// headers against a real collector, each from the file's keys and from the
// environment, and that a bad setting is refused where it should be.
func TestOTLPSettingsAgainstTheCollector(t *testing.T) {
	certs := testbed.NewCerts(t)
	serverTLS := testbed.ReceiverTLS{CertFile: certs.ServerCert, KeyFile: certs.ServerKey}
	mutualTLS := testbed.ReceiverTLS{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ClientCAFile: certs.CAFile}
	const token = "s3cret-token"
	type settings func(c *testbed.Otelcol) (OTLPSettings, map[string]string)
	cases := []struct {
		name     string
		col      []testbed.CollectorOption
		settings settings
		// refused: the exports must fail with an error containing it
		// ("any": with any error; a TLS 1.3 server refuses a client's
		// missing certificate after the handshake, and the client reads a
		// broken connection, not a reason).
		refused string
	}{
		{name: "TLS with export.tls.ca_file verifies the collector",
			col: []testbed.CollectorOption{testbed.WithTLS(serverTLS)},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Endpoint: c.Endpoint(), CAFile: certs.CAFile}, nil
			}},
		{name: "TLS with OTEL_EXPORTER_OTLP_CERTIFICATE verifies the collector",
			col: []testbed.CollectorOption{testbed.WithTLS(serverTLS)},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://" + c.Endpoint(), "OTEL_EXPORTER_OTLP_CERTIFICATE": certs.CAFile}
			}},
		{name: "TLS with a CA that did not sign the collector's certificate is refused",
			col: []testbed.CollectorOption{testbed.WithTLS(serverTLS)},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Endpoint: c.Endpoint(), CAFile: certs.OtherCAFile, Timeout: 3 * time.Second},
					map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": certs.CAFile} // the file's CA wins
			},
			refused: "certificate"},
		{name: "TLS with the file's insecure false overrides OTEL_EXPORTER_OTLP_INSECURE",
			col: []testbed.CollectorOption{testbed.WithTLS(serverTLS)},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Endpoint: c.Endpoint(), Insecure: boolp(false), CAFile: certs.CAFile}, map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"}
			}},
		{name: "mTLS with export.tls.cert_file and key_file is accepted",
			col: []testbed.CollectorOption{testbed.WithTLS(mutualTLS)},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Endpoint: c.Endpoint(), CAFile: certs.CAFile, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, nil
			}},
		{name: "mTLS with OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and _KEY is accepted",
			col: []testbed.CollectorOption{testbed.WithTLS(mutualTLS)},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Endpoint: c.Endpoint()}, map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": certs.CAFile,
					"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": certs.ClientCert, "OTEL_EXPORTER_OTLP_CLIENT_KEY": certs.ClientKey}
			}},
		{name: "mTLS without a client certificate is refused by the collector",
			col: []testbed.CollectorOption{testbed.WithTLS(mutualTLS)},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Endpoint: c.Endpoint(), CAFile: certs.CAFile, Timeout: 3 * time.Second}, nil
			},
			refused: "any"},
		{name: "OTLP/HTTP from export.protocol reaches the HTTP receiver",
			col: []testbed.CollectorOption{testbed.WithHTTPReceiver()},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://" + c.HTTPEndpoint()}, nil
			}},
		{name: "OTLP/HTTP from the environment with per-signal endpoints reaches the HTTP receiver",
			col: []testbed.CollectorOption{testbed.WithHTTPReceiver()},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{}, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
					"OTEL_EXPORTER_OTLP_ENDPOINT":         "http://" + c.Endpoint(), // the gRPC port: the per-signal ones must win
					"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://" + c.HTTPEndpoint() + "/v1/metrics",
					"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT":    "http://" + c.HTTPEndpoint() + "/v1/logs"}
			}},
		{name: "OTLP/HTTP over mTLS reaches the HTTP receiver",
			col: []testbed.CollectorOption{testbed.WithTLS(mutualTLS), testbed.WithHTTPReceiver()},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Protocol: ProtocolHTTPProtobuf, Endpoint: "https://" + c.HTTPEndpoint(),
					CAFile: certs.CAFile, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, nil
			}},
		{name: "OTLP/HTTP over mTLS without a client certificate is refused",
			col: []testbed.CollectorOption{testbed.WithTLS(mutualTLS), testbed.WithHTTPReceiver()},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Protocol: ProtocolHTTPProtobuf, Endpoint: "https://" + c.HTTPEndpoint(), CAFile: certs.CAFile, Timeout: 3 * time.Second}, nil
			},
			refused: "any"},
		{name: "headers from OTEL_EXPORTER_OTLP_HEADERS carry the token the collector requires",
			col: []testbed.CollectorOption{testbed.WithBearerToken(token)},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Endpoint: c.Endpoint(), Insecure: boolp(true)}, map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20" + token}
			}},
		{name: "a wrong token in export.headers wins over the right one in the environment and is refused",
			col: []testbed.CollectorOption{testbed.WithBearerToken(token)},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Endpoint: c.Endpoint(), Insecure: boolp(true), Headers: map[string]string{"Authorization": "Bearer wrong"}, Timeout: 3 * time.Second},
					map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20" + token}
			},
			refused: "Unauthenticated"},
		{name: "headers from export.headers carry the token over OTLP/HTTP with TLS",
			col: []testbed.CollectorOption{testbed.WithBearerToken(token), testbed.WithTLS(serverTLS), testbed.WithHTTPReceiver()},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Protocol: ProtocolHTTPProtobuf, Endpoint: "https://" + c.HTTPEndpoint(), CAFile: certs.CAFile,
					Headers: map[string]string{"authorization": "Bearer " + token}}, nil
			}},
		{name: "a missing token over OTLP/HTTP is refused",
			col: []testbed.CollectorOption{testbed.WithBearerToken(token), testbed.WithHTTPReceiver()},
			settings: func(c *testbed.Otelcol) (OTLPSettings, map[string]string) {
				return OTLPSettings{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://" + c.HTTPEndpoint(), Timeout: 3 * time.Second}, nil
			},
			refused: "401"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			col := testbed.StartCollector(t, c.col...)
			layer, env := c.settings(col)
			name := strings.ReplaceAll(c.name, " ", "_")
			merr, lerr := exportOnce(t, name, layer, env)
			if c.refused == "" {
				if merr != nil || lerr != nil {
					t.Fatalf("exports failed: metrics: %v; logs: %v", merr, lerr)
				}
				waitCase(t, col, name)
				return
			}
			for _, err := range []error{merr, lerr} {
				if err == nil || (c.refused != "any" && !strings.Contains(err.Error(), c.refused)) {
					t.Errorf("export error %v, want one saying %q", err, c.refused)
				}
			}
			if m, _ := col.Metrics(); len(m.ResourcesWith(map[string]string{"case": name})) != 0 {
				t.Errorf("the collector holds metrics it should have refused: %s", m.Summary())
			}
		})
	}
}

// countingProxy forwards TCP connections to a target and counts the bytes
// the clients sent.
type countingProxy struct {
	l     net.Listener
	sent  atomic.Int64
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{l: l}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() {
				defer p.wg.Done()
				n, _ := io.Copy(out, in)
				p.sent.Add(n)
				out.Close()
			}()
			go func() {
				defer p.wg.Done()
				_, _ = io.Copy(in, out)
				in.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// TestOTLPCompressionOnTheWire proves gzip against the real collector: the
// collector decodes what agentd sent, and the bytes on the wire (counted
// by a proxy in front of it) are a fraction of the uncompressed ones. The
// file's compression: none wins over gzip in the environment.
func TestOTLPCompressionOnTheWire(t *testing.T) {
	col := testbed.StartCollector(t, testbed.WithHTTPReceiver())
	// A round of 200 resources, as compressible as agentd's are.
	batch := func(name string) []*metricdata.ResourceMetrics {
		var out []*metricdata.ResourceMetrics
		now := time.Now()
		for i := range 200 {
			res := resource.NewSchemaless(attribute.String("case", name), attribute.Int("n", i),
				attribute.String("container.image.name", "registry.example/team/service"), attribute.String("host.name", "host-1"))
			out = append(out, testRound(res, now.Add(-time.Minute), now, 100)...)
		}
		return out
	}
	send := func(t *testing.T, name string, layer OTLPSettings, env map[string]string) int64 {
		t.Helper()
		cfg := DefaultConfig()
		cfg.OTLP = layer
		cfg.Getenv = envOf(env)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ms, lex, err := NewOTLP(ctx, &cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer lex.Shutdown(context.Background())
		defer ms.Shutdown(context.Background())
		if err := ms.ExportMetrics(ctx, batch(name)); err != nil {
			t.Fatalf("export: %v", err)
		}
		col.WaitMetrics(t, 30*time.Second, func(m *testbed.Metrics) bool {
			return len(m.ResourcesWith(map[string]string{"case": name})) == 200
		})
		return 0
	}
	for _, proto := range []string{ProtocolGRPC, ProtocolHTTPProtobuf} {
		target, scheme := col.Endpoint(), "http://"
		if proto == ProtocolHTTPProtobuf {
			target = col.HTTPEndpoint()
		}
		bytesOf := func(t *testing.T, name string, file OTLPSettings, env map[string]string) int64 {
			p := startCountingProxy(t, target)
			file.Protocol, file.Endpoint = proto, scheme+p.l.Addr().String()
			send(t, name, file, env)
			// The proxy counts a connection's bytes when it ends: shutting
			// the exporters down ended them; wait for the copies.
			p.l.Close()
			p.mu.Lock()
			for _, c := range p.conns {
				c.Close()
			}
			p.mu.Unlock()
			p.wg.Wait()
			return p.sent.Load()
		}
		t.Run(proto, func(t *testing.T) {
			plain := bytesOf(t, proto+"-none", OTLPSettings{}, nil)
			cases := []struct {
				name string
				file OTLPSettings
				env  map[string]string
				gzip bool
			}{
				{name: "gzip from export.compression", file: OTLPSettings{Compression: "gzip"}, gzip: true},
				{name: "gzip from OTEL_EXPORTER_OTLP_COMPRESSION", env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, gzip: true},
				{name: "gzip from OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "gzip"}, gzip: true},
				{name: "compression none in the file over gzip in the environment", file: OTLPSettings{Compression: "none"}, env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}},
			}
			for i, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					n := bytesOf(t, fmt.Sprintf("%s-%d", proto, i), c.file, c.env)
					t.Logf("%d bytes on the wire, %d uncompressed", n, plain)
					if c.gzip && n*3 > plain {
						t.Errorf("%d bytes on the wire with gzip, %d without: not compressed", n, plain)
					}
					if !c.gzip && n*10 < plain*9 {
						t.Errorf("%d bytes on the wire, %d without compression: compressed although none was configured", n, plain)
					}
				})
			}
		})
	}
}

// TestOTLPDeltaTemporalityAtTheCollector sends two rounds of a counter
// (100, then 250, from the same start) and reads back what the collector
// received: with the delta preference 100 from the start, then 150 from
// the first round's time; cumulative (the default, and lowmemory, which
// keeps agentd's observed counters cumulative) the values as they are.
// Gauges never change.
func TestOTLPDeltaTemporalityAtTheCollector(t *testing.T) {
	col := testbed.StartCollector(t, testbed.WithHTTPReceiver())
	cases := []struct {
		name  string
		file  OTLPSettings
		env   map[string]string
		delta bool
	}{
		{name: "delta from export.temporality over gRPC", file: OTLPSettings{Temporality: "delta"}, delta: true},
		{name: "delta from the environment over OTLP/HTTP", file: OTLPSettings{Protocol: ProtocolHTTPProtobuf},
			env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}, delta: true},
		{name: "cumulative by default", file: OTLPSettings{}},
		{name: "cumulative from the file over delta in the environment", file: OTLPSettings{Temporality: "cumulative"},
			env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}},
		{name: "lowmemory keeps observed counters cumulative", file: OTLPSettings{Temporality: "lowmemory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := strings.ReplaceAll(c.name, " ", "_")
			layer := plainLayer(col, c.file)
			cfg := DefaultConfig()
			cfg.OTLP, cfg.Getenv = layer, envOf(c.env)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ms, lex, err := NewOTLP(ctx, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer lex.Shutdown(context.Background())
			defer ms.Shutdown(context.Background())
			res := resource.NewSchemaless(attribute.String("case", name))
			start := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
			t1, t2 := start.Add(30*time.Second), start.Add(40*time.Second)
			for _, r := range []struct {
				at time.Time
				v  int64
			}{{t1, 100}, {t2, 250}} {
				if err := ms.ExportMetrics(ctx, testRound(res, start, r.at, r.v)); err != nil {
					t.Fatalf("export: %v", err)
				}
			}
			m := col.WaitMetrics(t, 30*time.Second, func(m *testbed.Metrics) bool {
				c := m.Metric(map[string]string{"case": name}, "test.counter")
				return c != nil && len(c.Points) == 2
			})
			counter := m.Metric(map[string]string{"case": name}, "test.counter")
			type pt struct {
				start, time time.Time
				v           int64
			}
			want := []pt{{start, t1, 100}, {start, t2, 250}}
			wantTemp := "cumulative"
			if c.delta {
				want = []pt{{start, t1, 100}, {t1, t2, 150}}
				wantTemp = "delta"
			}
			if counter.Temporality != wantTemp || !counter.Monotonic {
				t.Errorf("test.counter temporality %q monotonic %t, want %q monotonic", counter.Temporality, counter.Monotonic, wantTemp)
			}
			for i, p := range counter.Points {
				got := pt{p.Start, p.Time, p.Int}
				if !got.start.Equal(want[i].start) || !got.time.Equal(want[i].time) || got.v != want[i].v || p.Attrs["dir"] != "rx" {
					t.Errorf("point %d: start %v time %v value %d attrs %v, want start %v time %v value %d", i, got.start, got.time, got.v, p.Attrs, want[i].start, want[i].time, want[i].v)
				}
			}
			gauge := m.Metric(map[string]string{"case": name}, "test.gauge")
			if gauge == nil || len(gauge.Points) != 2 || gauge.Points[0].Value != 50 || gauge.Points[1].Value != 125 {
				t.Errorf("test.gauge = %+v, want 50 then 125", gauge)
			}
		})
	}
}

// TestOTLPTimeoutAgainstAStalledCollector proves the timeout setting, from
// the file and from the environment, over gRPC and OTLP/HTTP: against a
// collector frozen with SIGSTOP (connections accepted, never answered) every
// delivery attempt ends at the timeout, not at the 10 s default, and is
// retried; once the collector resumes, the round and the event arrive. The
// stall is held 15 s, longer than the default timeout and the queue's
// reconnect delay.
func TestOTLPTimeoutAgainstAStalledCollector(t *testing.T) {
	col := testbed.StartCollector(t, testbed.WithHTTPReceiver())
	const stall = 15 * time.Second
	cases := []struct {
		name    string
		file    OTLPSettings
		env     map[string]string
		timeout time.Duration
	}{
		{name: "gRPC with export.timeout", file: OTLPSettings{Timeout: time.Second}, timeout: time.Second},
		{name: "OTLP/HTTP with export.timeout", file: OTLPSettings{Protocol: ProtocolHTTPProtobuf, Timeout: time.Second}, timeout: time.Second},
		{name: "gRPC with OTEL_EXPORTER_OTLP_TIMEOUT", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "1500"}, timeout: 1500 * time.Millisecond},
		{name: "OTLP/HTTP with per-signal timeouts from the environment", file: OTLPSettings{Protocol: ProtocolHTTPProtobuf},
			env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "1500", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "1500"}, timeout: 1500 * time.Millisecond},
		{name: "gRPC with export.timeout over the environment", file: OTLPSettings{Timeout: time.Second},
			env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "9000"}, timeout: time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := strings.ReplaceAll(c.name, " ", "_")
			layer := plainLayer(col, c.file)
			resume := col.Stall(t)
			began := time.Now()
			outcomes, err := startExport(t, name, layer, c.env)
			if err != nil {
				t.Fatalf("export: %v", err)
			}
			// Count the failed attempts during the stall, and keep the
			// longest one: each must end at the timeout.
			failed := map[string]int{}
			prev := map[string]time.Time{SignalMetrics: began, SignalEvents: began}
			var longest time.Duration
			for end := time.After(stall); ; {
				select {
				case o := <-outcomes:
					if o.err == nil {
						t.Fatalf("%s delivered to a stalled collector", o.signal)
					}
					failed[o.signal]++
					if d := o.at.Sub(prev[o.signal]); d > longest {
						longest = d
					}
					prev[o.signal] = o.at
					continue
				case <-end:
				}
				break
			}
			resume()
			t.Logf("stalled %v: failed attempts %v, longest %v (timeout %v)", stall, failed, longest.Round(time.Millisecond), c.timeout)
			// With the 10 s default, 15 s hold at most two attempts per
			// signal; with the timeout set, each attempt ends within it
			// (plus the reconnect delay between attempts).
			if longest > c.timeout+reconnectMaxDelay+time.Second {
				t.Errorf("an attempt took %v with a %v timeout", longest, c.timeout)
			}
			for _, sig := range []string{SignalMetrics, SignalEvents} {
				if failed[sig] < 3 {
					t.Errorf("%s: %d failed attempts in %v with a %v timeout, want at least 3", sig, failed[sig], stall, c.timeout)
				}
			}
			waitCase(t, col, name)
		})
	}
}

// plainLayer is layer sent to col without TLS, over the protocol layer
// names: the collector's HTTP receiver for OTLP/HTTP, else its gRPC one.
func plainLayer(col *testbed.Otelcol, layer OTLPSettings) OTLPSettings {
	if layer.Protocol == ProtocolHTTPProtobuf {
		layer.Endpoint = "http://" + col.HTTPEndpoint()
	} else {
		layer.Endpoint, layer.Insecure = col.Endpoint(), boolp(true)
	}
	return layer
}
