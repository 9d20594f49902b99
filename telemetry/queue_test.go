package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// lockedBuffer is a log destination safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func textLogger(w *lockedBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// nextData takes the oldest request of signal off q.
func nextData(t *testing.T, q *Queue, signal string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	it, err := q.next(ctx, signal)
	if err != nil {
		t.Fatalf("no %s request queued: %v", signal, err)
	}
	data := string(it.data)
	q.done(it)
	return data
}

func TestQueueLendsDeliveredMetricsBuffersAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := NewQueue(1<<20, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	put := func(signal string, size int) *byte {
		t.Helper()
		b := append(q.lend(size), make([]byte, size)...)
		if err := q.Put(signal, b); err != nil {
			t.Fatal(err)
		}
		return &b[:1][0]
	}
	take := func(signal string) *queued {
		t.Helper()
		it, err := q.next(ctx, signal)
		if err != nil {
			t.Fatalf("no %s request queued: %v", signal, err)
		}
		return it
	}
	metrics := put(SignalMetrics, 1000)
	events := put(SignalEvents, 1000)
	rejected := put(SignalMetrics, 1000)
	q.done(take(SignalMetrics))
	q.done(take(SignalEvents))
	q.drop(take(SignalMetrics), DropRejected)

	b := q.lend(800)
	if len(b) != 0 || cap(b) < 800 || &b[:1][0] != metrics {
		t.Fatalf("lend(800) = len %d cap %d, not the delivered metrics request's buffer", len(b), cap(b))
	}
	if b := q.lend(800); &b[:1][0] == events || &b[:1][0] == rejected {
		t.Fatal("lend gave an events request's or a rejected request's buffer")
	}
	small := put(SignalMetrics, 1000)
	q.done(take(SignalMetrics))
	if b := q.lend(4000); cap(b) < 4000 || &b[:1][0] == small {
		t.Fatal("lend(4000) lent a buffer smaller than asked for")
	}
	left := put(SignalMetrics, 1000)
	q.done(take(SignalMetrics))
	q.dropSpare()
	if b := q.lend(800); &b[:1][0] == left {
		t.Fatal("lend gave a buffer dropSpare let go of")
	}
}

