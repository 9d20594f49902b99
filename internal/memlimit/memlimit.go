package memlimit

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// MinRoom is the fraction of the live heap the governed limit always leaves
// for new allocations beside the non-heap memory: 1, the room GOGC=100 gives,
// so the limit trims the heap's free pages and fragmentation but never makes
// the collector run more often than twice the live heap would. Less is
// steep: at 1,000 containers a limit that left a quarter of the live heap
// made 25 collections a minute instead of 3 and cost agentd 40 % more CPU.
const MinRoom = 1.0

// Usage is what the runtime's memory is made of, in bytes, as the governor
// needs it.
type Usage struct {
	// Live is the heap the last collection found reachable (0 before the
	// first).
	Live uint64
	// NonHeap is the memory the runtime counts against its limit besides
	// the heap's spans: stacks, its own metadata, buffers.
	NonHeap uint64
}

// Read returns the runtime's Usage (runtime/metrics).
func Read() Usage {
	s := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	heap := v(2) + v(3) + v(4) + v(5)
	u := Usage{Live: v(0)}
	if total := v(1); total > heap {
		u.NonHeap = total - heap
	}
	return u
}

// Limit is the soft limit for the configured limit and usage u: the
// configured one, or, when it leaves less than MinRoom of the live heap
// beside the non-heap memory and the live heap, those three together. A
// configured limit of 0 or less is none: math.MaxInt64, the runtime's
// default.
func Limit(configured int64, u Usage) int64 {
	if configured <= 0 {
		return math.MaxInt64
	}
	floor := int64(u.NonHeap) + int64(float64(u.Live)*(1+MinRoom))
	return max(configured, floor)
}

// Governor keeps the runtime's soft memory limit at Limit. Build it with
// New; Run it once.
type Governor struct {
	configured int64
	every      time.Duration
	read       func() Usage
	set        func(int64) int64
}

// New returns a governor of the soft limit configured (bytes, > 0) that
// looks at the live heap every period.
func New(configured int64, every time.Duration) *Governor {
	return &Governor{configured: configured, every: every, read: Read, set: debug.SetMemoryLimit}
}

// Adjust sets the limit for the usage now and returns it.
func (g *Governor) Adjust() int64 {
	l := Limit(g.configured, g.read())
	g.set(l)
	return l
}

// Run adjusts the limit at once and every period until ctx ends; it returns
// nil. The limit stays as it was last set.
func (g *Governor) Run(ctx context.Context) error {
	g.Adjust()
	t := time.NewTicker(g.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			g.Adjust()
		}
	}
}
