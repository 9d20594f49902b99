package agent

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agentd-dev/agentd/activation"
	"github.com/agentd-dev/agentd/engine"
)

// NoEngineHint says, for people, that no container engine was found, what
// agentd looked for (the engine process names and socket paths of fams, and
// the systemd socket units seen: units, of which none led to an engine) and
// how to start one. unitsLooked is false when socket units were not looked
// for (activation disabled in the configuration).
func NoEngineHint(fams engine.Families, units []activation.SocketEngine, unitsLooked bool) string {
	var comms, sockets []string
	for _, f := range fams {
		comms = append(comms, f.Comms...)
		sockets = append(sockets, f.Sockets...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `no container engine found.
agentd looked for:
  - processes named %s holding a listening unix socket that answers as an engine
    (on this host and inside its containers, through /proc);
`, strings.Join(uniq(comms), ", "))
	switch {
	case !unitsLooked:
		b.WriteString("  - (not systemd socket units: activation.enabled is false in the configuration)\n")
	default:
		fmt.Fprintf(&b, `  - systemd socket units listening on a path ending in %s
    (the host's systemd and systemd running inside containers): `, strings.Join(uniq(sockets), ", "))
		var seen []string
		for _, u := range units {
			if u.State != activation.StateRetired {
				seen = append(seen, fmt.Sprintf("%s (%s)", u.Unit, u.State))
			}
		}
		if len(seen) == 0 {
			b.WriteString("none found.\n")
		} else {
			b.WriteString(strings.Join(seen, ", ") + ", no engine answered.\n")
		}
	}
	b.WriteString(`Start one, for example:
  systemctl start docker.socket                  # Docker, socket-activated
  systemctl enable --now podman.socket           # podman as root
  systemctl --user enable --now podman.socket    # podman rootless
  podman system service --time=0 &               # podman without systemd
  systemctl start containerd
`)
	return b.String()
}

// noEngineHint is NoEngineHint for this agent: its families and the socket
// units its activation has seen.
func (a *Agent) noEngineHint() string {
	a.mu.Lock()
	units := make([]activation.SocketEngine, 0, len(a.units))
	for _, u := range a.units {
		units = append(units, u)
	}
	a.mu.Unlock()
	sort.Slice(units, func(i, j int) bool { return units[i].Key() < units[j].Key() })
	return NoEngineHint(a.opts.Families, units, a.act != nil)
}

func uniq(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
