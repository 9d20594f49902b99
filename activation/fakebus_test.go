package activation

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// fakeBus stands in for one systemd's manager: the unit states a test sets,
// the signals systemd would send about them, and StartUnit jobs that start
// services. It counts StartUnit calls and family probes, and records probes
// of a service that was not active (in real life such a connect would have
// started it behind agentd's back).
type fakeBus struct {
	t       *testing.T
	signals chan *dbus.Signal

	mu     sync.Mutex
	units  map[string]*fakeUnit
	starts map[string][]time.Time // StartUnit calls by unit
	// jobs are the outcomes of the next StartUnit calls, in order; when
	// they run out a start is "done" at once.
	jobs       []fakeJob
	probes     map[string]int // probes by endpoint
	coldProbes int
	// probeErrs are the errors of the next probes, in order; then probes
	// answer.
	probeErrs []error
	wg        sync.WaitGroup
}

// fakeUnit is one unit's state.
type fakeUnit struct {
	load, file, active string
	listen             string // socket units: the Stream path
	service            string // socket units: the service it triggers
}

// fakeJob is the outcome of one StartUnit call: the job's result after
// delay, with the service "activating" meanwhile.
type fakeJob struct {
	result string
	delay  time.Duration
}

func newFakeBus(t *testing.T) *fakeBus {
	b := &fakeBus{t: t, signals: make(chan *dbus.Signal, signalBuffer), units: map[string]*fakeUnit{},
		starts: map[string][]time.Time{}, probes: map[string]int{}}
	t.Cleanup(b.wg.Wait)
	return b
}

var _ systemd = (*fakeBus)(nil)

// socket adds a socket unit listening on listen that triggers service, and
// the service in state svcActive.
func (b *fakeBus) socket(name, listen, service, svcActive string) *fakeBus {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.units[name] = &fakeUnit{load: "loaded", file: "enabled", active: "active", listen: listen, service: service}
	b.units[service] = &fakeUnit{load: "loaded", file: "disabled", active: svcActive}
	return b
}

// edit changes a unit without telling anyone.
func (b *fakeBus) edit(name string, f func(*fakeUnit)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b.units[name])
}

// setActive changes a unit's ActiveState and signals it, as systemd does.
func (b *fakeBus) setActive(name, state string) {
	b.edit(name, func(u *fakeUnit) { u.active = state })
	b.emit(propertiesChanged(name, state))
}

// emit sends a signal; the buffer is as deep as the real session's.
func (b *fakeBus) emit(sig *dbus.Signal) {
	select {
	case b.signals <- sig:
	default:
		b.t.Errorf("fake bus: signal buffer full, %s dropped", sig.Name)
	}
}

func propertiesChanged(unit, active string) *dbus.Signal {
	return &dbus.Signal{Path: unitPath(unit), Name: propertiesIface + ".PropertiesChanged",
		Body: []any{unitIface, map[string]dbus.Variant{"ActiveState": dbus.MakeVariant(active)}, []string{}}}
}

func managerSignal(member string, body ...any) *dbus.Signal {
	return &dbus.Signal{Path: systemdPath, Name: managerIface + "." + member, Body: body}
}

func (b *fakeBus) startCount(unit string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.starts[unit])
}

func (b *fakeBus) startTimes(unit string) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.starts[unit]...)
}

func (b *fakeBus) probeCount() (all, cold int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.probes {
		all += n
	}
	return all, b.coldProbes
}

func (b *fakeBus) ListUnitsByPatternsContext(_ context.Context, _, patterns []string) ([]sddbus.UnitStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []sddbus.UnitStatus
	for n, u := range b.units {
		for _, p := range patterns {
			if ok, _ := path.Match(p, n); ok {
				out = append(out, sddbus.UnitStatus{Name: n, LoadState: u.load, ActiveState: u.active})
				break
			}
		}
	}
	return out, nil
}

func (b *fakeBus) ListUnitFilesByPatternsContext(context.Context, []string, []string) ([]sddbus.UnitFile, error) {
	return nil, nil
}

func (b *fakeBus) GetUnitPropertiesContext(_ context.Context, unit string) (map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.units[unit]
	if !ok {
		return map[string]any{"LoadState": "not-found", "ActiveState": "inactive", "UnitFileState": ""}, nil
	}
	props := map[string]any{"LoadState": u.load, "ActiveState": u.active, "UnitFileState": u.file}
	if u.service != "" {
		props["Triggers"] = []string{u.service}
	}
	return props, nil
}

func (b *fakeBus) GetUnitTypePropertyContext(_ context.Context, unit, unitType, prop string) (*sddbus.Property, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.units[unit]
	if !ok || unitType != "Socket" || prop != "Listen" || u.listen == "" {
		return nil, fmt.Errorf("fake bus: no property %s.%s of %s", unitType, prop, unit)
	}
	return &sddbus.Property{Name: prop, Value: dbus.MakeVariant([][]any{{"Stream", u.listen}})}, nil
}

// StartUnitContext starts a service the way systemd does: "activating",
// then after the job's delay "active" (or "failed"), each signalled, then
// the job's result.
func (b *fakeBus) StartUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	b.mu.Lock()
	u, ok := b.units[name]
	if !ok {
		b.mu.Unlock()
		return 0, fmt.Errorf("fake bus: unit %s not found", name)
	}
	if mode != "replace" {
		b.t.Errorf("StartUnit %s in mode %q, want replace", name, mode)
	}
	b.starts[name] = append(b.starts[name], time.Now())
	job := fakeJob{result: "done"}
	if len(b.jobs) > 0 {
		job, b.jobs = b.jobs[0], b.jobs[1:]
	}
	wasActive := u.active == "active"
	jobID := len(b.starts[name])
	b.mu.Unlock()
	finish := func() {
		switch {
		case job.result == "done" && !wasActive:
			b.setActive(name, "active")
		case job.result == "failed":
			b.setActive(name, "failed")
		}
		ch <- job.result
	}
	if job.delay == 0 {
		finish()
		return jobID, nil
	}
	b.setActive(name, "activating")
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		time.Sleep(job.delay)
		finish()
	}()
	return jobID, nil
}

// family is an engine family of type typ on sockets ending in suffix whose
// probe answers when the socket's service is active.
func (b *fakeBus) family(typ model.EngineType, suffix string) engine.Family {
	return engine.Family{
		Name:    string(typ),
		Types:   []model.EngineType{typ},
		Sockets: []string{suffix},
		Probe: func(ctx context.Context, endpoint string) ([]model.Engine, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.probes[endpoint]++
			for _, u := range b.units {
				if u.listen == endpoint && b.units[u.service] != nil && b.units[u.service].active != "active" {
					b.coldProbes++
				}
			}
			if len(b.probeErrs) > 0 {
				err := b.probeErrs[0]
				b.probeErrs = b.probeErrs[1:]
				return nil, fmt.Errorf("%s at %s: %w", typ, endpoint, err)
			}
			return []model.Engine{{ID: string(typ) + ":" + endpoint, Type: typ, Version: "1.0", Endpoint: endpoint}}, nil
		},
	}
}

// errRefused is a probe's failed connect.
var errRefused = errors.New("connect: connection refused")

// dial returns sessions on the fake bus.
func (b *fakeBus) dial(_ context.Context, a busAddr, _ time.Duration) (*session, error) {
	return &session{addr: a, sd: b, signals: b.signals, close: func() {}}, nil
}
