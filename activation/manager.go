package activation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/agentd-dev/agentd/internal/logging"
)

// Manager finds engine sockets held by systemd socket units, activates them
// and follows their units through D-Bus signals, on the host's systemd and on
// every nested systemd it is given or finds.
//
// Each engine socket unit is activated once per period in which its socket
// listens: the Manager starts the service (StartUnit), follows it until it is
// active, confirms that the engine answers with its family's probe and
// reports the engines that answered (SocketEngine.Engines). A service that
// runs already is only confirmed; one that idles out afterwards is not
// started again (its watcher's connect does that when there is work).
//
// Concurrency: all methods are safe for concurrent use. Run owns one
// goroutine per followed systemd and one per running activation; Subscribe
// owns one goroutine per subscription; Close stops all of them and returns
// when they are gone. Publishing never blocks: each subscription keeps the
// latest update per engine (SocketEngine.Key) until it is received, so a slow
// subscriber may see intermediate states coalesced but always sees the last
// one.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	dial dialFunc // openSession; a fake bus in tests

	closeCtx    context.Context
	closeCancel context.CancelFunc

	mu        sync.Mutex
	engines   map[string]SocketEngine
	subs      map[*subscriber]struct{}
	started   bool
	runCtx    context.Context // nil unless Run is running
	instances map[int]*instanceHandle
	pending   []int // nested systemd PIDs added before Run

	instWG sync.WaitGroup
	pumpWG sync.WaitGroup
}

type instanceHandle struct {
	cancel context.CancelFunc
}

// New returns a Manager for cfg, or the error of cfg.Validate. log receives
// one line per state change of an engine socket and one per problem (an
// unreachable bus is said once per outage).
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg:         cfg,
		log:         log,
		dial:        openSession,
		closeCtx:    ctx,
		closeCancel: cancel,
		engines:     map[string]SocketEngine{},
		subs:        map[*subscriber]struct{}{},
		instances:   map[int]*instanceHandle{},
	}, nil
}

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("activation manager closed")

// Run follows the host's systemd (Config.Host), the nested systemd
// instances of Config.SystemdPIDs, those added with AddSystemd and, with
// Config.FindNested, those found under Config.ProcRoot. It returns nil when
// ctx is done or Close is called, after every goroutine it started is gone;
// an unreachable systemd is logged, not returned. Run may be called once.
func (m *Manager) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.closeCtx, cancel)
	defer stop()

	m.mu.Lock()
	if m.closeCtx.Err() != nil {
		m.mu.Unlock()
		return ErrClosed
	}
	if m.started {
		m.mu.Unlock()
		return errors.New("activation manager: Run called twice")
	}
	m.started = true
	m.runCtx = ctx
	if m.cfg.Host {
		addrs := make([]busAddr, len(m.cfg.HostBusAddresses))
		for i, a := range m.cfg.HostBusAddresses {
			addrs[i] = parseBusAddr(a)
		}
		m.startLocked(0, addrs)
	}
	for _, pid := range append(slices.Clone(m.cfg.SystemdPIDs), m.pending...) {
		m.startLocked(pid, nestedBusAddrs(m.cfg.ProcRoot, pid))
	}
	m.pending = nil
	m.mu.Unlock()

	defer func() {
		m.mu.Lock()
		m.runCtx = nil
		m.mu.Unlock()
		cancel()
		m.instWG.Wait()
	}()

	if !m.cfg.FindNested {
		<-ctx.Done()
		return nil
	}
	scanLogged := false
	scan := func() {
		pids, err := FindNestedSystemd(m.cfg.ProcRoot)
		if err != nil {
			if !scanLogged {
				m.log.Warn("cannot look for nested systemd instances", logging.Err(err))
				scanLogged = true
			}
			return
		}
		scanLogged = false
		for _, pid := range pids {
			m.AddSystemd(pid)
		}
		users, err := FindUserSystemd(m.cfg.ProcRoot)
		if err != nil {
			return // said above, were it lasting: the same directory
		}
		for _, pid := range users {
			m.addUserSystemd(pid)
		}
	}
	scan()
	if m.cfg.NestedScanInterval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(m.cfg.NestedScanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			scan()
		}
	}
}

// AddSystemd makes the Manager follow the systemd with host PID pid, PID 1
// of a container, through /proc/PID/root/run/dbus/system_bus_socket or
// /proc/PID/root/run/systemd/private. Adding a PID already followed does
// nothing; the Manager stops following it by itself when the process is
// gone, retiring its engines. Before Run the PID is kept for Run.
func (m *Manager) AddSystemd(pid int) {
	if pid <= 1 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runCtx == nil {
		if !m.started && !slices.Contains(m.pending, pid) {
			m.pending = append(m.pending, pid)
		}
		return
	}
	m.startLocked(pid, nestedBusAddrs(m.cfg.ProcRoot, pid))
}

// addUserSystemd makes a running Manager follow the user instance of
// systemd with host PID pid, over its own buses as its owner.
func (m *Manager) addUserSystemd(pid int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runCtx == nil {
		return
	}
	if _, ok := m.instances[pid]; ok {
		return
	}
	u, err := readUserSystemd(m.cfg.ProcRoot, pid)
	if err != nil {
		m.log.Debug("user systemd instance gone before it was followed", logging.Err(err))
		return
	}
	m.startLocked(pid, userBusAddrs(m.cfg.ProcRoot, u))
}

