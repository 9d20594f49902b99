package telemetry

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/agentd-dev/agentd/stats"
)

// fakeMetricsServer records what reaches an OTLP metrics endpoint and
// answers with the scripted errors and partial successes, in order.
type fakeMetricsServer struct {
	colmetricpb.UnimplementedMetricsServiceServer
	mu        sync.Mutex
	requests  []*colmetricpb.ExportMetricsServiceRequest
	headers   []metadata.MD
	failures  []error
	rejecting int64
	discard   bool // keep no requests (benchmarks)
}

func (f *fakeMetricsServer) Export(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	f.headers = append(f.headers, md)
	if len(f.failures) > 0 {
		err := f.failures[0]
		f.failures = f.failures[1:]
		return nil, err
	}
	if !f.discard {
		f.requests = append(f.requests, req)
	}
	resp := &colmetricpb.ExportMetricsServiceResponse{}
	if f.rejecting > 0 {
		resp.PartialSuccess = &colmetricpb.ExportMetricsPartialSuccess{RejectedDataPoints: f.rejecting, ErrorMessage: "too old"}
	}
	return resp, nil
}

func startFakeMetricsServer(t testing.TB, f *fakeMetricsServer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if f.discard {
		opts = append(opts, grpc.ForceServerCodecV2(discardCodec{}))
	}
	srv := grpc.NewServer(opts...)
	colmetricpb.RegisterMetricsServiceServer(srv, f)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

// insecureOTLP returns the OTLP sink of NewOTLP for a plaintext endpoint,
// perRequest resources a request (0: the default), shut down when tb ends.
func insecureOTLP(tb testing.TB, endpoint string, perRequest int) *OTLPMetrics {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.Endpoint = endpoint
	insecure := true
	cfg.Insecure = &insecure
	cfg.ResourcesPerRequest = perRequest
	ms, lx, err := NewOTLP(context.Background(), &cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = lx.Shutdown(context.Background()); _ = ms.Shutdown(context.Background()) })
	return ms.(*OTLPMetrics)
}

// settled waits until the sink's export queue has delivered (or dropped)
// every metrics request: exports only queue them.
func settled(tb testing.TB, ms *OTLPMetrics) {
	tb.Helper()
	for deadline := time.Now().Add(30 * time.Second); ms.queue.Stats().Requests[SignalMetrics] > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("export queue not drained within 30 s: %+v", ms.queue.Stats())
		}
	}
}

// discardCodec is a server codec that does not decode requests, so that a
// benchmark measures the client alone.
type discardCodec struct{ exactCodec }

func (discardCodec) Unmarshal(mem.BufferSlice, any) error { return nil }

// TestBatchedExportKeepsTheExportersSettings checks the plumbing of batching:
// the headers from OTEL_EXPORTER_OTLP_HEADERS reach every batched request,
// retryable failures are retried and rejected points are reported. (The real
// collector tests prove the data itself.)
func TestBatchedExportKeepsTheExportersSettings(t *testing.T) {
	cs, es := fixedWorkload(300)
	newSink := func(t *testing.T, f *fakeMetricsServer) (*OTLPMetrics, int) {
		t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-agentd-test=batched")
		cfg := DefaultConfig()
		return insecureOTLP(t, startFakeMetricsServer(t, f), 0), len(newBuilder(&cfg, Host{Name: "h"}, "test").build(time.Now(), cs, es))
	}
	export := func(ms *OTLPMetrics) error {
		cfg := DefaultConfig()
		return ms.ExportMetrics(context.Background(), newBuilder(&cfg, Host{Name: "h"}, "test").build(time.Now(), cs, es))
	}
	t.Run("every request carries the configured headers and the resources arrive batched", func(t *testing.T) {
		f := &fakeMetricsServer{}
		ms, n := newSink(t, f)
		if err := export(ms); err != nil {
			t.Fatal(err)
		}
		settled(t, ms)
		got := 0
		for i, r := range f.requests {
			got += len(r.GetResourceMetrics())
			if v := f.headers[i].Get("x-agentd-test"); len(v) != 1 || v[0] != "batched" {
				t.Errorf("request %d headers %v", i, f.headers[i])
			}
		}
		if want := (n + DefaultResourcesPerRequest - 1) / DefaultResourcesPerRequest; len(f.requests) != want || got != n {
			t.Fatalf("%d resources in %d requests, want %d in %d", got, len(f.requests), n, want)
		}
	})
	t.Run("an unavailable collector is retried", func(t *testing.T) {
		f := &fakeMetricsServer{failures: []error{status.Error(codes.Unavailable, "restarting")}}
		ms, n := newSink(t, f)
		if err := export(ms); err != nil {
			t.Fatalf("one Unavailable answer failed the export: %v", err)
		}
		settled(t, ms)
		got := 0
		for _, r := range f.requests {
			got += len(r.GetResourceMetrics())
		}
		if got != n {
			t.Fatalf("%d of %d resources arrived", got, n)
		}
	})
	t.Run("a permanent failure drops the requests it hit, counted, and the others arrive", func(t *testing.T) {
		f := &fakeMetricsServer{failures: []error{status.Error(codes.InvalidArgument, "bad"), status.Error(codes.InvalidArgument, "bad")}}
		ms, n := newSink(t, f)
		if err := export(ms); err != nil {
			t.Fatal(err)
		}
		settled(t, ms)
		if d := ms.queue.Stats().Dropped[[2]string{SignalMetrics, DropRejected}]; d != 2 {
			t.Errorf("dropped %d requests as rejected, want 2", d)
		}
		f.mu.Lock()
		got := len(f.requests)
		f.mu.Unlock()
		if got != (n+DefaultResourcesPerRequest-1)/DefaultResourcesPerRequest-2 {
			t.Errorf("%d requests arrived", got)
		}
	})
	t.Run("rejected data points are counted", func(t *testing.T) {
		f := &fakeMetricsServer{rejecting: 7}
		ms, _ := newSink(t, f)
		if err := export(ms); err != nil {
			t.Fatal(err)
		}
		settled(t, ms)
		if d := ms.queue.Stats().Dropped[[2]string{SignalMetrics, DropRejected}]; d != 3 {
			t.Errorf("counted %d requests with rejected points, want 3", d)
		}
	})
}

