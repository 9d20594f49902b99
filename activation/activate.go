package activation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/agentd-dev/agentd/internal/unixhttp"
	"github.com/agentd-dev/agentd/internal/wait"
)

// ErrMasked is returned (wrapped) when an activation is refused because the
// socket unit or its service is masked.
var ErrMasked = errors.New("unit is masked")

// Ping sends HTTP GET /_ping over the unix socket at endpoint and returns nil
// when the engine answers 200 (Docker and podman both answer "OK"). A connect
// to a listening socket unit starts its service: Ping is also how an engine
// is activated.
func Ping(ctx context.Context, endpoint string) error {
	c := unixhttp.NewClient(endpoint, 0)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine/_ping", nil)
	if err != nil {
		return fmt.Errorf("ping %s: %w", endpoint, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("ping %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping %s: status %d: %q", endpoint, resp.StatusCode, body)
	}
	return nil
}

// unitStates are the load, unit file and active states of one unit.
type unitStates struct {
	Load, File, Active string
}

// masked reports whether the unit is masked, at runtime or for good.
func (s unitStates) masked() bool {
	return s.Load == "masked" || s.File == "masked" || s.File == "masked-runtime"
}

// readUnitStates reads LoadState, UnitFileState and ActiveState of unit.
func readUnitStates(ctx context.Context, sd *sddbus.Conn, unit string) (unitStates, error) {
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

// activation is what one activation needs to know.
type activation struct {
	socket, service string
	endpoint        string
}

// activateEngine starts the engine behind a socket unit and confirms it:
// it refuses when the socket or the service is masked (ErrMasked), connects
// to the socket with GET /_ping (the connect itself triggers the socket
// activation), falls back to StartUnit of the service ("replace", waiting for
// the job's result) when the ping fails, and then requires ActiveState
// "active" of the service and a /_ping answered OK.
func activateEngine(ctx context.Context, sd *sddbus.Conn, a activation, pingTimeout time.Duration) error {
	for _, u := range []string{a.socket, a.service} {
		st, err := readUnitStates(ctx, sd, u)
		if err != nil {
			return err
		}
		if st.masked() {
			return fmt.Errorf("unit %s (LoadState %s, UnitFileState %s): %w", u, st.Load, st.File, ErrMasked)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	perr := Ping(pctx, a.endpoint)
	cancel()
	if perr != nil {
		if err := startUnit(ctx, sd, a.service); err != nil {
			return errors.Join(perr, err)
		}
		if err := pingUntil(ctx, a.endpoint); err != nil {
			return fmt.Errorf("after starting %s: %w", a.service, err)
		}
	}
	return waitActive(ctx, sd, a.service)
}

// pingUntil pings endpoint until it answers or ctx is done: a service
// started without its socket's file descriptors binds the path itself, a
// moment after its start job is done.
func pingUntil(ctx context.Context, endpoint string) error {
	for {
		err := Ping(ctx, endpoint)
		if err == nil {
			return nil
		}
		if !wait.Sleep(ctx, activeWaitStep) {
			return err
		}
	}
}

// startUnit starts unit in "replace" mode and waits for its job's result.
func startUnit(ctx context.Context, sd *sddbus.Conn, unit string) error {
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

// activeWaitStep is the pause between two reads of ActiveState while an
// activation is being confirmed.
const activeWaitStep = 100 * time.Millisecond

// waitActive waits until unit's ActiveState is "active". A service that
// answers on its socket is normally active already; a Type=notify service
// may still be "activating" for a moment.
func waitActive(ctx context.Context, sd *sddbus.Conn, unit string) error {
	t := time.NewTimer(0)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("unit %s: still %q: %w", unit, last, ctx.Err())
		case <-t.C:
		}
		p, err := sd.GetUnitPropertyContext(ctx, unit, "ActiveState")
		if err != nil {
			return fmt.Errorf("unit %s: get ActiveState: %w", unit, err)
		}
		s, err := decodeString(unit, "ActiveState", p.Value)
		if err != nil {
			return err
		}
		switch s {
		case "active", "reloading":
			return nil
		case "failed":
			return fmt.Errorf("unit %s: failed", unit)
		}
		last = s
		t.Reset(activeWaitStep)
	}
}
