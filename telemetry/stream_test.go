package telemetry

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// TestStreamedRoundEncodesAsTheBatch: a round streamed through the builder's
// one scratch (what OTLPMetrics gets from the pipeline) is written as the
// same bytes as the round made at once, whatever the shapes of consecutive
// containers (the scratch keeps the storage of the last container's points).
func TestStreamedRoundEncodesAsTheBatch(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LabelAllowlist = []string{"app"}
	base, es := fixedWorkload(6)
	// Shapes that follow one another: no network, two interfaces, no
	// disk devices (the engine fallback's totals), two devices, a stopped
	// container (no stats), no health, no pressure.
	base[1].stats.Networks = nil
	base[2].stats.Networks = append(base[2].stats.Networks, stats.Interface{Name: "eth1", RxBytes: 5, TxBytes: 6})
	base[3].stats.Disks = nil
	base[4].stats.Disks = append(base[4].stats.Disks, stats.Disk{Major: 8, Minor: 16, Device: "sdb", ReadBytes: 7, WriteBytes: 8})
	base[4].stats.Has &^= stats.FieldPressure
	stopped := *base[5].container
	stopped.State, stopped.Health = model.StateExited, ""
	base[5] = sampled{engine: base[5].engine, container: &stopped}
	for _, tc := range []struct {
		name  string
		order []int
	}{
		{"containers of different shapes one after the other", []int{0, 1, 2, 3, 4, 5}},
		{"the same shapes in the other order", []int{5, 4, 3, 2, 1, 0}},
		{"a large shape between small ones", []int{1, 2, 1, 4, 3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := make([]sampled, len(tc.order))
			for i, j := range tc.order {
				cs[i] = base[j]
			}
			now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
			encode := func(bl *builder, streamed bool) []byte {
				var w wireRecords
				var out []byte
				r := bl.prepare(now, cs, es)
				r.withQueue(QueueStats{Bytes: 42, Dropped: map[[2]string]int64{{"metrics", "full"}: 3}})
				batch := r.batch()
				for i := range r.Len() {
					rm := batch[i]
					if streamed {
						rm = r.Metrics(i)
					}
					var ok bool
					if out, ok = w.appendRecord(out, rm, []byte{0x0a, 0x00}, "s"); !ok {
						t.Fatalf("entry %d is not encodable", i)
					}
				}
				return out
			}
			for round := range 2 { // the second round refills what the first made
				want := encode(newBuilder(&cfg, Host{Name: "h"}, "test"), false)
				bl := newBuilder(&cfg, Host{Name: "h"}, "test")
				for range round + 1 {
					if got := encode(bl, true); !bytes.Equal(got, want) {
						t.Fatalf("round %d: the streamed round is %d bytes unlike the batch's %d", round, len(got), len(want))
					}
				}
			}
		})
	}
}

// BenchmarkBuildStream1000 makes every ResourceMetrics of a round of 1,000
// containers and an engine into the builder's scratch, one after the other,
// as the pipeline does for the OTLP sink, and reports what the builder keeps
// between rounds (kept-B/container: the heap in use after a collection with
// the builder, less without it).
func BenchmarkBuildStream1000(b *testing.B) {
	cfg := DefaultConfig()
	cfg.LabelAllowlist = []string{"app"}
	cs, es := fixedWorkload(1000)
	now := time.Now()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	bl := newBuilder(&cfg, Host{Name: "h", ID: "id"}, "test")
	stream := func() {
		r := bl.prepare(now, cs, es)
		for i := range r.Len() {
			_ = r.Metrics(i)
		}
	}
	stream()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	kept := float64(ms.HeapAlloc-before) / float64(len(cs))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		stream()
	}
	b.ReportMetric(kept, "kept-B/container")
	runtime.KeepAlive(bl)
}
