package main

import (
	"strings"
	"testing"
	"time"
)

func TestGroup(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64, ids ...string) request {
		r := request{time: t0.Add(time.Duration(s * float64(time.Second))), bytes: 100, gzipBytes: 10, points: 5, resources: len(ids), ids: map[string]bool{}}
		for _, id := range ids {
			r.ids[id] = true
		}
		return r
	}
	tests := []struct {
		name       string
		reqs       []request
		wantRounds int
		wantLine   string
	}{
		{
			name:       "requests of one collection, a few milliseconds apart, make one round",
			reqs:       []request{at(0, "a"), at(0.01, "b"), at(0.02, "c")},
			wantRounds: 1,
			wantLine:   "rounds=1 requests_per_round=3.0 bytes_per_round=300 gzip_bytes_per_round=30 points_per_round=15 resources_per_round=3 bench_ids=3 bench_ids_min=3 bench_ids_max=3 complete_rounds=1",
		},
		{
			name:       "requests an interval apart make separate rounds and a missing container shows",
			reqs:       []request{at(10, "a", "b", "c"), at(0, "a", "b"), at(20, "a", "b", "c")},
			wantRounds: 3,
			wantLine:   "rounds=3 requests_per_round=1.0 bytes_per_round=100 gzip_bytes_per_round=10 points_per_round=5 resources_per_round=3 bench_ids=3 bench_ids_min=2 bench_ids_max=3 complete_rounds=2",
		},
		{
			name:       "no requests make no rounds",
			wantRounds: 0,
			wantLine:   "rounds=0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rounds := group(tt.reqs, 5*time.Second)
			if len(rounds) != tt.wantRounds {
				t.Fatalf("got %d rounds, want %d", len(rounds), tt.wantRounds)
			}
			want := map[string]bool{"a": true, "b": true, "c": true}
			if got := summarize(rounds, want); got != tt.wantLine {
				t.Errorf("summary\n got %s\nwant %s", got, tt.wantLine)
			}
		})
	}
}

func TestReduceCountsPointsAndMarksAgentd(t *testing.T) {
	line := `{"resourceMetrics":[{"resource":{"attributes":[{"key":"container.id","value":{"stringValue":"c1"}},{"key":"agentd.engine.id","value":{"stringValue":"e"}}]},"scopeMetrics":[{"metrics":[{"name":"container.pids.count","gauge":{"dataPoints":[{"timeUnixNano":"2000000000","asInt":"3"}]}},{"name":"container.cpu.time","sum":{"dataPoints":[{"timeUnixNano":"3000000000","asDouble":1.5},{"timeUnixNano":"3000000000","asDouble":0.5}]}}]}]}]}` + "\n"
	reqs, err := readRequestsFrom(strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.points != 3 || !r.agentd || !r.ids["c1"] || !r.time.Equal(time.Unix(3, 0)) || r.bytes == 0 || r.gzipBytes == 0 {
		t.Errorf("got %+v", r)
	}
}
