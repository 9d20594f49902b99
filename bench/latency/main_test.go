package main

import (
	"context"
	"errors"
	"sync"
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

func TestStormPacesAndBoundsTheWorkers(t *testing.T) {
	var mu sync.Mutex
	var running, most, calls int
	rate, err := storm(context.Background(), 20, 200, 3, func(int) error {
		mu.Lock()
		running++
		calls++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 20 || most > 3 {
		t.Errorf("%d calls, at most %d at once; want 20 calls and at most 3", calls, most)
	}
	// 3 workers of 20 ms each cannot keep 200/s: the achieved rate says so.
	if rate <= 0 || rate > 200 {
		t.Errorf("achieved rate %.1f/s, want in (0, 200]", rate)
	}
}

func TestStormReturnsTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	_, err := storm(context.Background(), 5, 1000, 2, func(i int) error {
		if i == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("err %v, want boom", err)
	}
}
