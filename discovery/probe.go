package discovery

import (
	"context"
	"errors"
	"fmt"
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

// probeAll asks every family in fams, in order, and returns what answered:
// all answers when any did (a containerd socket also serves CRI), else the
// joined errors. With first, it returns the first answer only (an endpoint
// handed in without a type: podman also answers Docker's API, so the family
// order decides).
func probeAll(fams engine.Families, first bool) probeFunc {
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
			if first {
				break
			}
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

// probeFor returns the probe for an engine type hint; "" asks every family
// and takes the first that answers.
func (d *Discoverer) probeFor(t model.EngineType) probeFunc {
	if t != "" {
		if f, ok := d.fams.ForType(t); ok {
			return probeAll(engine.Families{f}, false)
		}
	}
	return probeAll(d.fams, true)
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
