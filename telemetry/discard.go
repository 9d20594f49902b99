package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Discard is the sink of an agent that exports nothing and prints nothing:
// a service with no OTLP endpoint configured, whose stdout is the journal.
// The model, the status socket and `agentd status` still show everything.
type Discard struct{}

var (
	_ MetricSink   = Discard{}
	_ log.Exporter = Discard{}
)

// ExportMetrics drops the round.
func (Discard) ExportMetrics(context.Context, []*metricdata.ResourceMetrics) error { return nil }

// Export drops the records.
func (Discard) Export(context.Context, []log.Record) error { return nil }

// ForceFlush has nothing to flush.
func (Discard) ForceFlush(context.Context) error { return nil }

// Shutdown has nothing to stop.
func (Discard) Shutdown(context.Context) error { return nil }
