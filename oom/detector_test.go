package oom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/model"
)

const (
	testID = "259e2723f03c623a983fc92657f7cd0aba2c6b34890f11158b0ff9830244c88d"
	// killRecords are the two records of a kill of PID 12566 in /docker/<testID>.
	killRecords = "6,2089,5432440662,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=" + testID +
		",mems_allowed=0,oom_memcg=/docker/" + testID + ",task_memcg=/docker/" + testID + ",task=sh,pid=12566,uid=0\n" +
		"3,2090,5432440678,-;Memory cgroup out of memory: Killed process 12566 (sh) total-vm:14564kB, anon-rss:7812kB\n"
)

var bootTime = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// scripted is a kernel log source that returns its steps one per Read (a
// record, or an error such as EPIPE), then blocks until closed, like /dev/kmsg.
type scripted struct {
	mu     sync.Mutex
	steps  []any // string, error, or a chan struct{} to wait for
	closed chan struct{}
	once   sync.Once
}

func newScripted(steps ...any) *scripted { return &scripted{steps: steps, closed: make(chan struct{})} }

func (s *scripted) Read(p []byte) (int, error) {
	s.mu.Lock()
	if len(s.steps) > 0 {
		st := s.steps[0]
		s.steps = s.steps[1:]
		s.mu.Unlock()
		switch st := st.(type) {
		case error:
			return 0, st
		case chan struct{}:
			select {
			case <-st:
			case <-s.closed:
				return 0, os.ErrClosed
			}
			return 0, nil
		}
		return copy(p, st.(string)), nil
	}
	s.mu.Unlock()
	<-s.closed
	return 0, os.ErrClosed
}

func (s *scripted) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type harness struct {
	store *model.Store
	det   *Detector
	sub   *model.Subscription
	logs  *syncBuffer
}

// start runs a Detector on src against a Store holding c (if c.ID is set).
func start(t *testing.T, src io.ReadCloser, openErr error, c model.Container, cfg Config) *harness {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := model.NewStore(log)
	store.PutEngine(model.Engine{ID: "docker-1", Type: model.Docker})
	if c.ID != "" {
		store.Upsert(c)
	}
	cfg.BootTime = bootTime
	if cfg.Grace == 0 {
		cfg.Grace = 50 * time.Millisecond
	}
	det := New(store, cfg, log)
	det.open = func(string, bool) (io.ReadCloser, error) { return src, openErr }
	sub := store.Subscribe(64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- det.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5 s of its context ending")
		}
		sub.Close()
	})
	// Wait until Run has subscribed to the Store, so that events a test emits reach it.
	for deadline := time.Now().Add(5 * time.Second); openErr == nil && !strings.Contains(logs.String(), "reading the kernel log"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the detector did not start:\n%s", logs.String())
		}
	}
	return &harness{store: store, det: det, sub: sub, logs: logs}
}

// next returns the next event of type typ, failing after a timeout.
func (h *harness) next(t *testing.T, typ model.EventType, timeout time.Duration) model.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-h.sub.C():
			if ev.Type == typ {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within %v; detector stats %+v; logs:\n%s", typ, timeout, h.det.Stats(), h.logs.String())
			return model.Event{}
		}
	}
}

// none fails if an event of type typ arrives within d.
func (h *harness) none(t *testing.T, typ model.EventType, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-h.sub.C():
			if ev.Type == typ {
				t.Fatalf("unexpected %s event %+v", typ, ev)
			}
		case <-deadline:
			return
		}
	}
}

func (h *harness) waitStats(t *testing.T, ok func(Stats) bool) Stats {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if s := h.det.Stats(); ok(s) {
			return s
		}
	}
	t.Fatalf("stats never satisfied the condition: %+v; logs:\n%s", h.det.Stats(), h.logs.String())
	return Stats{}
}

func running1() model.Container {
	return model.Container{EngineID: "docker-1", ID: testID, Name: "oomer", State: model.StateRunning, PID: 12566,
		CgroupPath: "/docker/" + testID, StartedAt: bootTime.Add(time.Hour)}
}

