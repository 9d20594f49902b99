package telemetry

import (
	"sort"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// agentOut is agentd's own resource, the export queue's metrics'.
type agentOut struct {
	res   *resource.Resource
	start time.Time
}

// agentResource returns agentd's own resource, made the first time (its
// counters start at now).
func (b *builder) agentResource(now time.Time) *agentOut {
	if b.agent == nil {
		kv := b.host.attrs([]attribute.KeyValue{semconv.ServiceName("agentd"), semconv.ServiceVersion(b.scope.Version)})
		b.agent = &agentOut{res: resource.NewWithAttributes(semconv.SchemaURL, kv...), start: now}
	}
	return b.agent
}

// agentMetrics makes the ResourceMetrics of agentd itself for the queue
// stats s into o.
func (b *builder) agentMetrics(o *containerOut, s QueueStats, now time.Time) *metricdata.ResourceMetrics {
	a := b.agentResource(now)
	o.ms = o.ms[:0]
	keys := make([][2]string, 0, len(s.Dropped))
	for k := range s.Dropped {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || (keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1])
	})
	if len(keys) > 0 {
		pts := o.int(mExportDropped, len(keys))
		for i, k := range keys {
			pts[i] = metricdata.DataPoint[int64]{
				Attributes: attribute.NewSet(attribute.String(AttrExportSignal, k[0]), attribute.String(AttrExportReason, k[1])),
				StartTime:  a.start, Time: now, Value: s.Dropped[k],
			}
		}
	}
	gaugeOf(o.int(mExportQueueSize, 1), s.Bytes, now)
	o.scope[0] = metricdata.ScopeMetrics{Scope: b.scope, Metrics: o.ms}
	o.rm = metricdata.ResourceMetrics{Resource: a.res, ScopeMetrics: o.scope[:]}
	return &o.rm
}