// TestExactCodec: a request marshals into one buffer of exactly its size,
// decodes back to the same message, and what is not a protobuf message is an
// error naming its type.
func TestExactCodec(t *testing.T) {
	req := &colmetricpb.ExportMetricsServiceRequest{}
	for i := range 50 {
		req.ResourceMetrics = append(req.ResourceMetrics, &metricpb.ResourceMetrics{SchemaUrl: strings.Repeat("x", 100+i)})
	}
	data, err := exactCodec{}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1 || data.Len() != proto.Size(req) || cap(data[0].ReadOnlyData()) != proto.Size(req) {
		t.Fatalf("marshalled into %d buffers, %d bytes, capacity %d; want one buffer of exactly %d bytes",
			len(data), data.Len(), cap(data[0].ReadOnlyData()), proto.Size(req))
	}
	got := new(colmetricpb.ExportMetricsServiceRequest)
	if err := (exactCodec{}).Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, req) {
		t.Fatal("decoded request differs from the marshalled one")
	}
	if _, err := (exactCodec{}).Marshal("not a message"); err == nil || !strings.Contains(err.Error(), "string") {
		t.Fatalf("Marshal(string) = %v, want an error naming the type", err)
	}
	if err := (exactCodec{}).Unmarshal(data, new(int)); err == nil || !strings.Contains(err.Error(), "*int") {
		t.Fatalf("Unmarshal(*int) = %v, want an error naming the type", err)
	}
	if err := (exactCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0xff})}, got); err == nil {
		t.Fatal("Unmarshal of a truncated message succeeded")
	}
}

// BenchmarkExport500 is one round of 500 containers and an engine through
// the OTLP sink, as the pipeline does it (one builder across rounds, so the
// resources are the cached ones), to a local OTLP server: the SDK's transform,
// the marshal and the gRPC send.
func BenchmarkExport500(b *testing.B) {
	ms := insecureOTLP(b, startFakeMetricsServer(b, &fakeMetricsServer{discard: true}), 0)
	ctx := context.Background()
	cfg := DefaultConfig()
	bl := newBuilder(&cfg, Host{Name: "h", ID: "id"}, "test")
	cs, es := fixedWorkload(500)
	b.ReportAllocs()
	for b.Loop() {
		if err := ms.exportRound(ctx, bl.prepare(time.Now(), cs, es)); err != nil {
			b.Fatal(err)
		}
		settled(b, ms)
	}
}

