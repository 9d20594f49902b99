package telemetry

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentd-dev/agentd/model"
)

// requestsWorkload is a storeWorkload that also counts engine requests.
type requestsWorkload struct {
	storeWorkload
	stats map[string]RequestStats
}

func (w requestsWorkload) EngineRequests(e model.Engine) (RequestStats, bool) {
	rs, ok := w.stats[e.ID]
	return rs, ok
}

// pointsSink keeps the engine resources' cumulative points of the last export, by metric name.
type pointsSink struct {
	noMetrics
	ints   map[string]int64
	floats map[string]float64
}

func (s *pointsSink) ExportMetrics(_ context.Context, rms []*metricdata.ResourceMetrics) error {
	s.ints, s.floats = map[string]int64{}, map[string]float64{}
	for _, rm := range rms {
		for _, m := range rm.ScopeMetrics[0].Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				s.ints[m.Name] += d.DataPoints[0].Value
			case metricdata.Sum[float64]:
				s.floats[m.Name] += d.DataPoints[0].Value
			}
		}
	}
	return nil
}

func TestEngineRequestMetrics(t *testing.T) {
	since := time.Now().Add(-time.Minute)
	tests := []struct {
		name     string
		stats    map[string]RequestStats
		wantInts map[string]int64
		wantWait float64
	}{
		{name: "a workload without request counts exports none", wantInts: map[string]int64{}},
		{
			name:  "an engine's budget and watcher counts are exported on its resource",
			stats: map[string]RequestStats{"e": {Requests: 120, Waits: 20, WaitTime: 1500 * time.Millisecond, Since: since, Coalesced: 7, CoalescedSince: since}},
			wantInts: map[string]int64{
				"agentd.engine.requests": 120, "agentd.engine.request.waits": 20, "agentd.engine.requests.coalesced": 7,
			},
			wantWait: 1.5,
		},
		{
			name:     "an engine without a watcher has no coalesced count",
			stats:    map[string]RequestStats{"e": {Requests: 3, Since: since}},
			wantInts: map[string]int64{"agentd.engine.requests": 3, "agentd.engine.request.waits": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := model.NewStore(slog.New(slog.DiscardHandler))
			store.PutEngine(model.Engine{ID: "e", Type: model.Docker, Endpoint: "/run/docker.sock"})
			var w Workload = storeWorkload{store}
			if tt.stats != nil {
				w = requestsWorkload{storeWorkload{store}, tt.stats}
			}
			sink := &pointsSink{}
			p, err := NewPipeline(DefaultConfig(), Options{Workload: w, Sampler: noStats{}, Metrics: sink, Logs: &memLogs{}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			p.round(context.Background(), newBuilder(&p.cfg, Host{}, "test"), &roundScratch{})
			for _, name := range []string{"agentd.engine.requests", "agentd.engine.request.waits", "agentd.engine.requests.coalesced"} {
				got, ok := sink.ints[name]
				want, wantOK := tt.wantInts[name]
				if ok != wantOK || got != want {
					t.Errorf("%s = %d (exported %t), want %d (exported %t)", name, got, ok, want, wantOK)
				}
			}
			if got := sink.floats["agentd.engine.request.wait_time"]; got != tt.wantWait {
				t.Errorf("agentd.engine.request.wait_time = %g, want %g", got, tt.wantWait)
			}
		})
	}
}
