package podman

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// DaemonlessSettle is how long a daemonless stream waits after a change to
// the storage before it reads it again, so that the burst of writes one
// podman command makes costs one reading.
const DaemonlessSettle = 25 * time.Millisecond

// DaemonlessResync is how often a daemonless stream reads the storage with
// no change seen: the safety net for what leaves no trace in the watched
// directories (a conmon killed with SIGKILL).
const DaemonlessResync = 30 * time.Second

// Subscribe watches the storage with inotify: the exit directory (conmon
// writes an exit file as a container exits; its code is read at once,
// before podman's cleanup removes it), podman's state directory
// (STORAGE/libpod, written at every create, start, stop and removal) and
// containers/storage's container directory. Each change leads to a new
// reading of the storage, compared with the previous one: the differences
// are the stream's changes. The subscription is in place when it returns.
func (a *DaemonlessAdapter) Subscribe(ctx context.Context) (engine.Stream, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("podman storage at %s: inotify: %w", a.endpoint, err)
	}
	// A non-blocking descriptor gives a pollable File: Close ends a Read
	// blocked in another goroutine.
	f := os.NewFile(uintptr(fd), "inotify")
	s := &daemonlessStream{a: a, f: f, dirty: make(chan struct{}, 1), errc: make(chan error, 1), exitWD: -1}
	lay := a.layout()
	watches := []struct {
		dir  string
		mask uint32
		exit bool
	}{
		{a.host(lay.exitDir), unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO, true},
		{filepath.Join(a.endpoint, "libpod"), unix.IN_CLOSE_WRITE | unix.IN_MODIFY | unix.IN_MOVED_TO | unix.IN_CREATE, false},
		{filepath.Join(a.endpoint, lay.driver+"-containers"), unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_CREATE | unix.IN_DELETE, false},
	}
	var errs []error
	for _, w := range watches {
		wd, err := unix.InotifyAddWatch(fd, w.dir, w.mask|unix.IN_ONLYDIR)
		if err != nil {
			errs = append(errs, fmt.Errorf("watch %s: %w", w.dir, err))
			continue
		}
		if w.exit {
			s.exitWD, s.exitDir = wd, w.dir
		}
		s.watched++
	}
	if s.watched == 0 {
		f.Close()
		return nil, fmt.Errorf("podman storage at %s: %w", a.endpoint, errors.Join(errs...))
	}
	if len(errs) > 0 {
		// The exit directory appears with podman's first container:
		// until it is watched, the resync finds exits, without their code
		// when podman's cleanup was quicker.
		a.log.Debug("podman storage partly watched", "err", errors.Join(errs...))
	}
	base, err := a.List(ctx)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.last = byID(base)
	s.wg.Add(1)
	go s.read()
	return s, nil
}

type daemonlessStream struct {
	a       *DaemonlessAdapter
	f       *os.File
	exitWD  int
	exitDir string
	watched int
	dirty   chan struct{}
	errc    chan error
	wg      sync.WaitGroup
	once    sync.Once

	// last and queue belong to Next's caller.
	last  map[string]model.Container
	queue []engine.Change
}

// read takes inotify's events until the descriptor is closed: an exit file
// is read at once, anything else marks the storage dirty.
func (s *daemonlessStream) read() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				select {
				case s.errc <- fmt.Errorf("podman storage at %s: inotify: %w", s.a.endpoint, err):
				default:
				}
			}
			return
		}
		for _, name := range inotifyNames(buf[:n], s.exitWD) {
			s.a.readExit(filepath.Join(s.exitDir, name))
		}
		select {
		case s.dirty <- struct{}{}:
		default:
		}
	}
}

// inotifyNames returns the file names of the events in b for watch
// descriptor wd. b holds whole events, as read(2) on inotify returns them.
func inotifyNames(b []byte, wd int) []string {
	var names []string
	for len(b) >= unix.SizeofInotifyEvent {
		ewd := int32(binary.NativeEndian.Uint32(b[0:4]))
		n := int(binary.NativeEndian.Uint32(b[12:16]))
		end := unix.SizeofInotifyEvent + n
		if n < 0 || end > len(b) {
			break
		}
		name := b[unix.SizeofInotifyEvent:end]
		if i := slices.Index(name, 0); i >= 0 {
			name = name[:i]
		}
		if int(ewd) == wd && wd >= 0 && len(name) > 0 {
			names = append(names, string(name))
		}
		b = b[end:]
	}
	return names
}