// TestResourcesTransformedOnce: a resource that comes back round after round
// is sent complete every time although the SDK transforms it once, and a
// container whose resource changed is sent with the new one.
func TestResourcesTransformedOnce(t *testing.T) {
	f := &fakeMetricsServer{}
	ms := insecureOTLP(t, startFakeMetricsServer(t, f), 0)
	counter := &resourceCounter{ResourceExporter: ms.exp}
	ms.exp = counter
	ctx := context.Background()
	cfg := DefaultConfig()
	bl := newBuilder(&cfg, Host{Name: "h", ID: "id"}, "test")
	cs, es := fixedWorkload(3)
	round := func() []*metricpb.ResourceMetrics {
		t.Helper()
		f.mu.Lock()
		f.requests = nil
		f.mu.Unlock()
		if err := ms.ExportMetrics(ctx, bl.build(time.Now(), cs, es)); err != nil {
			t.Fatal(err)
		}
		settled(t, ms)
		f.mu.Lock()
		defer f.mu.Unlock()
		var rms []*metricpb.ResourceMetrics
		for _, r := range f.requests {
			rms = append(rms, r.GetResourceMetrics()...)
		}
		return rms
	}
	if err := ms.ExportMetrics(ctx, nil); err != nil {
		t.Fatalf("an empty round before the first: %v", err)
	}
	first := round()
	if len(first) != 4 {
		t.Fatalf("first round: %d resources, want 4", len(first))
	}
	for i := range 2 {
		again := round()
		if len(again) != len(first) {
			t.Fatalf("round %d: %d resources, want %d", i+2, len(again), len(first))
		}
		for j := range again {
			if !proto.Equal(again[j].GetResource(), first[j].GetResource()) || again[j].GetSchemaUrl() != first[j].GetSchemaUrl() {
				t.Fatalf("round %d, resource %d: %v (schema %q), want %v (schema %q)", i+2, j,
					again[j].GetResource(), again[j].GetSchemaUrl(), first[j].GetResource(), first[j].GetSchemaUrl())
			}
			if len(again[j].GetResource().GetAttributes()) == 0 || again[j].GetSchemaUrl() == "" {
				t.Fatalf("round %d, resource %d has no attributes or schema", i+2, j)
			}
		}
	}
	if err := ms.ExportMetrics(ctx, nil); err != nil {
		t.Fatalf("an empty round: %v", err)
	}
	if counter.withResource != 4 {
		t.Fatalf("the SDK transformed %d resources in three rounds of the same 4, want 4", counter.withResource)
	}
	cs[1].container.Name = "renamed"
	renamed := round()
	if counter.withResource != 5 {
		t.Fatalf("the SDK transformed %d resources, want 5 (the renamed container's new one)", counter.withResource)
	}
	name := func(rm *metricpb.ResourceMetrics) string {
		for _, kv := range rm.GetResource().GetAttributes() {
			if kv.GetKey() == "container.name" {
				return kv.GetValue().GetStringValue()
			}
		}
		return ""
	}
	if got := name(renamed[1]); got != "renamed" {
		t.Fatalf("after the rename the resource says container.name %q", got)
	}
	if got := name(renamed[0]); got != "c0" {
		t.Fatalf("an unchanged container says container.name %q", got)
	}
}

// resourceCounter counts the exports that hand the SDK a resource to transform.
type resourceCounter struct {
	ResourceExporter
	withResource int
}

func (r *resourceCounter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	if rm.Resource != nil {
		r.withResource++
	}
	return r.ResourceExporter.Export(ctx, rm)
}

