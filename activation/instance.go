package activation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/internal/wait"
	"github.com/agentd-dev/agentd/model"
)

// resyncDelay coalesces the bursts of Reloading and UnitFilesChanged signals
// that one systemctl command causes into one resync.
const resyncDelay = 200 * time.Millisecond

// instance follows one systemd: the host's (pid 0) or a nested one. Its
// fields below mu-less comments are owned by the run goroutine.
type instance struct {
	m     *Manager
	cfg   Config
	pid   int
	addrs []busAddr
	dial  dialFunc
	log   *slog.Logger

	units     map[string]*unit            // engine socket units by name
	inspected map[string]bool             // socket units whose Listen was read
	paths     map[dbus.ObjectPath]pathRef // object paths of tracked sockets and services
	results   chan activationResult
	actWG     sync.WaitGroup
	attempts  uint64      // attempts started, the last one's ID
	retry     *time.Timer // fires at the earliest retryAt of a failed unit
	// reloading is set between Reloading(true) and Reloading(false): systemd
	// drops and re-creates every unit object then, which is no change.
	reloading bool
	// serveCtx is the context of the current serve call: activations run
	// under it and end with the session.
	serveCtx context.Context
}

// pathRef says which tracked unit an object path belongs to.
type pathRef struct {
	socket  string
	service bool
}

// listenEntry is one engine socket of a unit.
type listenEntry struct {
	typ    model.EngineType
	family engine.Family
	path   string
}

// actState is where agentd's own activation of a unit stands within one
// period in which its socket listens. A unit is activated (or, when its
// service already runs, confirmed) once per period: the state goes back to
// actNone only when the socket stops listening (the engine is retired).
//
//	actNone ──listening──► actRunning (StartUnit, job result, ActiveState, probe)
//	actNone ───active────► actRunning (probe only)
//	actRunning ──answered──► actConfirmed ──socket stops──► actNone
//	actRunning ──failed────► actFailed ──retryAt, or the service came up──► actRunning
//
// An idle-exited service (StateInactive) of a confirmed unit is not
// activated again: the engine's watcher reconnects through the socket, which
// starts it when there is work.
type actState int

const (
	actNone      actState = iota // nothing tried since the socket started listening
	actRunning                   // an attempt is running
	actConfirmed                 // the engines answered
	actFailed                    // the last attempt failed: retried at retryAt
)

// unit is what an instance knows of one engine socket unit.
type unit struct {
	name, service string
	listens       []listenEntry
	socket, svc   unitStates
	wasActive     bool // the service was active since the socket last started listening
	published     map[string]SocketEngine

	act        actState
	attempt    uint64                    // the ID of the running or last attempt
	cancel     context.CancelFunc        // ends the running attempt
	engines    map[string][]model.Engine // by listen path, what answered
	failures   int                       // consecutive failed attempts
	failedDown bool                      // the last failed attempt did not get the service up
	retryAt    time.Time

	maskLogged    bool
	excludeLogged bool

	// changed wakes the running attempt when the unit's or its service's
	// states changed (see attempt.changed); nil when none runs.
	changed chan struct{}
}

// logAttrs are the journal fields of a log line about u: UNIT, the service
// and the ENGINE_TYPE of its first engine socket.
func (u *unit) logAttrs(more ...any) []any {
	attrs := []any{logging.KeyUnit, u.name, "service", u.service}
	if len(u.listens) > 0 {
		attrs = append(attrs, logging.KeyEngineType, string(u.listens[0].typ))
	}
	return append(attrs, more...)
}

// activationResult reports the end of one attempt.
type activationResult struct {
	unit    string
	id      uint64
	start   bool // the attempt started the service (else it only confirmed)
	up      bool // the service was up when the engines were asked
	engines map[string][]model.Engine
	err     error
	elapsed time.Duration
}

func newInstance(m *Manager, pid int, addrs []busAddr, dial dialFunc) *instance {
	log := m.log.With("systemd_pid", pid)
	if pid == 0 {
		log = m.log.With("systemd", "host")
	}
	return &instance{
		m:       m,
		cfg:     m.cfg,
		pid:     pid,
		addrs:   addrs,
		dial:    dial,
		log:     log,
		units:   map[string]*unit{},
		paths:   map[dbus.ObjectPath]pathRef{},
		results: make(chan activationResult, 1),
	}
}

