package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/testbed"
)

func TestLogBudgetsSaysOncePerIntervalWhenRequestsWaited(t *testing.T) {
	budgets := engine.NewBudgets(20, 1, nil)
	waited, idle := budgets.For("/run/busy.sock"), budgets.For("/run/idle.sock")
	out := testbed.NewLogBuffer(t)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
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