func TestQueueBoundsAndCountsWhatItDrops(t *testing.T) {
	var logs lockedBuffer
	q, err := NewQueue(100, "", textLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("requests that fit are queued, shared by the signals", func(t *testing.T) {
		if err := q.Put(SignalMetrics, make([]byte, 60)); err != nil {
			t.Fatal(err)
		}
		if err := q.Put(SignalEvents, make([]byte, 30)); err != nil {
			t.Fatal(err)
		}
		if s := q.Stats(); s.Bytes != 90 || s.Requests[SignalMetrics] != 1 || s.Requests[SignalEvents] != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("a request that does not fit is refused and counted, the queued ones stay", func(t *testing.T) {
		for range 3 {
			if err := q.Put(SignalMetrics, make([]byte, 11)); !errors.Is(err, ErrQueueFull) {
				t.Fatalf("Put beyond the bound = %v, want ErrQueueFull", err)
			}
		}
		if err := q.Put(SignalEvents, make([]byte, 20)); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Put beyond the bound = %v, want ErrQueueFull", err)
		}
		s := q.Stats()
		if s.Bytes != 90 || s.Dropped[[2]string{SignalMetrics, DropQueueFull}] != 3 || s.Dropped[[2]string{SignalEvents, DropQueueFull}] != 1 {
			t.Fatalf("stats %+v", s)
		}
		if err := q.Put(SignalEvents, make([]byte, 10)); err != nil {
			t.Fatalf("a request that fits exactly: %v", err)
		}
	})
	t.Run("drops are logged once per interval, not once each", func(t *testing.T) {
		if n := strings.Count(logs.String(), "requests dropped"); n != 1 {
			t.Fatalf("%d log lines about drops, want 1:\n%s", n, logs.String())
		}
	})
	t.Run("a delivered request frees its bytes", func(t *testing.T) {
		nextData(t, q, SignalMetrics)
		if s := q.Stats(); s.Bytes != 40 || s.PeakBytes != 100 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("without a disk queue what is left at shutdown is dropped and counted", func(t *testing.T) {
		q.closeSignal(SignalEvents)
		if s := q.Stats(); s.Bytes != 0 || s.Dropped[[2]string{SignalEvents, DropShutdown}] != 2 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestDiskQueue(t *testing.T) {
	t.Run("requests survive a restart, in order, and a delivered one is gone", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "queue")
		q, err := NewQueue(1<<20, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := q.Put(SignalMetrics, []byte(fmt.Sprintf("m%d", i))); err != nil {
				t.Fatal(err)
			}
			if err := q.Put(SignalEvents, []byte(fmt.Sprintf("e%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		if got := nextData(t, q, SignalEvents); got != "e0" {
			t.Fatalf("first event request %q", got)
		}
		q.closeSignal(SignalEvents)
		q.closeSignal(SignalMetrics)

		q2, err := NewQueue(1<<20, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"m0", "m1", "m2"} {
			if got := nextData(t, q2, SignalMetrics); got != want {
				t.Fatalf("replayed %q, want %q", got, want)
			}
		}
		for _, want := range []string{"e1", "e2"} {
			if got := nextData(t, q2, SignalEvents); got != want {
				t.Fatalf("replayed %q, want %q", got, want)
			}
		}
		if s := q2.Stats(); s.Bytes != 0 {
			t.Fatalf("stats %+v", s)
		}
		if err := q2.Put(SignalMetrics, []byte("later")); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*"+diskSuffix))
		if len(files) != 1 || !strings.HasPrefix(filepath.Base(files[0]), fmt.Sprintf("%020d", 7)) {
			t.Fatalf("files %v, want one numbered after the replayed ones", files)
		}
	})
	t.Run("a corrupt file is moved aside, logged and counted; the others are replayed", func(t *testing.T) {
		dir := t.TempDir()
		q, err := NewQueue(1<<20, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"good1", "truncated", "flipped", "good2"} {
			if err := q.Put(SignalEvents, []byte(d)); err != nil {
				t.Fatal(err)
			}
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*"+diskSuffix))
		if len(files) != 4 {
			t.Fatalf("files %v", files)
		}
		b, _ := os.ReadFile(files[1])
		if err := os.WriteFile(files[1], b[:len(b)-3], 0o600); err != nil {
			t.Fatal(err)
		}
		b, _ = os.ReadFile(files[2])
		b[len(b)-1] ^= 0xff
		if err := os.WriteFile(files[2], b, 0o600); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{
			"00000000000000000099.events.otlp":     "",                  // empty
			"00000000000000000098.metrics.otlp":    "NOPE" + "12345678", // wrong magic
			"x.traces.otlp":                        "AGQ1",              // unknown name
			"00000000000000000097.events.otlp.tmp": "half a write",
		} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		var logs lockedBuffer
		q2, err := NewQueue(1<<20, dir, textLogger(&logs))
		if err != nil {
			t.Fatalf("corrupt files failed the queue: %v", err)
		}
		if got := nextData(t, q2, SignalEvents); got != "good1" {
			t.Fatalf("first %q", got)
		}
		if got := nextData(t, q2, SignalEvents); got != "good2" {
			t.Fatalf("second %q", got)
		}
		s := q2.Stats()
		if s.Dropped[[2]string{SignalEvents, DropCorrupt}] != 3 || s.Dropped[[2]string{SignalMetrics, DropCorrupt}] != 1 || s.Dropped[[2]string{"unknown", DropCorrupt}] != 1 {
			t.Fatalf("dropped %v", s.Dropped)
		}
		corrupt, _ := filepath.Glob(filepath.Join(dir, "*.corrupt"))
		if len(corrupt) != 5 {
			t.Fatalf("%d files moved aside, want 5: %v", len(corrupt), corrupt)
		}
		if tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmp) != 0 {
			t.Fatalf("unfinished writes left: %v", tmp)
		}
		for _, want := range []string{"checksum", "shorter than", "magic", "payload bytes", "name is not"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log does not say %q:\n%s", want, logs.String())
			}
		}
	})
	t.Run("a directory that cannot be made is an error naming it", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := NewQueue(0, filepath.Join(f, "queue"), nil); err == nil || !strings.Contains(err.Error(), f) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestRetryWait(t *testing.T) {
	tests := []struct {
		attempt int
		asked   time.Duration
		base    time.Duration
	}{
		{0, 0, 250 * time.Millisecond},
		{1, 0, 500 * time.Millisecond},
		{3, 0, 2 * time.Second},
		{4, 0, 4 * time.Second},
		{40, 0, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("attempt %d waits %v within 20 %%", tt.attempt, tt.base), func(t *testing.T) {
			for range 100 {
				d := retryWait(tt.attempt, tt.asked)
				if d < tt.base*8/10 || d > tt.base*12/10 {
					t.Fatalf("waited %v", d)
				}
			}
		})
	}
	t.Run("the collector's RetryInfo wins, capped at a minute", func(t *testing.T) {
		if d := retryWait(0, 7*time.Second); d != 7*time.Second {
			t.Fatalf("waited %v", d)
		}
		if d := retryWait(0, time.Hour); d != time.Minute {
			t.Fatalf("waited %v", d)
		}
	})
}

func TestSenderRetriesUntilDelivered(t *testing.T) {
	q, err := NewQueue(1<<20, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	attempts := 0
	deliver := func(_ context.Context, data []byte) (int64, bool, time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		switch {
		case string(data) == "bad":
			return 0, false, 0, errors.New("invalid argument")
		case attempts <= 3:
			return 0, true, time.Millisecond, errors.New("unavailable")
		}
		got = append(got, string(data))
		return 0, false, 0, nil
	}
	for _, d := range []string{"a", "bad", "b"} {
		if err := q.Put(SignalEvents, []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	s := startSender(context.Background(), q, SignalEvents, deliver)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.stop(ctx)
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "a,b" || attempts != 6 {
		t.Fatalf("delivered %v in %d attempts, want a,b in 6", got, attempts)
	}
	if d := q.Stats().Dropped[[2]string{SignalEvents, DropRejected}]; d != 1 {
		t.Fatalf("dropped %d as rejected, want 1", d)
	}
}

// TestThrottlingIsHonoured: a collector that answers RESOURCE_EXHAUSTED with
// a RetryInfo gets the request again after the delay it asked for (without
// RetryInfo that code is final).
func TestThrottlingIsHonoured(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(700 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMetricsServer{failures: []error{st.Err()}}
	ms := insecureOTLP(t, startFakeMetricsServer(t, f), 0)
	cfg := DefaultConfig()
	cs, es := fixedWorkload(3)
	start := time.Now()
	if err := ms.ExportMetrics(context.Background(), newBuilder(&cfg, Host{Name: "h"}, "test").build(time.Now(), cs, es)); err != nil {
		t.Fatal(err)
	}
	settled(t, ms)
	took := time.Since(start)
	f.mu.Lock()
	n, tries := len(f.requests), len(f.headers)
	f.mu.Unlock()
	if n != 1 || tries != 2 {
		t.Fatalf("%d requests arrived in %d attempts, want 1 in 2", n, tries)
	}
	if took < 700*time.Millisecond || took > 3*time.Second {
		t.Fatalf("delivered after %v, want after the 700 ms the collector asked for", took)
	}
}

// recordingExporter keeps the bodies of what it exports, batch by batch.
type recordingExporter struct {
	mu      sync.Mutex
	batches [][]string
}

func (r *recordingExporter) Export(_ context.Context, recs []sdklog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b []string
	for _, rec := range recs {
		b = append(b, rec.Body().AsString())
	}
	r.batches = append(r.batches, b)
	return nil
}
func (r *recordingExporter) Shutdown(context.Context) error   { return nil }
func (r *recordingExporter) ForceFlush(context.Context) error { return nil }

func TestEventBatchExportsEveryRecordInOrder(t *testing.T) {
	exp := &recordingExporter{}
	b := newEventBatch(exp, time.Hour, nil) // only full batches and Shutdown flush
	b.start(context.Background())
	const n = 1200
	for i := range n {
		var r sdklog.Record
		r.SetBody(attribute.StringValue(strconv.Itoa(i)))
		if err := b.OnEmit(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, batch := range exp.batches {
		if len(batch) > maxEventBatch {
			t.Errorf("a batch of %d records, want at most %d", len(batch), maxEventBatch)
		}
		all = append(all, batch...)
	}
	if len(all) != n {
		t.Fatalf("%d records exported, want %d", len(all), n)
	}
	for i, s := range all {
		if s != strconv.Itoa(i) {
			t.Fatalf("record %d is %q: out of order", i, s)
		}
	}
}
