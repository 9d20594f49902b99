package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/procfs"
	"github.com/agentd-dev/agentd/model"
)

// probeFunc asks the socket at endpoint (a host path) which engines answer
// there. It honours ctx's deadline.
type probeFunc func(ctx context.Context, endpoint string) ([]model.Engine, error)

// detector recognises the engine processes of one comm and holds the
// families that may answer on their sockets (containerd's socket serves
// containerd and its CRI plugin).
type detector struct {
	comm string
	fams engine.Families
}

// named reports whether the detector's families name their endpoints in the
// command line (engine.Family.Endpoints) rather than listening on sockets.
func (det *detector) named() bool {
	return slices.ContainsFunc(det.fams, func(f engine.Family) bool { return f.Endpoints != nil })
}

// detectors groups the families by process name, in the families' order.
func detectors(fams engine.Families) []detector {
	var dets []detector
	for _, f := range fams {
		for _, comm := range f.Comms {
			i := 0
			for i < len(dets) && dets[i].comm != comm {
				i++
			}
			if i == len(dets) {
				dets = append(dets, detector{comm: comm})
			}
			dets[i].fams = append(dets[i].fams, f)
		}
	}
	return dets
}

// probeAll asks every family in fams, in order, and returns all answers
// when any family answered (a containerd socket also serves CRI), else the
// joined errors.
func probeAll(fams engine.Families) probeFunc {
	return func(ctx context.Context, endpoint string) ([]model.Engine, error) {
		var out []model.Engine
		var errs []error
		for _, f := range fams {
			es, err := f.Probe(ctx, endpoint)
			if err != nil {
				errs = append(errs, err)
				if ctx.Err() != nil {
					break
				}
				continue
			}
			out = append(out, es...)
		}
		if len(out) > 0 {
			return out, nil
		}
		if len(errs) == 0 {
			return nil, fmt.Errorf("%s: no engine family to ask: %w", endpoint, engine.ErrNotEngine)
		}
		return nil, errors.Join(errs...)
	}
}

// probeFor returns the probe of an endpoint handed in from outside: the
// family of type t and the families sharing its process (containerd's socket
// also serves CRI). Without a type, the families are asked in order and the
// first that answers decides, with those sharing its process (podman also
// answers Docker's API, so the order matters).
func (d *Discoverer) probeFor(t model.EngineType) probeFunc {
	if f, ok := d.fams.ForType(t); ok {
		return probeAll(d.sharingProcess(f))
	}
	return func(ctx context.Context, endpoint string) ([]model.Engine, error) {
		var errs []error
		for _, f := range d.fams {
			es, err := f.Probe(ctx, endpoint)
			if err == nil {
				rest, _ := probeAll(d.sharingProcess(f)[1:])(ctx, endpoint)
				return append(es, rest...), nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return nil, errors.Join(errs...)
	}
}

// sharingProcess returns f first, then the other families that recognise
// one of f's process names.
func (d *Discoverer) sharingProcess(f engine.Family) engine.Families {
	out := engine.Families{f}
	for _, g := range d.fams {
		if g.Name != f.Name && slices.ContainsFunc(g.Comms, func(c string) bool { return slices.Contains(f.Comms, c) }) {
			out = append(out, g)
		}
	}
	return out
}

// endpointAnchorPID returns N for an endpoint of the form ROOT/N/root/..., the
// process through whose root the endpoint is reached, or 0.
func endpointAnchorPID(procRoot, endpoint string) int {
	rest, ok := strings.CutPrefix(endpoint, strings.TrimSuffix(procRoot, "/")+"/")
	if !ok {
		return 0
	}
	num, rest, ok := strings.Cut(rest, "/")
	if !ok || !strings.HasPrefix(rest, "root/") {
		return 0
	}
	n, ok := procfs.ParsePID([]byte(num))
	if !ok {
		return 0
	}
	return n
}
