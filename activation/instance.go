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

	"github.com/agentd-dev/agentd/internal/wait"
	"github.com/agentd-dev/agentd/model"
	"github.com/godbus/dbus/v5"
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
	log   *slog.Logger

	units     map[string]*unit            // engine socket units by name
	inspected map[string]bool             // socket units whose Listen was read
	paths     map[dbus.ObjectPath]pathRef // object paths of tracked sockets and services
	results   chan activationResult
	actWG     sync.WaitGroup
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
	typ  model.EngineType
	path string
}

// unit is what an instance knows of one engine socket unit.
type unit struct {
	name, service string
	listens       []listenEntry
	socket, svc   unitStates
	wasActive     bool // the service was active since the socket last started listening
	published     map[string]SocketEngine

	activating     bool
	lastActivation time.Time
	maskLogged     bool
	excludeLogged  bool
	rateLogged     bool
}

// activationResult reports the end of one activation.
type activationResult struct {
	unit    string
	err     error
	elapsed time.Duration
}

func newInstance(m *Manager, pid int, addrs []busAddr) *instance {
	log := m.log.With("systemd_pid", pid)
	if pid == 0 {
		log = m.log.With("systemd", "host")
	}
	return &instance{
		m:       m,
		cfg:     m.cfg,
		pid:     pid,
		addrs:   addrs,
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
	backoff := time.Second
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
				in.log.Warn("systemd D-Bus not reachable, carrying on without it; retrying quietly",
					"addresses", addrList(in.addrs), "error", err)
				downLogged = true
			}
			if !wait.Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, in.cfg.MaxBackoff)
			continue
		}
		downLogged = false
		in.log.Info("connected to systemd", "address", sess.addr.address, "direct", sess.addr.direct)
		connected := time.Now()
		err = in.serve(ctx, sess)
		sess.close()
		in.actWG.Wait()
		if ctx.Err() != nil {
			return
		}
		in.log.Warn("lost systemd D-Bus connection", "address", sess.addr.address, "error", err)
		in.retireAll()
		// A bus that accepts and then drops the connection must not make a
		// hot loop: only a session that lasted resets the backoff.
		if time.Since(connected) >= stableSession {
			backoff = time.Second
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
		s, err := openSession(ctx, a, in.cfg.CallTimeout)
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
			in.log.Debug("malformed UnitNew signal", "error", err)
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
			in.log.Debug("malformed UnitRemoved signal", "error", err)
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
			in.log.Debug("malformed JobRemoved signal", "error", err)
			return false
		}
		if ref, ok := in.paths[unitPath(name)]; ok {
			in.refresh(ctx, s, in.units[ref.socket])
		}
	case managerIface + ".Reloading":
		var active bool
		if err := dbus.Store(sig.Body, &active); err != nil {
			in.log.Debug("malformed Reloading signal", "error", err)
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
			in.log.Debug("malformed PropertiesChanged signal", "path", sig.Path, "error", err)
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
		in.warn("list socket units", "error", err)
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
		in.log.Debug("read Listen", "unit", name, "error", err)
		return
	}
	listens, err := decodeListen(name, prop.Value)
	if err != nil {
		in.warn("socket unit with an unreadable Listen property", "unit", name, "error", err)
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
		if typ, ok := in.cfg.engineType(p); ok {
			entries = append(entries, listenEntry{typ: typ, path: p})
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
		in.warn("read socket unit", "unit", name, "error", err)
		return
	}
	sockSt, err := statesFromProps(name, props)
	if err != nil {
		in.warn("read socket unit", "unit", name, "error", err)
		return
	}
	service := strings.TrimSuffix(name, ".socket") + ".service"
	if v, ok := props["Triggers"]; ok {
		trig, err := decodeStrings(name, "Triggers", v)
		if err != nil {
			in.warn("read socket unit", "unit", name, "error", err)
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
		in.warn("read service of socket unit", "unit", name, "error", err)
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
			e.State = StateRetired
			in.m.publish(e)
			delete(u.published, p)
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

// refresh rereads the states of a tracked unit and its service.
func (in *instance) refresh(ctx context.Context, s *session, u *unit) {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.CallTimeout)
	defer cancel()
	sockSt, err := readUnitStates(ctx, s.sd, u.name)
	if err != nil {
		in.warn("refresh socket unit", "unit", u.name, "error", err)
		return
	}
	svcSt, err := readUnitStates(ctx, s.sd, u.service)
	if err != nil {
		in.warn("refresh service", "unit", u.name, "service", u.service, "error", err)
		return
	}
	u.socket, u.svc = sockSt, svcSt
	in.update(s, u)
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
// activation when one is due.
func (in *instance) update(s *session, u *unit) {
	ctx := in.serveCtx
	st := u.state()
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
		}
		prev, seen := u.published[l.path]
		if !seen && st == StateRetired {
			continue
		}
		if seen && prev == e {
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
	if st != StateListening || !in.cfg.Activate || u.activating || len(u.listens) == 0 {
		return
	}
	switch {
	case masked:
		if !u.maskLogged {
			in.log.Warn("not activating engine socket: unit is masked", "unit", u.name, "service", u.service,
				"socket_load_state", u.socket.Load, "socket_unit_file_state", u.socket.File,
				"service_load_state", u.svc.Load, "service_unit_file_state", u.svc.File)
			u.maskLogged = true
		}
		return
	case excluded:
		if !u.excludeLogged {
			in.log.Info("not activating engine socket: excluded by activation.exclude_units", "unit", u.name)
			u.excludeLogged = true
		}
		return
	}
	if !u.lastActivation.IsZero() && time.Since(u.lastActivation) < in.cfg.ActivationInterval {
		if !u.rateLogged {
			in.log.Warn("not activating engine socket: activated less than activation_interval ago",
				"unit", u.name, "activation_interval", in.cfg.ActivationInterval)
			u.rateLogged = true
		}
		return
	}
	u.rateLogged = false
	u.activating = true
	u.lastActivation = time.Now()
	a := activation{socket: u.name, service: u.service, endpoint: hostPath(in.cfg.ProcRoot, in.pid, u.listens[0].path)}
	in.actWG.Add(1)
	go func() {
		defer in.actWG.Done()
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, in.cfg.ActivationTimeout)
		err := activateEngine(actx, s.sd, a, min(in.cfg.ActivationTimeout, 10*time.Second))
		cancel()
		select {
		case in.results <- activationResult{unit: a.socket, err: err, elapsed: time.Since(start)}:
		case <-ctx.Done():
		}
	}()
}

// handleResult records the end of an activation.
func (in *instance) handleResult(ctx context.Context, s *session, r activationResult) {
	u := in.units[r.unit]
	if u != nil {
		u.activating = false
	}
	switch {
	case r.err == nil:
		in.log.Info("activated engine socket", "unit", r.unit, "elapsed", r.elapsed.Round(time.Millisecond))
		if u != nil {
			in.refresh(ctx, s, u)
		}
	case errors.Is(r.err, ErrMasked):
		if u != nil && !u.maskLogged {
			in.log.Warn("not activating engine socket: unit is masked", "unit", r.unit, "error", r.err)
			u.maskLogged = true
		}
	default:
		in.log.Warn("activation failed", "unit", r.unit, "elapsed", r.elapsed.Round(time.Millisecond), "error", r.err)
	}
}

// retireAll retires every engine of the instance (connection lost, systemd
// gone) and forgets the units.
func (in *instance) retireAll() {
	for _, u := range in.units {
		for p, e := range u.published {
			e.State = StateRetired
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
