package telemetry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// DeltaSink sends the monotonic cumulative sums of every round as deltas
// (the "delta" temporality preference) and everything else as it is:
// gauges, and non-monotonic sums, which the specification keeps cumulative
// under that preference. A point's delta runs from the time of the
// series' last delivered point to its own time; the first point of a series
// (and the first after its counter reset or its start time changed) is its
// whole cumulative value since its start time. The state moves on only when
// a round is delivered without error, so a round that is retried or
// follows a failed one carries the whole change since the last delivered
// round: nothing counted is lost. Safe for concurrent use; exports are
// serialized.
type DeltaSink struct {
	next MetricSink

	mu   sync.Mutex
	last map[deltaKey]deltaPoint // of the last delivered round
}

var _ MetricSink = (*DeltaSink)(nil)

type deltaKey struct {
	resource attribute.Distinct
	scope    string
	metric   string
	attrs    attribute.Distinct
}

type deltaPoint struct {
	start, time time.Time
	f           float64
	i           int64
}

// NewDeltaSink returns a sink converting rounds to delta before next gets
// them.
func NewDeltaSink(next MetricSink) *DeltaSink {
	return &DeltaSink{next: next, last: map[deltaKey]deltaPoint{}}
}

// ExportMetrics converts the batch (which it does not change) and exports
// the converted copy.
func (d *DeltaSink) ExportMetrics(ctx context.Context, batch []*metricdata.ResourceMetrics) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := make(map[deltaKey]deltaPoint, len(d.last))
	out := make([]*metricdata.ResourceMetrics, len(batch))
	for i, rm := range batch {
		out[i] = d.convert(rm, next)
	}
	if err := d.next.ExportMetrics(ctx, out); err != nil {
		return err
	}
	d.last = next
	return nil
}

func (d *DeltaSink) convert(rm *metricdata.ResourceMetrics, next map[deltaKey]deltaPoint) *metricdata.ResourceMetrics {
	c := *rm
	var res attribute.Distinct
	if rm.Resource != nil {
		res = rm.Resource.Equivalent()
	}
	c.ScopeMetrics = make([]metricdata.ScopeMetrics, len(rm.ScopeMetrics))
	for i, sm := range rm.ScopeMetrics {
		cs := sm
		cs.Metrics = make([]metricdata.Metrics, len(sm.Metrics))
		for j, m := range sm.Metrics {
			k := deltaKey{resource: res, scope: sm.Scope.Name, metric: m.Name}
			switch a := m.Data.(type) {
			case metricdata.Sum[int64]:
				if a.IsMonotonic && a.Temporality == metricdata.CumulativeTemporality {
					m.Data = deltaSum(a, k, d.last, next, func(p *deltaPoint) *int64 { return &p.i })
				}
			case metricdata.Sum[float64]:
				if a.IsMonotonic && a.Temporality == metricdata.CumulativeTemporality {
					m.Data = deltaSum(a, k, d.last, next, func(p *deltaPoint) *float64 { return &p.f })
				}
			}
			cs.Metrics[j] = m
		}
		c.ScopeMetrics[i] = cs
	}
	return &c
}

// deltaSum returns sum's points as deltas against last, recording them in
// next; val picks the value field of a deltaPoint.
func deltaSum[N int64 | float64](sum metricdata.Sum[N], k deltaKey, last, next map[deltaKey]deltaPoint, val func(*deltaPoint) *N) metricdata.Sum[N] {
	pts := make([]metricdata.DataPoint[N], len(sum.DataPoints))
	for i, p := range sum.DataPoints {
		k.attrs = p.Attributes.Equivalent()
		prev, ok := last[k]
		if ok && prev.start.Equal(p.StartTime) && p.Value >= *val(&prev) && p.Time.After(prev.time) {
			p.Value -= *val(&prev)
			p.StartTime = prev.time
		}
		cur := deltaPoint{start: sum.DataPoints[i].StartTime, time: p.Time}
		*val(&cur) = sum.DataPoints[i].Value
		next[k] = cur
		pts[i] = p
	}
	return metricdata.Sum[N]{DataPoints: pts, Temporality: metricdata.DeltaTemporality, IsMonotonic: true}
}

// Shutdown shuts the next sink down.
func (d *DeltaSink) Shutdown(ctx context.Context) error { return d.next.Shutdown(ctx) }
