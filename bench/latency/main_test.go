package main

import (
	"testing"
	"time"
)

func TestPct(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name string
		ds   []time.Duration
		p    int
		want string
	}{
		{"no samples have no percentile", nil, 99, "n/a"},
		{"one sample is every percentile", ms(7), 50, "7ms"},
		{"the median of 1..100 ms is 50 ms (nearest rank)", ms(hundred...), 50, "50ms"},
		{"the 99th percentile of 1..100 ms is 99 ms", ms(hundred...), 99, "99ms"},
		{"the 100th percentile is the maximum", ms(1, 2, 3), 100, "3ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pct(tt.ds, tt.p); got != tt.want {
				t.Errorf("pct(%d) = %s, want %s", tt.p, got, tt.want)
			}
		})
	}
}