// run connects to the systemd and serves its signals until ctx is done or,
// for a nested systemd, until the process is gone. An unreachable bus is
// logged once per outage, with every address tried and its error; retries
// back off up to cfg.MaxBackoff.
func (in *instance) run(ctx context.Context) {
	backoff := min(time.Second, in.cfg.MaxBackoff)
	downLogged := false
	for {
		if in.pid != 0 && !systemdAlive(in.cfg.ProcRoot, in.pid) {
			in.log.Info("nested systemd is gone")
			in.retireAll()
			return
		}
		sess, err := in.connect(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !downLogged {
				in.log.Info("systemd D-Bus not reachable, carrying on without it; retrying quietly",
					"addresses", addrList(in.addrs), logging.Err(err))
				downLogged = true
			}
			if !wait.Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, in.cfg.MaxBackoff)
			continue
		}
		downLogged = false
		in.log.Debug("connected to systemd", "address", sess.addr.address, "direct", sess.addr.direct)
		connected := time.Now()
		err = in.serve(ctx, sess)
		sess.close()
		in.actWG.Wait()
		if ctx.Err() != nil {
			return
		}
		in.log.Warn("lost systemd D-Bus connection", "address", sess.addr.address, logging.Err(err))
		in.retireAll()
		// A bus that accepts and then drops the connection must not make a
		// hot loop: only a session that lasted resets the backoff.
		if time.Since(connected) >= stableSession {
			backoff = min(time.Second, in.cfg.MaxBackoff)
			continue
		}
		if !wait.Sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, in.cfg.MaxBackoff)
	}
}

// stableSession is how long a D-Bus session must have lasted for its loss to
// reconnect at once, with the backoff reset.
const stableSession = 30 * time.Second

func addrList(addrs []busAddr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.address
	}
	return strings.Join(s, " ")
}

// connect tries each address in turn and returns the first session that
// opens; the error joins every address's failure.
func (in *instance) connect(ctx context.Context) (*session, error) {
	var errs []error
	for _, a := range in.addrs {
		s, err := in.dial(ctx, a, in.cfg.CallTimeout)
		if err == nil {
			return s, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a.address, err))
	}
	return nil, errors.Join(errs...)
}

// serve resyncs, then reacts to signals and activation results until the
// connection closes or ctx is done. Activations it starts use a context that
// ends with serve.
func (in *instance) serve(ctx context.Context, s *session) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in.serveCtx = ctx
	in.reloading = false
	in.retry = time.NewTimer(time.Hour)
	in.retry.Stop()
	defer in.retry.Stop()
	in.resync(ctx, s)
	resync := time.NewTimer(time.Hour)
	resync.Stop()
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case sig, ok := <-s.signals:
			if !ok {
				return errors.New("connection closed")
			}
			if in.handleSignal(ctx, s, sig) {
				resync.Reset(resyncDelay)
			}
		case <-resync.C:
			in.resync(ctx, s)
		case r := <-in.results:
			in.handleResult(ctx, s, r)
		case <-in.retry.C:
			in.retryDue(s)
		}
	}
}

