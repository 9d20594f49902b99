package activation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

func newTestLogger(t testing.TB) (*slog.Logger, *testbed.LogBuffer) {
	lb := testbed.NewLogBuffer(t)
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// runManager starts a Manager for cfg and stops it at the end of the test.
func runManager(t *testing.T, cfg Config) (*Manager, <-chan SocketEngine, *testbed.LogBuffer) {
	t.Helper()
	return runManagerOn(t, cfg, nil)
}

// runManagerOn is runManager with the Manager's sessions opened by dial (nil:
// the real D-Bus).
func runManagerOn(t *testing.T, cfg Config, dial dialFunc) (*Manager, <-chan SocketEngine, *testbed.LogBuffer) {
	t.Helper()
	log, lb := newTestLogger(t)
	m, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if dial != nil {
		m.dial = dial
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := m.Subscribe(ctx).C()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m, ch, lb
}

// waitFor receives from ch until an update satisfies ok, and fails the test
// after timeout.
func waitFor(t *testing.T, ch <-chan SocketEngine, timeout time.Duration, what string, ok func(SocketEngine) bool) SocketEngine {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case e, open := <-ch:
			if !open {
				t.Fatalf("subscription closed while waiting for %s", what)
			}
			if ok(e) {
				return e
			}
		case <-deadline.C:
			t.Fatalf("no update within %v: %s", timeout, what)
		}
	}
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
