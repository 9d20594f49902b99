package sdnotify

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listen makes a real notify socket, as systemd would, and points
// NOTIFY_SOCKET at it.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifications(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func() error
		want func(string) bool
	}{
		{"ready without status sends READY=1", func() error { return Ready("") }, eq("READY=1")},
		{"ready with status adds a STATUS line", func() error { return Ready("watching 3 engines") }, eq("READY=1\nSTATUS=watching 3 engines")},
		{"a status cannot smuggle assignments", func() error { return Status("a\nREADY=1") }, eq("STATUS=a READY=1")},
		{"stopping sends STOPPING=1", func() error { return Stopping("bye") }, eq("STOPPING=1\nSTATUS=bye")},
		{"reloading sends RELOADING=1 with MONOTONIC_USEC", Reloading, func(s string) bool {
			lines := strings.Split(s, "\n")
			return len(lines) == 2 && lines[0] == "RELOADING=1" && strings.HasPrefix(lines[1], "MONOTONIC_USEC=") && len(lines[1]) > len("MONOTONIC_USEC=")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := listen(t)
			if err := tc.call(); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, c); !tc.want(got) {
				t.Errorf("sent %q", got)
			}
		})
	}
}

func eq(want string) func(string) bool { return func(s string) bool { return s == want } }

func TestWithoutNotifySocketEverythingIsANoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	for _, f := range []func() error{func() error { return Ready("x") }, Reloading, func() error { return Stopping("") }} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	if err := Watchdog(context.Background(), func() bool { return true }); err != nil {
		t.Fatalf("watchdog without WATCHDOG_USEC: %v", err)
	}
}

func TestNotifyToAMissingSocketIsAnError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	if err := Ready(""); err == nil || !strings.Contains(err.Error(), "READY=1") {
		t.Fatalf("err = %v, want one naming READY=1", err)
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	c := listen(t)
	t.Setenv("WATCHDOG_USEC", "100000") // pings every 50ms
	t.Setenv("WATCHDOG_PID", "")
	var healthy atomic.Bool
	healthy.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watchdog(ctx, healthy.Load) }()
	for range 3 {
		if got := recv(t, c); got != "WATCHDOG=1" {
			t.Fatalf("got %q", got)
		}
	}
	healthy.Store(false)
	time.Sleep(60 * time.Millisecond) // a ping may have been in flight
	drain(c)
	buf := make([]byte, 64)
	_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("pinged %q while unhealthy", buf[:n])
	}
	healthy.Store(true)
	if got := recv(t, c); got != "WATCHDOG=1" {
		t.Fatalf("after recovery got %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watchdog returned %v after cancel", err)
	}
}

func drain(c *net.UnixConn) {
	buf := make([]byte, 64)
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
		wantErr         bool
	}{
		{"disabled without WATCHDOG_USEC", "", "", 0, false},
		{"half of WATCHDOG_USEC", "30000000", "", 15 * time.Second, false},
		{"disabled for another process's WATCHDOG_PID", "30000000", "1", 0, false},
		{"malformed WATCHDOG_USEC is an error", "soon", "", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			got, err := WatchdogInterval()
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("WatchdogInterval() = %v, %v", got, err)
			}
		})
	}
}