// handleSignal applies one signal. It returns true when the signal asks for
// a full resync (daemon-reload finished, unit files changed). Malformed
// signal bodies are logged and dropped.
func (in *instance) handleSignal(ctx context.Context, s *session, sig *dbus.Signal) (resync bool) {
	switch sig.Name {
	case managerIface + ".UnitNew":
		var id string
		var p dbus.ObjectPath
		if err := dbus.Store(sig.Body, &id, &p); err != nil {
			in.log.Debug("malformed UnitNew signal", logging.Err(err))
			return false
		}
		// Only a socket unit never seen before is read: reading a unit that
		// systemd then garbage-collects again would load it anew and cause
		// the next UnitNew. State changes of known units come with
		// PropertiesChanged.
		if strings.HasSuffix(id, ".socket") && !in.inspected[id] {
			in.inspect(ctx, s, id)
		}
	case managerIface + ".UnitRemoved":
		var id string
		var p dbus.ObjectPath
		if err := dbus.Store(sig.Body, &id, &p); err != nil {
			in.log.Debug("malformed UnitRemoved signal", logging.Err(err))
			return false
		}
		ref, ok := in.paths[unitPath(id)]
		if !ok || in.reloading {
			return false
		}
		u := in.units[ref.socket]
		if ref.service {
			u.svc.Active = "inactive"
		} else {
			u.socket.Active = "inactive"
		}
		in.update(s, u)
	case managerIface + ".JobRemoved":
		var id uint32
		var job dbus.ObjectPath
		var name, result string
		if err := dbus.Store(sig.Body, &id, &job, &name, &result); err != nil {
			in.log.Debug("malformed JobRemoved signal", logging.Err(err))
			return false
		}
		if ref, ok := in.paths[unitPath(name)]; ok {
			in.refresh(ctx, s, in.units[ref.socket])
		}
	case managerIface + ".Reloading":
		var active bool
		if err := dbus.Store(sig.Body, &active); err != nil {
			in.log.Debug("malformed Reloading signal", logging.Err(err))
			return false
		}
		in.reloading = active
		return !active
	case managerIface + ".UnitFilesChanged":
		return true
	case propertiesIface + ".PropertiesChanged":
		ref, ok := in.paths[sig.Path]
		if !ok || in.reloading {
			return false
		}
		u := in.units[ref.socket]
		iface, active, invalidated, err := decodePropertiesChanged(u.name, sig.Body)
		if err != nil {
			in.log.Debug("malformed PropertiesChanged signal", "path", sig.Path, logging.Err(err))
			return false
		}
		if iface != unitIface {
			return false
		}
		switch {
		case active != "":
			if ref.service {
				u.svc.Active = active
			} else {
				u.socket.Active = active
			}
			in.update(s, u)
		case invalidated:
			in.refresh(ctx, s, u)
		}
	}
	return false
}

// decodePropertiesChanged decodes the body (sa{sv}as) of a PropertiesChanged
// signal and returns the interface, the new ActiveState if it is among the
// changed values, and whether ActiveState was invalidated instead.
func decodePropertiesChanged(unit string, body []any) (iface, active string, invalidated bool, err error) {
	if len(body) < 2 {
		return "", "", false, fmt.Errorf("PropertiesChanged body has %d values, want 3", len(body))
	}
	iface, ok := body[0].(string)
	if !ok {
		return "", "", false, fmt.Errorf("PropertiesChanged interface is %s, want string", typeName(body[0]))
	}
	changed, ok := body[1].(map[string]dbus.Variant)
	if !ok {
		return "", "", false, fmt.Errorf("PropertiesChanged changed properties are %s, want a{sv}", typeName(body[1]))
	}
	if v, ok := changed["ActiveState"]; ok {
		active, err = decodeString(unit, "ActiveState", v)
		if err != nil {
			return "", "", false, err
		}
	}
	if len(body) > 2 {
		if inv, ok := body[2].([]string); ok {
			invalidated = slices.Contains(inv, "ActiveState")
		}
	}
	return iface, active, invalidated, nil
}