// startLocked starts following one systemd; m.mu is held and Run running.
func (m *Manager) startLocked(pid int, addrs []busAddr) {
	if _, ok := m.instances[pid]; ok {
		return
	}
	ctx, cancel := context.WithCancel(m.runCtx)
	h := &instanceHandle{cancel: cancel}
	m.instances[pid] = h
	m.instWG.Add(1)
	go func() {
		defer m.instWG.Done()
		defer cancel()
		newInstance(m, pid, addrs, m.dial).run(ctx)
		m.mu.Lock()
		if m.instances[pid] == h {
			delete(m.instances, pid)
		}
		m.mu.Unlock()
	}()
}

// Close stops Run and every subscription, and returns when all goroutines of
// the Manager are gone. It is safe to call more than once.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closeCancel()
	m.mu.Unlock()
	m.instWG.Wait()
	m.pumpWG.Wait()
	return nil
}

// Engines returns the engine sockets currently known (not retired), sorted
// by Key.
func (m *Manager) Engines() []SocketEngine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snapshotLocked()
}

func (m *Manager) snapshotLocked() []SocketEngine {
	out := make([]SocketEngine, 0, len(m.engines))
	for _, e := range m.engines {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b SocketEngine) int {
		switch {
		case a.Key() < b.Key():
			return -1
		case a.Key() > b.Key():
			return 1
		}
		return 0
	})
	return out
}

// Subscription receives engine sockets on C until it is closed.
type Subscription struct {
	c      <-chan SocketEngine
	cancel context.CancelFunc
}

// C first receives every engine socket known when the subscription began,
// then every update (retired engines included). It is closed after Close,
// when the Subscribe ctx is done or when the Manager is closed.
func (s *Subscription) C() <-chan SocketEngine { return s.c }

// Close ends the subscription. It is safe to call more than once.
func (s *Subscription) Close() { s.cancel() }

// Subscribe returns a subscription to the engine sockets (see C). Updates
// are never dropped and never block the Manager: per engine, an update not
// yet received is replaced by the next one.
func (m *Manager) Subscribe(ctx context.Context) *Subscription {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan SocketEngine)
	sub := &Subscription{c: out, cancel: cancel}
	s := &subscriber{pending: map[string]SocketEngine{}, notify: make(chan struct{}, 1)}
	m.mu.Lock()
	if m.closeCtx.Err() != nil {
		m.mu.Unlock()
		close(out)
		return sub
	}
	for _, e := range m.snapshotLocked() {
		s.offer(e)
	}
	m.subs[s] = struct{}{}
	m.pumpWG.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.pumpWG.Done()
		defer close(out)
		s.pump(ctx, m.closeCtx, out)
		m.mu.Lock()
		delete(m.subs, s)
		m.mu.Unlock()
	}()
	return sub
}

// publish records e and hands it to every subscription without blocking.
func (m *Manager) publish(e SocketEngine) {
	m.log.Debug("engine socket", logging.KeyEngineType, string(e.Type), logging.KeyUnit, e.Unit, "state", e.State,
		logging.KeyEndpoint, e.Endpoint, "systemd_pid", e.SystemdPID, "masked", e.Masked, "excluded", e.Excluded,
		"engines", len(e.Engines))
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.State == StateRetired {
		delete(m.engines, e.Key())
	} else {
		m.engines[e.Key()] = e
	}
	for s := range m.subs {
		s.offer(e)
	}
}

// subscriber is one subscription's mailbox: the latest undelivered update
// per engine key, in order of first arrival.
type subscriber struct {
	mu      sync.Mutex
	pending map[string]SocketEngine
	order   []string
	notify  chan struct{}
}

// offer queues e, replacing an undelivered update of the same engine. It
// never blocks.
func (s *subscriber) offer(e SocketEngine) {
	s.mu.Lock()
	k := e.Key()
	if _, ok := s.pending[k]; !ok {
		s.order = append(s.order, k)
	}
	s.pending[k] = e
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// next pops the oldest queued update.
func (s *subscriber) next() (SocketEngine, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.order) == 0 {
		return SocketEngine{}, false
	}
	k := s.order[0]
	s.order = s.order[1:]
	e := s.pending[k]
	delete(s.pending, k)
	return e, true
}

// pump delivers queued updates to out until ctx or closed is done.
func (s *subscriber) pump(ctx, closed context.Context, out chan<- SocketEngine) {
	for {
		e, ok := s.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-closed.Done():
				return
			case <-s.notify:
				continue
			}
		}
		select {
		case out <- e:
		case <-ctx.Done():
			return
		case <-closed.Done():
			return
		}
	}
}

// String describes the engine socket for logs and test failures.
func (e SocketEngine) String() string {
	s := fmt.Sprintf("%s %s (%s) at %s [%s]%s%s", e.Type, e.Unit, e.Service, e.Endpoint, e.State,
		map[bool]string{true: " masked"}[e.Masked], map[bool]string{true: " excluded"}[e.Excluded])
	for _, en := range e.Engines {
		s += " engine " + en.ID
	}
	return s
}
