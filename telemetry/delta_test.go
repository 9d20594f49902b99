package telemetry

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
)

// recordingSink keeps the counter point of every round it gets and fails
// the rounds it is told to.
type recordingSink struct {
	fail   bool
	points []metricdata.DataPoint[int64]
	temps  []metricdata.Temporality
}

func (r *recordingSink) ExportMetrics(_ context.Context, batch []*metricdata.ResourceMetrics) error {
	if r.fail {
		return errors.New("collector down")
	}
	s := batch[0].ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64])
	r.points = append(r.points, s.DataPoints[0])
	r.temps = append(r.temps, s.Temporality)
	return nil
}
func (r *recordingSink) Shutdown(context.Context) error { return nil }

func TestDeltaSink(t *testing.T) {
	res := resource.NewSchemaless(attribute.String("case", "delta"))
	s0 := time.Unix(1000, 0)
	at := func(sec int) time.Time { return s0.Add(time.Duration(sec) * time.Second) }
	type round struct {
		start time.Time
		at    int
		v     int64
		fail  bool
		// want is the delta point sent (start second relative to s0, value).
		wantStart int
		wantV     int64
	}
	cases := []struct {
		name   string
		rounds []round
	}{
		{name: "the first point is its value since its start, the next ones the change since the last", rounds: []round{
			{start: s0, at: 10, v: 100, wantStart: 0, wantV: 100},
			{start: s0, at: 20, v: 250, wantStart: 10, wantV: 150},
			{start: s0, at: 30, v: 250, wantStart: 20, wantV: 0},
		}},
		{name: "a round that failed is carried by the next one, nothing lost", rounds: []round{
			{start: s0, at: 10, v: 100, wantStart: 0, wantV: 100},
			{start: s0, at: 20, v: 250, fail: true},
			{start: s0, at: 30, v: 300, wantStart: 10, wantV: 200},
		}},
		{name: "a counter that went down restarts from its start", rounds: []round{
			{start: s0, at: 10, v: 100, wantStart: 0, wantV: 100},
			{start: s0, at: 20, v: 40, wantStart: 0, wantV: 40},
		}},
		{name: "a new start time (a restarted container) restarts the series", rounds: []round{
			{start: s0, at: 10, v: 100, wantStart: 0, wantV: 100},
			{start: at(15), at: 20, v: 130, wantStart: 15, wantV: 130},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recordingSink{}
			d := NewDeltaSink(rec)
			n := 0
			for i, r := range c.rounds {
				rec.fail = r.fail
				batch := testRound(res, r.start, at(r.at), r.v)
				err := d.ExportMetrics(context.Background(), batch)
				if (err != nil) != r.fail {
					t.Fatalf("round %d: error %v, fail %t", i, err, r.fail)
				}
				if orig := batch[0].ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64]); orig.Temporality != metricdata.CumulativeTemporality || orig.DataPoints[0].Value != r.v {
					t.Fatalf("round %d: the caller's batch was changed: %+v", i, orig)
				}
				if r.fail {
					continue
				}
				p := rec.points[n]
				if rec.temps[n] != metricdata.DeltaTemporality || !p.StartTime.Equal(at(r.wantStart)) || !p.Time.Equal(at(r.at)) || p.Value != r.wantV {
					t.Errorf("round %d: %v start %v time %v value %d, want delta start %v time %v value %d",
						i, rec.temps[n], p.StartTime, p.Time, p.Value, at(r.wantStart), at(r.at), r.wantV)
				}
				n++
			}
		})
	}
}