// resync lists every socket unit and socket unit file and reads the ones it
// does not follow yet; units that disappeared are retired.
func (in *instance) resync(ctx context.Context, s *session) {
	names, err := listSocketUnits(ctx, s, in.cfg.CallTimeout)
	if err != nil {
		in.warn("list socket units", logging.Err(err))
		return
	}
	in.inspected = map[string]bool{}
	for name, u := range in.units {
		if !names[name] {
			u.socket.Active = "inactive"
			in.update(s, u)
			in.forget(u)
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	for _, n := range sorted {
		in.inspect(ctx, s, n)
	}
}

// listSocketUnits returns the names of the loaded socket units and of the
// socket unit files (templates left out: they cannot be loaded as such).
func listSocketUnits(ctx context.Context, s *session, timeout time.Duration) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	names := map[string]bool{}
	loaded, err := s.sd.ListUnitsByPatternsContext(ctx, nil, []string{"*.socket"})
	if err != nil {
		return nil, fmt.Errorf("list units: %w", err)
	}
	for _, u := range loaded {
		names[u.Name] = true
	}
	files, err := s.sd.ListUnitFilesByPatternsContext(ctx, nil, []string{"*.socket"})
	if err != nil {
		return nil, fmt.Errorf("list unit files: %w", err)
	}
	for _, f := range files {
		names[path.Base(f.Path)] = true
	}
	for n := range names {
		if strings.Contains(n, "@.") || !strings.HasSuffix(n, ".socket") {
			delete(names, n)
		}
	}
	return names, nil
}

// inspect reads a socket unit's Listen property and, when one of its paths
// is an engine socket, its states and the states of the service it triggers.
func (in *instance) inspect(ctx context.Context, s *session, name string) {
	in.inspected[name] = true
	ctx, cancel := context.WithTimeout(ctx, in.cfg.CallTimeout)
	defer cancel()
	prop, err := s.sd.GetUnitTypePropertyContext(ctx, name, "Socket", "Listen")
	if err != nil {
		in.log.Debug("read Listen", logging.KeyUnit, name, logging.Err(err))
		return
	}
	listens, err := decodeListen(name, prop.Value)
	if err != nil {
		in.warn("socket unit with an unreadable Listen property", logging.KeyUnit, name, logging.Err(err))
		return
	}
	u := in.units[name]
	if len(listens) == 0 {
		// A masked unit has an empty Listen even while its socket still
		// listens (and a connect would start the service): keep what was
		// known, or read the unit file that the mask hides.
		if u != nil {
			for _, l := range u.listens {
				listens = append(listens, Listen{Type: "Stream", Address: l.path})
			}
		} else {
			listens = maskedListens(in.root(), name)
		}
	}
	var entries []listenEntry
	for _, l := range listens {
		if !l.IsUnixStreamPath() {
			continue
		}
		p := cleanListenPath(l.Address)
		if typ, fam, ok := in.cfg.socketFamily(p); ok {
			if w := in.cfg.Watched; w != nil && !w(hostPath(in.cfg.ProcRoot, in.pid, p), p) {
				in.log.Debug("engine socket left out by the endpoint filter", logging.KeyUnit, name, "listen", p)
				continue
			}
			entries = append(entries, listenEntry{typ: typ, family: fam, path: p})
		}
	}
	if len(entries) == 0 {
		if u != nil {
			u.socket.Active = "inactive"
			in.update(s, u)
			in.forget(u)
		}
		return
	}
	props, err := s.sd.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		in.warn("read socket unit", logging.KeyUnit, name, logging.Err(err))
		return
	}
	sockSt, err := statesFromProps(name, props)
	if err != nil {
		in.warn("read socket unit", logging.KeyUnit, name, logging.Err(err))
		return
	}
	service := strings.TrimSuffix(name, ".socket") + ".service"
	if v, ok := props["Triggers"]; ok {
		trig, err := decodeStrings(name, "Triggers", v)
		if err != nil {
			in.warn("read socket unit", logging.KeyUnit, name, logging.Err(err))
		}
		for _, t := range trig {
			if strings.HasSuffix(t, ".service") {
				service = t
				break
			}
		}
	}
	svcSt, err := readUnitStates(ctx, s.sd, service)
	if err != nil {
		in.warn("read service of socket unit", logging.KeyUnit, name, logging.Err(err))
		return
	}
	if u == nil {
		u = &unit{name: name, published: map[string]SocketEngine{}}
		in.units[name] = u
	}
	if u.service != "" && u.service != service {
		delete(in.paths, unitPath(u.service))
	}
	u.service, u.socket, u.svc = service, sockSt, svcSt
	// Engine paths the unit no longer listens on are retired.
	for p, e := range u.published {
		if !slices.ContainsFunc(entries, func(l listenEntry) bool { return l.path == p }) {
			e.State, e.Engines = StateRetired, nil
			in.m.publish(e)
			delete(u.published, p)
			delete(u.engines, p)
		}
	}
	u.listens = entries
	in.paths[unitPath(name)] = pathRef{socket: name}
	in.paths[unitPath(service)] = pathRef{socket: name, service: true}
	in.update(s, u)
}

// root is the systemd's root directory as reached from here.
func (in *instance) root() string {
	if in.pid == 0 {
		return "/"
	}
	return hostPath(in.cfg.ProcRoot, in.pid, "/")
}

// refresh rereads the states of a tracked unit and its service, then
// updates it (with the states known before when they cannot be read).
func (in *instance) refresh(ctx context.Context, s *session, u *unit) {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.CallTimeout)
	defer cancel()
	defer in.update(s, u)
	sockSt, err := readUnitStates(ctx, s.sd, u.name)
	if err != nil {
		in.warn("refresh socket unit", logging.KeyUnit, u.name, logging.Err(err))
		return
	}
	svcSt, err := readUnitStates(ctx, s.sd, u.service)
	if err != nil {
		in.warn("refresh service", logging.KeyUnit, u.name, "service", u.service, logging.Err(err))
		return
	}
	u.socket, u.svc = sockSt, svcSt
}

