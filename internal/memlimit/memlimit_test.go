package memlimit

import (
	"context"
	"math"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const mib = 1 << 20

func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured int64
		u          Usage
		want       int64
	}{
		{"no limit configured is the runtime's none", 0, Usage{Live: 20 * mib}, math.MaxInt64},
		{"a heap well under the limit keeps the configured one", 30 * mib, Usage{Live: 10 * mib, NonHeap: 5 * mib}, 30 * mib},
		{"a heap that would leave too little room raises it", 30 * mib, Usage{Live: 14 * mib, NonHeap: 5 * mib}, 33 * mib},
		{"a heap past the limit gets room above it", 30 * mib, Usage{Live: 40 * mib, NonHeap: 4 * mib}, 84 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Limit(tc.configured, tc.u); got != tc.want {
				t.Fatalf("Limit(%d, %+v) = %d, want %d", tc.configured, tc.u, got, tc.want)
			}
		})
	}
}

func TestReadSeesTheLiveHeap(t *testing.T) {
	runtime.GC() // the live heap is known from the first collection on
	u := Read()
	if u.Live == 0 || u.NonHeap == 0 {
		t.Fatalf("Read() = %+v, want a live heap and non-heap memory", u)
	}
}

func TestGovernorFollowsTheHeapUntilStopped(t *testing.T) {
	var set []int64
	live := uint64(10 * mib)
	g := &Governor{configured: 30 * mib, every: time.Millisecond,
		read: func() Usage { return Usage{Live: live, NonHeap: 5 * mib} },
		set:  func(l int64) int64 { set = append(set, l); return 0 }}
	if got := g.Adjust(); got != 30*mib {
		t.Fatalf("Adjust() = %d at a small heap, want the configured %d", got, 30*mib)
	}
	live = 30 * mib
	if got := g.Adjust(); got != 65*mib {
		t.Fatalf("Adjust() = %d at a heap of 30 MiB, want %d", got, 65*mib)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v after its context ended", err)
	}
	if len(set) < 3 {
		t.Fatalf("limits set %v, want Run to set one at once", set)
	}
}
