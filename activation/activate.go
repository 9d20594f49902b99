package activation

import (
	"context"
	"errors"
	"fmt"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/wait"
	"github.com/agentd-dev/agentd/model"
)

// ErrMasked is returned (wrapped) when an activation is refused because the
// socket unit or its service is masked.
var ErrMasked = errors.New("unit is masked")

// unitStates are the load, unit file and active states of one unit.
type unitStates struct {
	Load, File, Active string
}

// masked reports whether the unit is masked, at runtime or for good.
func (s unitStates) masked() bool {
	return s.Load == "masked" || s.File == "masked" || s.File == "masked-runtime"
}

// readUnitStates reads LoadState, UnitFileState and ActiveState of unit.
func readUnitStates(ctx context.Context, sd unitReader, unit string) (unitStates, error) {
	props, err := sd.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return unitStates{}, fmt.Errorf("unit %s: get properties: %w", unit, err)
	}
	return statesFromProps(unit, props)
}

// statesFromProps decodes the states from a GetAll answer of the Unit
// interface. UnitFileState is empty for units without a file (transient,
// not found): that is not an error.
func statesFromProps(unit string, props map[string]any) (unitStates, error) {
	var st unitStates
	var errs []error
	for _, f := range []struct {
		name     string
		dst      *string
		optional bool
	}{
		{"LoadState", &st.Load, false},
		{"ActiveState", &st.Active, false},
		{"UnitFileState", &st.File, true},
	} {
		v, ok := props[f.name]
		if !ok {
			if !f.optional {
				errs = append(errs, propError(unit, f.name, errors.New("missing")))
			}
			continue
		}
		s, err := decodeString(unit, f.name, v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		*f.dst = s
	}
	return st, errors.Join(errs...)
}

// target is one engine socket of a unit to confirm.
type target struct {
	path     string // listen path inside the systemd's root
	endpoint string // the same socket as reached from here
	family   engine.Family
}

// attempt is one activation (start the service, then confirm) or
// confirmation (the service runs already: only confirm) of a socket unit.
type attempt struct {
	id              uint64
	socket, service string
	start           bool
	targets         []target
	// changed is signalled (by the instance's serve loop) whenever the
	// states of the socket unit or its service changed, as told by
	// systemd's PropertiesChanged and JobRemoved signals; nil: never.
	changed <-chan struct{}
}

// timeouts are the deadlines of one attempt.
type timeouts struct {
	call, start, answer time.Duration
}

// run performs the attempt. An activation refuses a masked socket unit or
// service (ErrMasked), starts the service with StartUnit ("replace") and
// follows it: the job's result, then ActiveState until "active", within
// t.start. Then, for activations and confirmations alike, each target's
// family probe is asked until the engine answers, within t.answer. It
// returns the engines that answered by listen path, whether the service was
// up (active) when they were asked, and the joined errors of the targets
// that did not answer (or the error that kept the service from coming up).
func (a attempt) run(ctx context.Context, sd systemd, t timeouts) (map[string][]model.Engine, bool, error) {
	if a.start {
		if err := startService(ctx, sd, a, t); err != nil {
			return nil, false, err
		}
	}
	actx, cancel := context.WithTimeout(ctx, t.answer)
	defer cancel()
	out := map[string][]model.Engine{}
	var errs []error
	for _, tg := range a.targets {
		es, err := probeUntil(actx, tg.family.Probe, tg.endpoint)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s does not answer as %s: %w", a.socket, tg.family.Name, err))
			continue
		}
		for i := range es {
			es[i].Unit = a.socket
		}
		out[tg.path] = es
	}
	return out, true, errors.Join(errs...)
}

// startService refuses a masked unit, starts the service and waits until it
// is active.
func startService(ctx context.Context, sd systemd, a attempt, t timeouts) error {
	for _, u := range []string{a.socket, a.service} {
		cctx, cancel := context.WithTimeout(ctx, t.call)
		st, err := readUnitStates(cctx, sd, u)
		cancel()
		if err != nil {
			return err
		}
		if st.masked() {
			return fmt.Errorf("unit %s (LoadState %s, UnitFileState %s): %w", u, st.Load, st.File, ErrMasked)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, t.start)
	defer cancel()
	if err := startUnit(sctx, sd, a.service); err != nil {
		return err
	}
	return waitActive(sctx, sd, a.service, t.call, a.changed)
}

// startUnit starts unit in "replace" mode and waits for its job's result.
// A start job ends "done" once the unit is up (a Type=notify service such as
// dockerd: when it said READY); "failed", "timeout" (systemd's own start
// timeout), "dependency" and the rest are errors.
func startUnit(ctx context.Context, sd unitStarter, unit string) error {
	// go-systemd sends the result while holding its job lock: the channel
	// must have room so that its dispatcher never blocks on us.
	ch := make(chan string, 1)
	if _, err := sd.StartUnitContext(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("unit %s: start: %w", unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("unit %s: start job %s", unit, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("unit %s: waiting for start job: %w", unit, ctx.Err())
	}
}

// waitActive waits until unit's ActiveState is "active" (or "reloading").
// After a start job's "done" it normally is at the first read; a service
// still "activating" is read again each time changed says systemd signalled
// a change, until ctx ends; one that is "failed", "inactive" or
// "deactivating" exited right after its start.
func waitActive(ctx context.Context, sd unitReader, unit string, call time.Duration, changed <-chan struct{}) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, call)
		st, err := readUnitStates(cctx, sd, unit)
		cancel()
		if err != nil {
			return err
		}
		switch st.Active {
		case "active", "reloading":
			return nil
		case "activating":
		default:
			return fmt.Errorf("unit %s: %s after its start job was done", unit, st.Active)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("unit %s: still %s: %w", unit, st.Active, ctx.Err())
		}
	}
}

// probeUntil asks probe until the socket at endpoint answers as an engine,
// ctx ends, or it answers as something else (engine.ErrNotEngine, not worth
// asking again). A service started without its socket unit's file
// descriptors binds the path itself a moment after it is active: failed
// connects are retried with a growing pause.
func probeUntil(ctx context.Context, probe func(context.Context, string) ([]model.Engine, error), endpoint string) ([]model.Engine, error) {
	step := 100 * time.Millisecond
	for {
		es, err := probe(ctx, endpoint)
		if err == nil && len(es) == 0 {
			err = fmt.Errorf("%s: no engine in the answer: %w", endpoint, engine.ErrNotEngine)
		}
		if err == nil {
			return es, nil
		}
		if errors.Is(err, engine.ErrNotEngine) || !wait.Sleep(ctx, step) {
			return nil, err
		}
		step = min(2*step, 2*time.Second)
	}
}

// unitLister lists a systemd's socket units and unit files.
type unitLister interface {
	ListUnitsByPatternsContext(ctx context.Context, states, patterns []string) ([]sddbus.UnitStatus, error)
	ListUnitFilesByPatternsContext(ctx context.Context, states, patterns []string) ([]sddbus.UnitFile, error)
}

// unitReader reads a unit's properties: all of the Unit interface, or one
// of a unit type's interface (Socket's Listen).
type unitReader interface {
	GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]any, error)
	GetUnitTypePropertyContext(ctx context.Context, unit, unitType, propertyName string) (*sddbus.Property, error)
}

// unitStarter starts a unit and sends its job's result on ch.
type unitStarter interface {
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
}

// systemd is what an instance asks of one systemd's manager: go-systemd's
// *dbus.Conn, or a fake bus in tests. Unit state changes come as signals on
// the session, never from polling.
type systemd interface {
	unitLister
	unitReader
	unitStarter
}