// forget stops following u (after it was retired).
func (in *instance) forget(u *unit) {
	delete(in.units, u.name)
	delete(in.paths, unitPath(u.name))
	if u.service != "" {
		delete(in.paths, unitPath(u.service))
	}
}

// state derives the engine state from the unit's and its service's
// ActiveState.
func (u *unit) state() State {
	switch u.socket.Active {
	case "active", "reloading":
	default:
		u.wasActive = false
		return StateRetired
	}
	switch u.svc.Active {
	case "active", "reloading", "deactivating":
		u.wasActive = true
		return StateActive
	}
	if u.wasActive {
		return StateInactive
	}
	return StateListening
}

// update publishes the unit's engines whose state changed and starts an
// attempt when one is due (see actState).
func (in *instance) update(s *session, u *unit) {
	if u.changed != nil {
		select {
		case u.changed <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	st := u.state()
	if st == StateRetired {
		in.resetActivation(u)
	}
	masked := u.socket.masked() || u.svc.masked()
	excluded := in.cfg.excluded(u.name)
	for _, l := range u.listens {
		e := SocketEngine{
			Type:       l.typ,
			Unit:       u.name,
			Service:    u.service,
			ListenPath: l.path,
			Endpoint:   hostPath(in.cfg.ProcRoot, in.pid, l.path),
			SystemdPID: in.pid,
			State:      st,
			Masked:     masked,
			Excluded:   excluded,
			Engines:    u.engines[l.path],
		}
		prev, seen := u.published[l.path]
		if !seen && st == StateRetired {
			continue
		}
		if seen && prev.Equal(e) {
			continue
		}
		in.m.publish(e)
		if st == StateRetired {
			delete(u.published, l.path)
		} else {
			u.published[l.path] = e
		}
	}
	if !masked {
		u.maskLogged = false
	}
	if !excluded {
		u.excludeLogged = false
	}
	in.maybeAttempt(s, u, st, masked, excluded)
}

// maybeAttempt starts the activation or confirmation of u when one is due:
// never twice in one listening period once the engines answered, never
// while one runs, and after a failure only at retryAt (but a service that
// came up after an activation that could not start it is confirmed at once:
// it was only slower than the start timeout).
func (in *instance) maybeAttempt(s *session, u *unit, st State, masked, excluded bool) {
	if !in.cfg.Activate || len(u.listens) == 0 || u.act == actRunning || u.act == actConfirmed {
		return
	}
	start := false
	switch st {
	case StateActive:
		// The service runs: a probe connects, which starts nothing, masked
		// or excluded alike.
	case StateListening, StateInactive:
		switch {
		case masked:
			if !u.maskLogged {
				in.log.Warn("not activating engine socket: unit is masked", u.logAttrs(logging.MessageID(logging.MessageIDActivation),
					"socket_load_state", u.socket.Load, "socket_unit_file_state", u.socket.File,
					"service_load_state", u.svc.Load, "service_unit_file_state", u.svc.File)...)
				u.maskLogged = true
			}
			return
		case excluded:
			if !u.excludeLogged {
				in.log.Info("not activating engine socket: unit excluded from activation", u.logAttrs(logging.MessageID(logging.MessageIDActivation))...)
				u.excludeLogged = true
			}
			return
		}
		start = true
	default:
		return
	}
	if u.act == actFailed && time.Now().Before(u.retryAt) && (st != StateActive || !u.failedDown) {
		return
	}
	in.startAttempt(s, u, start)
}

// startAttempt runs one attempt for u in a goroutine of its own, under the
// session's context; its result comes back to the serve loop.
func (in *instance) startAttempt(s *session, u *unit, start bool) {
	ctx := in.serveCtx
	in.attempts++
	u.changed = make(chan struct{}, 1)
	a := attempt{id: in.attempts, socket: u.name, service: u.service, start: start, changed: u.changed}
	for _, l := range u.listens {
		a.targets = append(a.targets, target{path: l.path, endpoint: hostPath(in.cfg.ProcRoot, in.pid, l.path), family: l.family})
	}
	actx, cancel := context.WithCancel(ctx)
	u.act, u.attempt, u.cancel = actRunning, a.id, cancel
	t := timeouts{call: in.cfg.CallTimeout, start: in.cfg.StartTimeout, answer: in.cfg.AnswerTimeout}
	in.actWG.Add(1)
	go func() {
		defer in.actWG.Done()
		defer cancel()
		began := time.Now()
		engines, up, err := a.run(actx, s.sd, t)
		select {
		case in.results <- activationResult{unit: a.socket, id: a.id, start: start, up: up, engines: engines, err: err, elapsed: time.Since(began)}:
		case <-ctx.Done():
		}
	}()
}

// resetActivation ends a running attempt and forgets what the last
// listening period of u's socket learnt: its socket no longer listens.
func (in *instance) resetActivation(u *unit) {
	if u.cancel != nil {
		u.cancel()
	}
	u.act, u.cancel, u.engines, u.failures, u.retryAt = actNone, nil, nil, 0, time.Time{}
}

// handleResult records the end of an attempt. A result of an attempt that
// was ended (the socket stopped meanwhile) is dropped.
func (in *instance) handleResult(ctx context.Context, s *session, r activationResult) {
	u := in.units[r.unit]
	if u == nil || u.act != actRunning || u.attempt != r.id {
		in.log.Debug("dropping the result of an ended activation", logging.KeyUnit, r.unit, logging.Err(r.err))
		return
	}
	u.cancel = nil
	if len(r.engines) > 0 {
		u.engines = r.engines
	}
	what := "confirmed engine socket"
	if r.start {
		what = "activated engine socket"
	}
	elapsed := r.elapsed.Round(time.Millisecond)
	if r.err == nil {
		u.act, u.failures = actConfirmed, 0
		in.log.Info(what, u.logAttrs(logging.MessageID(logging.MessageIDActivation), "elapsed", elapsed, "engines", engineIDs(r.engines))...)
		in.refresh(ctx, s, u)
		return
	}
	u.act, u.failedDown = actFailed, !r.up
	u.failures++
	delay := in.cfg.RetryInterval * time.Duration(min(1<<min(u.failures-1, 30), maxRetryFactor))
	u.retryAt = time.Now().Add(delay)
	if errors.Is(r.err, ErrMasked) {
		if !u.maskLogged {
			in.log.Warn("not activating engine socket: unit is masked", u.logAttrs(logging.MessageID(logging.MessageIDActivation), logging.Err(r.err))...)
			u.maskLogged = true
		}
	} else {
		in.log.Warn("activation failed", u.logAttrs(logging.MessageID(logging.MessageIDActivation), "start", r.start,
			"elapsed", elapsed, "retry_in", delay, logging.Err(r.err))...)
	}
	in.update(s, u)
	in.armRetry()
}

// engineIDs lists the IDs of engines by listen path, for logs.
func engineIDs(m map[string][]model.Engine) []string {
	var ids []string
	for _, es := range m {
		for _, e := range es {
			ids = append(ids, e.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// retryDue updates every unit whose failed attempt may be retried now.
func (in *instance) retryDue(s *session) {
	now := time.Now()
	names := make([]string, 0, len(in.units))
	for n, u := range in.units {
		if u.act == actFailed && !now.Before(u.retryAt) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if u := in.units[n]; u != nil {
			in.update(s, u)
		}
	}
	in.armRetry()
}

// armRetry sets the retry timer to the earliest retryAt of a failed unit.
func (in *instance) armRetry() {
	var next time.Time
	for _, u := range in.units {
		if u.act == actFailed && (next.IsZero() || u.retryAt.Before(next)) {
			next = u.retryAt
		}
	}
	in.retry.Stop()
	if !next.IsZero() {
		in.retry.Reset(max(time.Until(next), time.Millisecond))
	}
}

// retireAll retires every engine of the instance (connection lost, systemd
// gone) and forgets the units.
func (in *instance) retireAll() {
	for _, u := range in.units {
		in.resetActivation(u)
		for p, e := range u.published {
			e.State, e.Engines = StateRetired, nil
			in.m.publish(e)
			delete(u.published, p)
		}
		in.forget(u)
	}
}

// warn logs a problem of a D-Bus call, unless it is only the session ending.
func (in *instance) warn(msg string, args ...any) {
	if in.serveCtx != nil && in.serveCtx.Err() != nil {
		return
	}
	in.log.Warn(msg, args...)
}