// Next returns the next change: the queue's first, else it waits for the
// storage to change (or DaemonlessResync), reads it again and queues the
// differences.
func (s *daemonlessStream) Next(ctx context.Context) (engine.Change, error) {
	for len(s.queue) == 0 {
		t := time.NewTimer(DaemonlessResync)
		select {
		case <-ctx.Done():
			t.Stop()
			return engine.Change{}, ctx.Err()
		case err := <-s.errc:
			t.Stop()
			return engine.Change{}, err
		case <-s.dirty:
			t.Stop()
			settle := time.NewTimer(DaemonlessSettle)
			select {
			case <-ctx.Done():
				settle.Stop()
				return engine.Change{}, ctx.Err()
			case <-settle.C:
			}
			select {
			case <-s.dirty:
			default:
			}
		case <-t.C:
		}
		cur, err := s.a.List(ctx)
		if err != nil {
			return engine.Change{}, err
		}
		next := byID(cur)
		s.queue = diffContainers(s.last, next, time.Now())
		s.last = next
	}
	ch := s.queue[0]
	s.queue = s.queue[1:]
	return ch, nil
}

// Close ends the inotify watch and waits for the reader.
func (s *daemonlessStream) Close() error {
	var err error
	s.once.Do(func() {
		err = s.f.Close()
		s.wg.Wait()
	})
	return err
}

func byID(cs []model.Container) map[string]model.Container {
	m := make(map[string]model.Container, len(cs))
	for _, c := range cs {
		m[c.ID] = c
	}
	return m
}

// diffContainers returns the changes that lead from the containers of one
// reading of the storage (old) to the next (cur), in container ID order:
// create for a new one, start for one that runs now (or ran in between), die
// for one that stopped running (with its exit code when it was caught),
// destroy for one that is gone. now stamps changes whose time is unknown.
func diffContainers(old, cur map[string]model.Container, now time.Time) []engine.Change {
	var out []engine.Change
	at := func(t time.Time) time.Time {
		if t.IsZero() {
			return now
		}
		return t
	}
	add := func(t model.EventType, c model.Container, when time.Time) {
		ch := engine.Change{Type: t, ContainerID: c.ID, Time: at(when)}
		switch t {
		case model.EventStart:
			ch.PID = c.PID
		case model.EventDie:
			if !c.FinishedAt.IsZero() && c.State == model.StateExited {
				code := c.ExitCode
				ch.ExitCode = &code
			}
		}
		out = append(out, ch)
	}
	ids := make([]string, 0, len(cur))
	for id := range cur {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		c := cur[id]
		o, had := old[id]
		if !had {
			add(model.EventCreate, c, c.CreatedAt)
			switch c.State {
			case model.StateRunning, model.StatePaused:
				add(model.EventStart, c, c.StartedAt)
			case model.StateExited:
				add(model.EventStart, c, c.StartedAt)
				add(model.EventDie, c, c.FinishedAt)
			}
			continue
		}
		ranAgain := !c.StartedAt.IsZero() && c.StartedAt.After(o.StartedAt)
		wasUp, isUp := o.State.Running(), c.State.Running()
		switch {
		case wasUp && isUp && (ranAgain || c.PID != o.PID):
			prev := o
			prev.State, prev.FinishedAt = model.StateExited, time.Time{}
			add(model.EventDie, prev, c.StartedAt)
			add(model.EventStart, c, c.StartedAt)
		case !wasUp && isUp:
			add(model.EventStart, c, c.StartedAt)
		case wasUp && !isUp:
			add(model.EventDie, c, c.FinishedAt)
		case !wasUp && c.State == model.StateExited && (ranAgain || (o.State == model.StateCreated && !c.StartedAt.IsZero())):
			add(model.EventStart, c, c.StartedAt)
			add(model.EventDie, c, c.FinishedAt)
		}
	}
	gone := make([]string, 0)
	for id := range old {
		if _, ok := cur[id]; !ok {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		o := old[id]
		if o.State.Running() {
			o.State, o.FinishedAt = model.StateExited, time.Time{}
			add(model.EventDie, o, time.Time{})
		}
		add(model.EventDestroy, o, time.Time{})
	}
	return out
}
