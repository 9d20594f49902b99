package agent

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
)

// syncBuffer is a bytes.Buffer safe for a logger's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogBudgetsSaysOncePerIntervalWhenRequestsWaited(t *testing.T) {
	budgets := engine.NewBudgets(20, 1, nil)
	waited, idle := budgets.For("/run/busy.sock"), budgets.For("/run/idle.sock")
	var out syncBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	for range 3 { // the burst is 1: two of them wait 50 ms each
		if err := waited.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := idle.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		logBudgets(ctx, budgets, 100*time.Millisecond, log)
	}()
	time.Sleep(450 * time.Millisecond) // four intervals, one with waits
	cancel()
	<-done

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line, for the one interval with waits, got %d:\n%s", len(lines), out.String())
	}
	for _, want := range []string{"level=DEBUG", "endpoint=/run/busy.sock", "requests=3", "waits=2", "wait_time="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line %q lacks %q", lines[0], want)
		}
	}
}
