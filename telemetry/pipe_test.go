package telemetry_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// The pipe tests prove the path every agentd signal takes before any feature
// uses it: the OpenTelemetry SDK's OTLP/gRPC exporters, a real OpenTelemetry
// Collector (testbed/collector.sh), and its file output read back by
// internal/testbed.

// pipeResource is a resource with a unique test ID, an int and a string slice,
// so the assertions also cover how non-string attributes travel.
func pipeResource(t *testing.T) (*resource.Resource, string) {
	t.Helper()
	id := fmt.Sprintf("%s-%08x", t.Name(), rand.Uint32())
	return resource.NewSchemaless(
		attribute.String("service.name", "agentd-pipe-test"),
		attribute.String("agentd.test", id),
		attribute.Int("agentd.test.attempt", 1),
		attribute.StringSlice("container.image.tags", []string{"1.0", "latest"}),
	), id
}

func TestMetricsReachTheCollector(t *testing.T) {
	t.Parallel()
	col := testbed.StartCollector(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, id := pipeResource(t)

	exp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithInsecure(), otlpmetricgrpc.WithEndpoint(col.Endpoint()))
	if err != nil {
		t.Fatalf("otlpmetricgrpc exporter: %v", err)
	}
	// The interval is long so that only the explicit ForceFlush exports.
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
	counter, err := mp.Meter("agentd/pipe-test").Int64Counter("agentd.test.pipe",
		metric.WithUnit("{item}"), metric.WithDescription("Items sent through the pipe test."))
	if err != nil {
		t.Fatalf("counter: %v", err)
	}
	counter.Add(ctx, 3, metric.WithAttributes(attribute.String("pipe.kind", "a")))
	counter.Add(ctx, 4, metric.WithAttributes(attribute.String("pipe.kind", "a")))
	counter.Add(ctx, 5, metric.WithAttributes(attribute.String("pipe.kind", "b")))
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatalf("force flush to %s: %v", col.Endpoint(), err)
	}
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatalf("meter provider shutdown: %v", err)
	}

	mine := map[string]string{"agentd.test": id}
	got := col.WaitMetrics(t, 10*time.Second, func(m *testbed.Metrics) bool {
		return m.Metric(mine, "agentd.test.pipe") != nil
	})

	res0 := got.ResourcesWith(mine)
	if len(res0) != 1 {
		t.Fatalf("resources with agentd.test=%s: %d, want 1; %s", id, len(res0), got.Summary())
	}
	t.Run("the resource keeps its attributes with their types rendered", func(t *testing.T) {
		want := map[string]string{
			"service.name":         "agentd-pipe-test",
			"agentd.test":          id,
			"agentd.test.attempt":  "1",
			"container.image.tags": `["1.0","latest"]`,
		}
		for k, v := range want {
			if res0[0].Attrs[k] != v {
				t.Errorf("resource attribute %s = %q, want %q (all: %v)", k, res0[0].Attrs[k], v, res0[0].Attrs)
			}
		}
	})
	t.Run("the counter arrives as a monotonic cumulative int sum with its metadata", func(t *testing.T) {
		m := res0[0].Metric("agentd.test.pipe")
		if m.Type != "sum" || !m.Monotonic || m.Temporality != "cumulative" {
			t.Errorf("type %q monotonic %v temporality %q, want a monotonic cumulative sum", m.Type, m.Monotonic, m.Temporality)
		}
		if m.Unit != "{item}" || m.Description != "Items sent through the pipe test." || m.Scope != "agentd/pipe-test" {
			t.Errorf("unit %q description %q scope %q", m.Unit, m.Description, m.Scope)
		}
	})
	t.Run("each attribute set carries its sum", func(t *testing.T) {
		m := res0[0].Metric("agentd.test.pipe")
		for kind, want := range map[string]int64{"a": 7, "b": 5} {
			p, ok := m.Last(map[string]string{"pipe.kind": kind})
			if !ok {
				t.Errorf("no point with pipe.kind=%s; %s", kind, got.Summary())
				continue
			}
			if !p.IsInt || p.Int != want || p.Value != float64(want) {
				t.Errorf("pipe.kind=%s: int %v %d value %v, want %d", kind, p.IsInt, p.Int, p.Value, want)
			}
			if p.Time.IsZero() || p.Start.IsZero() || p.Time.Before(p.Start) {
				t.Errorf("pipe.kind=%s: start %v time %v", kind, p.Start, p.Time)
			}
		}
	})
}

func TestEventsReachTheCollector(t *testing.T) {
	t.Parallel()
	col := testbed.StartCollector(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, id := pipeResource(t)

	exp, err := otlploggrpc.New(ctx, otlploggrpc.WithInsecure(), otlploggrpc.WithEndpoint(col.Endpoint()))
	if err != nil {
		t.Fatalf("otlploggrpc exporter: %v", err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	logger := lp.Logger("agentd/pipe-test")

	var rec log.Record
	rec.SetEventName("container.die")
	rec.SetTimestamp(time.Now())
	rec.SetSeverity(log.SeverityWarn)
	rec.SetSeverityText("WARN")
	rec.SetBody(attribute.StringValue("container exited with code 137"))
	rec.AddAttributes(
		attribute.Int("container.exit_code", 137),
		attribute.String("container.signal", "SIGKILL"),
		attribute.Bool("container.oom", true),
	)
	logger.Emit(ctx, rec)
	if err := lp.ForceFlush(ctx); err != nil {
		t.Fatalf("force flush to %s: %v", col.Endpoint(), err)
	}
	if err := lp.Shutdown(ctx); err != nil {
		t.Fatalf("logger provider shutdown: %v", err)
	}

	mine := map[string]string{"agentd.test": id}
	got := col.WaitLogs(t, 10*time.Second, func(l *testbed.Logs) bool {
		return len(l.Filter(func(r testbed.LogRecord) bool { return r.HasResource(mine) })) > 0
	})

	recs := got.Filter(func(r testbed.LogRecord) bool { return r.HasResource(mine) })
	if len(recs) != 1 {
		t.Fatalf("records of resource agentd.test=%s: %d, want 1; %s", id, len(recs), got.Summary())
	}
	r := recs[0]
	t.Run("the record keeps its event name, severity and body", func(t *testing.T) {
		if r.EventName != "container.die" || r.Severity != int(log.SeverityWarn) || r.SeverityText != "WARN" {
			t.Errorf("event %q severity %d %q, want container.die %d WARN", r.EventName, r.Severity, r.SeverityText, log.SeverityWarn)
		}
		if r.Body != "container exited with code 137" {
			t.Errorf("body %q", r.Body)
		}
		if r.Scope != "agentd/pipe-test" || r.Time.IsZero() {
			t.Errorf("scope %q time %v", r.Scope, r.Time)
		}
	})
	t.Run("the record keeps its typed attributes", func(t *testing.T) {
		want := map[string]string{"container.exit_code": "137", "container.signal": "SIGKILL", "container.oom": "true"}
		if !r.HasAttrs(want) {
			t.Errorf("attributes %v, want %v", r.Attrs, want)
		}
	})
	t.Run("the record carries its resource", func(t *testing.T) {
		if r.Resource["service.name"] != "agentd-pipe-test" || r.Resource["container.image.tags"] != `["1.0","latest"]` {
			t.Errorf("resource %v", r.Resource)
		}
	})
	t.Run("Events finds the record by its event name", func(t *testing.T) {
		if n := len(got.Events("container.die")); n != 1 {
			t.Errorf("Events(container.die) = %d records, want 1", n)
		}
	})
}