// TestWireRecordsMatchTheSDK: what OTLPMetrics sends, written by its
// wireRecords, is what the SDK exporter's own transform sends for the same
// round, over rounds whose values and times change and whose shape changes
// (a network interface comes and goes, a resource changes, a gauge gets a
// start time); data wireRecords does not encode (a histogram, a slice-valued
// attribute) goes through the SDK and arrives as well.
func TestWireRecordsMatchTheSDK(t *testing.T) {
	f := &fakeMetricsServer{}
	ms := insecureOTLP(t, startFakeMetricsServer(t, f), 2)
	ctx := context.Background()
	cfg := DefaultConfig()
	bl := newBuilder(&cfg, Host{Name: "h", ID: "id"}, "test")
	cs, es := fixedWorkload(5)
	received := func() []*metricpb.ResourceMetrics {
		f.mu.Lock()
		defer f.mu.Unlock()
		var rms []*metricpb.ResourceMetrics
		for _, r := range f.requests {
			rms = append(rms, r.GetResourceMetrics()...)
		}
		f.requests = nil
		return rms
	}
	gaugeAt := time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)
	odd := &metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{{
		Scope: instrumentation.Scope{Name: "odd"},
		Metrics: []metricdata.Metrics{
			{Name: "h", Data: metricdata.Histogram[int64]{Temporality: metricdata.DeltaTemporality,
				DataPoints: []metricdata.HistogramDataPoint[int64]{{Count: 2, Bounds: []float64{1}, BucketCounts: []uint64{1, 1}}}}},
		},
	}, {
		Scope: instrumentation.Scope{Name: "sliced"},
		Metrics: []metricdata.Metrics{
			{Name: "g", Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{
				{Attributes: attribute.NewSet(attribute.StringSlice("k", []string{"a", "b"})), Value: 3}}}},
		},
	}}}
	gauge := metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{{Value: -1.5,
		Attributes: attribute.NewSet(attribute.Bool("b", false), attribute.Int("i", -7), attribute.Float64("f", 0.25), attribute.String("s", ""))}}}
	own := &metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{{
		Scope:   instrumentation.Scope{Name: "own", Version: "1", SchemaURL: "https://example.com/s"},
		Metrics: []metricdata.Metrics{{Name: "g", Description: "a gauge", Unit: "1", Data: gauge}, {Name: "d", Data: metricdata.Sum[int64]{Temporality: metricdata.DeltaTemporality, DataPoints: []metricdata.DataPoint[int64]{{Value: 0}}}}},
	}}}
	for round := range 6 {
		now := time.Date(2026, 12, 1, 12, 0, round*10, 0, time.UTC)
		for i := range cs {
			cs[i].stats.CPUUserNanos += uint64(round+i) * 1e6
			cs[i].stats.MemoryUsage += uint64(round) << 10
		}
		gauge.DataPoints[0].Time, gauge.DataPoints[0].Value = now, float64(round)
		switch round {
		case 1:
			cs[2].stats.Networks = append(cs[2].stats.Networks, stats.Interface{Name: "eth1", RxBytes: 7, TxBytes: 8})
		case 2:
			cs[2].stats.Networks = cs[2].stats.Networks[:1]
			cs[1].container.Name = "renamed"
			gauge.DataPoints[0].StartTime = gaugeAt
		case 3:
			gauge.DataPoints[0].StartTime = time.Time{}
			gauge.DataPoints[0].Attributes = attribute.NewSet(attribute.String("s", "other"))
		}
		batch := append(bl.build(now, cs, es), odd, own)
		if err := ms.ExportMetrics(ctx, batch); err != nil {
			t.Fatal(err)
		}
		settled(t, ms)
		got := received()
		ms.captured = false // the SDK alone, one request a resource
		err := ms.ExportMetrics(ctx, batch)
		ms.captured = true
		if err != nil {
			t.Fatal(err)
		}
		want := received()
		if len(got) != len(batch) || len(want) != len(batch) {
			t.Fatalf("round %d: %d resources through the records, %d through the SDK, want %d", round, len(got), len(want), len(batch))
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Fatalf("round %d, resource %d:\nrecords %v\nSDK     %v", round, i, got[i], want[i])
			}
		}
	}
}

// TestWireRecordsAppendARoundWithoutAllocating: a round of records appended
// into a buffer as large as the last round's allocates nothing but the
// builder's few, and carries the new values. The round is streamed, as
// OTLPMetrics has it: each entry made into the builder's scratch and
// appended before the next.
func TestWireRecordsAppendARoundWithoutAllocating(t *testing.T) {
	cfg := DefaultConfig()
	bl := newBuilder(&cfg, Host{Name: "h", ID: "id"}, "test")
	cs, es := fixedWorkload(3)
	var w wireRecords
	res := []byte{0x0a, 0x00}
	buf := make([]byte, 0, 64<<10)
	round := func(now time.Time) []byte {
		b := buf[:0]
		r := bl.prepare(now, cs, es)
		for i := range r.Len() {
			var ok bool
			if b, ok = w.appendRecord(b, r.Metrics(i), res, "s"); !ok {
				t.Fatal("the builder's data is not encodable")
			}
		}
		return b
	}
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	first := round(t0)
	cs[0].stats.Pids = 99
	second := round(t0.Add(10 * time.Second))
	if len(second) != len(first) || &second[0] != &buf[:1][0] {
		t.Fatalf("a round of the same shape is %d bytes (was %d), or left the buffer", len(second), len(first))
	}
	if !bytes.Contains(second, binary.LittleEndian.AppendUint64(nil, 99)) {
		t.Fatal("the round does not carry the first container's new PID count")
	}
	if allocs := testing.AllocsPerRun(10, func() { round(t0.Add(30 * time.Second)) }); allocs > 20 {
		t.Fatalf("a round allocates %v times, want the builder's few", allocs)
	}
}