func TestDetector(t *testing.T) {
	c1 := running1()
	key := c1.Key()

	t.Run("a kill in a running container marks it and emits container.oom with the kernel's time", func(t *testing.T) {
		h := start(t, newScripted(killRecords), nil, running1(), Config{})
		ev := h.next(t, model.EventOOM, 5*time.Second)
		if ev.EngineID != "docker-1" || ev.Container == nil || ev.Container.ID != testID || !ev.Container.OOMKilled {
			t.Fatalf("event %+v", ev)
		}
		if want := bootTime.Add(5432440678 * time.Microsecond); !ev.Time.Equal(want) {
			t.Errorf("event time %v, want %v", ev.Time, want)
		}
		if c, _ := h.store.Container(key); !c.OOMKilled {
			t.Errorf("stored container not marked OOMKilled")
		}
		h.none(t, model.EventOOM, 200*time.Millisecond)
		if s := h.det.Stats(); s.Kills != 1 || s.Matched != 1 || s.Emitted != 1 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("the container is marked before the event, so a die in the grace period carries the flag", func(t *testing.T) {
		h := start(t, newScripted(killRecords), nil, running1(), Config{Grace: time.Hour})
		h.waitStats(t, func(s Stats) bool { return s.Matched == 1 })
		if c, _ := h.store.Container(key); !c.OOMKilled {
			t.Fatalf("not marked while the event waits for the engine")
		}
	})

	t.Run("an oom the engine reported itself is not emitted again", func(t *testing.T) {
		h := start(t, newScripted(killRecords), nil, running1(), Config{Grace: 300 * time.Millisecond})
		h.waitStats(t, func(s Stats) bool { return s.Matched == 1 })
		c, _ := h.store.Container(key)
		h.store.Emit(model.Event{Type: model.EventOOM, Time: time.Now(), EngineID: "docker-1", Container: &c})
		h.next(t, model.EventOOM, time.Second) // the engine's
		h.none(t, model.EventOOM, 600*time.Millisecond)
		if s := h.det.Stats(); s.Deduplicated != 1 || s.Emitted != 0 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("an engine oom for another container does not suppress this one", func(t *testing.T) {
		h := start(t, newScripted(killRecords), nil, running1(), Config{})
		other := model.Container{EngineID: "docker-1", ID: "other", State: model.StateRunning}
		h.store.Upsert(other)
		h.store.Emit(model.Event{Type: model.EventOOM, Time: time.Now(), EngineID: "docker-1", Container: &other})
		for {
			if ev := h.next(t, model.EventOOM, 5*time.Second); ev.Container.ID == testID {
				break
			}
		}
	})

	t.Run("a die that came first still gets its container.oom, and the flag is set on the stored container", func(t *testing.T) {
		exited := running1()
		exited.State, exited.PID, exited.ExitCode = model.StateExited, 0, 137
		h := start(t, newScripted(killRecords), nil, exited, Config{})
		ev := h.next(t, model.EventOOM, 5*time.Second)
		if ev.Container.State != model.StateExited || !ev.Container.OOMKilled {
			t.Errorf("event container %+v", ev.Container)
		}
	})

	t.Run("a die whose watcher overwrote the flag gets it back", func(t *testing.T) {
		h := start(t, newScripted(killRecords), nil, running1(), Config{Grace: time.Hour})
		h.waitStats(t, func(s Stats) bool { return s.Matched == 1 })
		dead := running1()
		dead.State, dead.PID, dead.ExitCode, dead.OOMKilled = model.StateExited, 0, 137, false
		h.store.Upsert(dead) // an inspection from before the mark, written after it
		h.store.Emit(model.Event{Type: model.EventDie, Time: time.Now(), EngineID: "docker-1", Container: &dead, ExitCode: 137})
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if c, _ := h.store.Container(key); c.OOMKilled {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("flag not set again after the die")
			}
		}
	})

	t.Run("a container destroyed before the log was read is still matched", func(t *testing.T) {
		gate := make(chan struct{})
		h := start(t, newScripted(gate, killRecords), nil, running1(), Config{})
		gone, _ := h.store.Delete(key)
		gone.State = model.StateExited
		h.store.Emit(model.Event{Type: model.EventDestroy, Time: time.Now(), EngineID: "docker-1", Container: &gone})
		h.next(t, model.EventDestroy, time.Second)
		time.Sleep(100 * time.Millisecond) // the detector's subscription has it too
		close(gate)
		ev := h.next(t, model.EventOOM, 5*time.Second)
		if ev.Container.ID != testID || !ev.Container.OOMKilled {
			t.Errorf("event %+v", ev)
		}
	})

	t.Run("several kills in one container run give one event", func(t *testing.T) {
		second := strings.NewReplacer("12566", "12567", "2089,", "2091,", "2090,", "2092,").Replace(killRecords)
		h := start(t, newScripted(killRecords, second), nil, running1(), Config{})
		h.next(t, model.EventOOM, 5*time.Second)
		h.none(t, model.EventOOM, 300*time.Millisecond)
		if s := h.det.Stats(); s.Kills != 2 || s.Coalesced != 1 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("a kill outside every container is counted and logged, not emitted", func(t *testing.T) {
		host := "6,1,1,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=chrome,pid=4,uid=0\n" +
			"3,2,2,-;Out of memory: Killed process 4 (chrome) total-vm:1kB\n"
		h := start(t, newScripted(host), nil, running1(), Config{})
		h.waitStats(t, func(s Stats) bool { return s.Unmatched == 1 })
		h.none(t, model.EventOOM, 200*time.Millisecond)
		if !strings.Contains(h.logs.String(), "OOM kill outside any known container") {
			t.Errorf("no log line for the unmatched kill:\n%s", h.logs.String())
		}
	})

	t.Run("a ring buffer overrun is logged and reading goes on", func(t *testing.T) {
		h := start(t, newScripted("6,1,1,-;hello\n", syscall.EPIPE, syscall.EPIPE, killRecords), nil, running1(), Config{})
		h.next(t, model.EventOOM, 5*time.Second)
		if s := h.det.Stats(); s.Overruns != 2 || s.Records != 3 {
			t.Errorf("stats %+v", s)
		}
		if n := strings.Count(h.logs.String(), "kernel log overrun"); n != 2 { // 1st and 2nd, then thinned out
			t.Errorf("%d overrun warnings, want 2:\n%s", n, h.logs.String())
		}
	})

	t.Run("a record too big for the buffer grows the buffer", func(t *testing.T) {
		h := start(t, newScripted(syscall.EINVAL, killRecords), nil, running1(), Config{})
		h.next(t, model.EventOOM, 5*time.Second)
	})

	t.Run("garbage and unknown records are skipped", func(t *testing.T) {
		garbage, err := os.ReadFile(filepath.Join("testdata", "garbage.kmsg"))
		if err != nil {
			t.Fatal(err)
		}
		h := start(t, newScripted(string(garbage), killRecords), nil, running1(), Config{})
		h.next(t, model.EventOOM, 5*time.Second)
		if s := h.det.Stats(); s.Malformed < 4 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("an unreadable kernel log is reported once with its path and Run carries on without it", func(t *testing.T) {
		h := start(t, nil, &os.PathError{Op: "open", Path: "/dev/kmsg", Err: syscall.EPERM}, running1(), Config{Path: "/dev/kmsg"})
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(h.logs.String(), "CAP_SYSLOG"); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no warning:\n%s", h.logs.String())
			}
		}
		l := h.logs.String()
		if strings.Count(l, "cannot read the kernel log") != 1 || !strings.Contains(l, "path=/dev/kmsg") || !strings.Contains(l, "operation not permitted") {
			t.Errorf("warning does not name the path and the error once:\n%s", l)
		}
	})

	t.Run("a read error other than an overrun stops detection with a warning", func(t *testing.T) {
		h := start(t, newScripted(syscall.EIO), nil, running1(), Config{})
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(h.logs.String(), "OOM kills are no longer detected"); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no warning:\n%s", h.logs.String())
			}
		}
	})
}

func TestOpenKmsg(t *testing.T) {
	t.Run("a file is read from its end by default, so old kills are not replayed", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "kmsg")
		if err := os.WriteFile(p, []byte(killRecords), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := openKmsg(p, false)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n, err := f.Read(make([]byte, readBuf)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("read %d bytes, %v; want nothing", n, err)
		}
	})
	t.Run("FromStart reads what is already there", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "kmsg")
		if err := os.WriteFile(p, []byte(killRecords), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := openKmsg(p, true)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n, _ := f.Read(make([]byte, readBuf)); n != len(killRecords) {
			t.Errorf("read %d bytes, want %d", n, len(killRecords))
		}
	})
	t.Run("a FIFO, which cannot seek, feeds a Detector and closing it on stop ends the read", func(t *testing.T) {
		p, w := newFIFO(t)
		store := model.NewStore(slog.New(slog.DiscardHandler))
		c := running1()
		store.Upsert(c)
		sub := store.Subscribe(8)
		defer sub.Close()
		d := New(store, Config{Path: p, Grace: -1, BootTime: bootTime}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		if _, err := w.WriteString(killRecords); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-sub.C():
			if ev.Type != model.EventOOM || ev.Container.ID != testID {
				t.Errorf("event %+v", ev)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("no event; stats %+v", d.Stats())
		}
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Run blocked in a read after its context ended")
		}
	})
}

func TestMemoryCgroup(t *testing.T) {
	root := t.TempDir()
	write := func(pid, content string) {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10", "12:pids:/docker/a\n4:cpu,cpuacct:/docker/a\n3:memory:/docker/a\n0::/docker/a-unified\n")
	write("11", "0::/system.slice/docker-b.scope\n")
	write("12", "garbage\n")
	tests := []struct {
		name string
		pid  int
		want string
	}{
		{"cgroup v1 gives the memory controller's path", 10, "/docker/a"},
		{"cgroup v2 gives the unified path", 11, "/system.slice/docker-b.scope"},
		{"garbage gives nothing", 12, ""},
		{"a process already gone gives nothing", 13, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := memoryCgroup(root, tt.pid); got != tt.want {
				t.Errorf("memoryCgroup(%d) = %q, want %q", tt.pid, got, tt.want)
			}
		})
	}
}

func TestReadThrough(t *testing.T) {
	// until polls ReadThrough(at) as a caller does, every millisecond.
	until := func(t *testing.T, d *Detector, at time.Time) time.Duration {
		t.Helper()
		began := time.Now()
		for !d.ReadThrough(at) {
			if time.Since(began) > 5*time.Second {
				t.Fatalf("ReadThrough(%v) still false after 5 s", at)
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(began)
	}

	t.Run("an empty log is read through at once, without waiting for a record", func(t *testing.T) {
		p, _ := newFIFO(t)
		h := start(t, mustOpen(t, p), nil, running1(), Config{})
		took := until(t, h.det, time.Now())
		t.Logf("read through after %v", took)
	})
	t.Run("a kill written before t is marked in the store when ReadThrough(t) turns true", func(t *testing.T) {
		p, w := newFIFO(t)
		h := start(t, mustOpen(t, p), nil, running1(), Config{Grace: time.Hour})
		for i := range 50 {
			// Noise first, then the kill: the reader has records to get
			// through before it finds the log empty.
			if _, err := fmt.Fprintf(w, "6,%d,5432440000,-;eth0: link up %d\n", 1000+i, i); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.WriteString(killRecords); err != nil {
			t.Fatal(err)
		}
		until(t, h.det, time.Now())
		if c, _ := h.store.Container(model.ContainerKey{EngineID: "docker-1", ID: testID}); !c.OOMKilled {
			t.Errorf("read through, but the container is not marked OOMKilled; stats %+v", h.det.Stats())
		}
	})
	t.Run("a source the poller cannot wait on cannot tell: false, so the caller waits its own time", func(t *testing.T) {
		h := start(t, newScripted(), nil, running1(), Config{})
		time.Sleep(50 * time.Millisecond)
		if h.det.ReadThrough(time.Now().Add(-time.Hour)) {
			t.Error("ReadThrough is true for a source that cannot tell")
		}
	})
	t.Run("a log that ended: true, nothing more will be marked", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "kmsg")
		if err := os.WriteFile(p, []byte(killRecords), 0o600); err != nil {
			t.Fatal(err)
		}
		h := start(t, mustOpen(t, p), nil, running1(), Config{})
		until(t, h.det, time.Now())
		if c, _ := h.store.Container(model.ContainerKey{EngineID: "docker-1", ID: testID}); !c.OOMKilled {
			t.Error("the kill before the end is not marked")
		}
	})
	t.Run("no kernel log read: true, nothing will ever be marked", func(t *testing.T) {
		h := start(t, nil, &os.PathError{Op: "open", Path: "/dev/kmsg", Err: syscall.EPERM}, running1(), Config{Path: "/dev/kmsg"})
		for deadline := time.Now().Add(5 * time.Second); !h.det.ReadThrough(time.Now()); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("ReadThrough false without a kernel log")
			}
		}
	})
}

func mustOpen(t *testing.T, p string) io.ReadCloser {
	t.Helper()
	f, err := openKmsg(p, true)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// newFIFO makes a FIFO to stand for /dev/kmsg and opens its writing end,
// closed when the test ends.
func newFIFO(t *testing.T) (string, *os.File) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kmsg.fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(p, os.O_RDWR, 0) // O_RDWR: opening does not wait for a reader
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return p, w
}
