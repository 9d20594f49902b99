package activation

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// SocketSuffix names the engine type of socket units that listen on paths
// ending in Suffix, beyond the families' own Sockets. A path matches when it
// ends with "/"+Suffix (or equals Suffix), so "podman.sock" matches
// /run/podman/podman.sock as well as the rootless
// /run/user/1000/podman/podman.sock.
type SocketSuffix struct {
	// Suffix is the final part of the path, e.g. "engine.sock" or
	// "custom/engine.sock".
	Suffix string
	// Type is the engine type reported for a matching socket; the family
	// that watches it (Config.Families.ForType) confirms the activation.
	Type model.EngineType
}

// Config configures a Manager. The zero value is not usable: start from
// DefaultConfig and set Families. Config is built by the program (agentd
// maps its configuration file onto it): its fields have no file keys, and
// Validate names them as Go fields.
type Config struct {
	// Families are the engine families: a socket unit holds an engine when
	// one of its Listen paths ends in one of a family's Sockets (or in an
	// ExtraSockets suffix), and an activation is confirmed by the family's
	// Probe. Required.
	Families engine.Families
	// ExtraSockets are socket suffixes with their engine type, looked at
	// before the families' own Sockets (first match wins).
	ExtraSockets []SocketSuffix
	// ExcludeUnits lists socket unit name patterns (path.Match syntax, e.g.
	// "docker.socket" or "podman*.socket") that are reported but never
	// activated.
	ExcludeUnits []string
	// Watched, when set, says whether an engine socket is watched at all:
	// endpoint is the path the host reaches it by (/proc/PID/root/... for
	// a nested systemd), listen the path its socket unit listens on. A
	// socket it refuses is left out as if it were no engine socket: never
	// reported, activated nor connected to. Nil watches every socket.
	Watched func(endpoint, listen string) bool
	// Activate makes the Manager activate every engine it finds listening
	// (not masked, not excluded) and confirm every engine socket with the
	// family's probe. Without it socket units are only reported and the
	// Manager never connects to an engine.
	Activate bool
	// RetryInterval is the wait before a failed activation of a socket unit
	// is tried again; it doubles with each further failure, up to 8 times
	// RetryInterval. A socket unit is activated once per period in which its
	// socket listens: only a failure is retried.
	RetryInterval time.Duration
	// StartTimeout bounds the start of the service behind a socket unit:
	// the StartUnit job's result and the wait for its ActiveState "active".
	// Engines are slow to start on a loaded host (dockerd takes 15 s on a
	// small VM); the default is systemd's own start timeout.
	StartTimeout time.Duration
	// AnswerTimeout bounds the wait, once the service is active, for the
	// engine to answer its family's probe on the socket (repeated until it
	// does).
	AnswerTimeout time.Duration
	// ProcRoot is the procfs mount through which nested systemd instances and
	// their root filesystems are reached (default /proc).
	ProcRoot string
	// Host makes the Manager follow the host's systemd.
	Host bool
	// HostBusAddresses are the D-Bus addresses tried in order for the host's
	// systemd. An address whose path ends in /systemd/private is a direct
	// peer-to-peer connection to systemd (no bus daemon, no Hello).
	HostBusAddresses []string
	// SystemdPIDs are host PIDs of systemd instances running as PID 1 of a
	// container, followed in addition to the ones found by FindNested.
	SystemdPIDs []int
	// FindNested makes the Manager look under ProcRoot, at start and every
	// NestedScanInterval, for nested systemd instances (see
	// FindNestedSystemd) and for user instances ("systemd --user", see
	// FindUserSystemd: rootless podman's podman.socket lives there), which
	// it reaches over their own buses as their owner.
	FindNested bool
	// NestedScanInterval is how often ProcRoot is scanned for new nested
	// systemd instances; 0 scans only at start.
	NestedScanInterval time.Duration
	// CallTimeout bounds each D-Bus call and each connection attempt.
	CallTimeout time.Duration
	// MaxBackoff caps the wait between reconnection attempts to a systemd.
	MaxBackoff time.Duration
}

// maxRetryFactor caps the growth of the wait between failed activations of
// one socket unit: at most this many times Config.RetryInterval.
const maxRetryFactor = 8

// DefaultHostBusAddresses are the host's system bus and systemd's private
// socket, tried in that order.
var DefaultHostBusAddresses = []string{
	"unix:path=/run/dbus/system_bus_socket",
	"unix:path=/run/systemd/private",
}

// DefaultConfig returns the defaults, without Families: activation on, a
// failed activation retried after 30 s (then 60 s, ...), 90 s for a
// service to start and 30 s more for its engine to answer, the host's
// systemd followed, and nested systemd instances looked for every 30 s under
// /proc.
func DefaultConfig() Config {
	return Config{
		Activate:           true,
		RetryInterval:      30 * time.Second,
		StartTimeout:       90 * time.Second,
		AnswerTimeout:      30 * time.Second,
		ProcRoot:           "/proc",
		Host:               true,
		HostBusAddresses:   append([]string(nil), DefaultHostBusAddresses...),
		FindNested:         true,
		NestedScanInterval: 30 * time.Second,
		CallTimeout:        10 * time.Second,
		MaxBackoff:         time.Minute,
	}
}

// Validate reports every invalid setting, each naming its Config field and
// value.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("activation.Config.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Families) == 0 {
		bad("Families", "empty, no engine socket would ever match")
	}
	for i, f := range c.Families {
		if f.Probe == nil && len(f.Sockets) > 0 {
			bad(fmt.Sprintf("Families[%d]", i), "family %q has Sockets but no Probe to confirm an activation", f.Name)
		}
	}
	for i, s := range c.ExtraSockets {
		if strings.Trim(s.Suffix, "/") == "" {
			bad(fmt.Sprintf("ExtraSockets[%d].Suffix", i), "%q is empty", s.Suffix)
		}
		if f, ok := c.Families.ForType(s.Type); !ok || f.Probe == nil {
			bad(fmt.Sprintf("ExtraSockets[%d].Type", i), "no engine family watches type %q (suffix %q)", s.Type, s.Suffix)
		}
	}
	for i, p := range c.ExcludeUnits {
		if _, err := path.Match(p, "x.socket"); err != nil {
			bad(fmt.Sprintf("ExcludeUnits[%d]", i), "pattern %q: %v", p, err)
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
		min   time.Duration
	}{
		{"RetryInterval", c.RetryInterval, time.Millisecond},
		{"StartTimeout", c.StartTimeout, time.Millisecond},
		{"AnswerTimeout", c.AnswerTimeout, time.Millisecond},
		{"NestedScanInterval", c.NestedScanInterval, 0},
		{"CallTimeout", c.CallTimeout, time.Millisecond},
		{"MaxBackoff", c.MaxBackoff, time.Millisecond},
	} {
		if d.v < d.min {
			bad(d.field, "%v is below %v", d.v, d.min)
		}
	}
	if c.ProcRoot == "" || !strings.HasPrefix(c.ProcRoot, "/") {
		bad("ProcRoot", "%q is not an absolute path", c.ProcRoot)
	}
	if c.Host && len(c.HostBusAddresses) == 0 {
		bad("HostBusAddresses", "empty while Host is set")
	}
	for i, a := range c.HostBusAddresses {
		if !strings.HasPrefix(a, "unix:") {
			bad(fmt.Sprintf("HostBusAddresses[%d]", i), "%q is not a unix: address", a)
		}
	}
	for i, pid := range c.SystemdPIDs {
		if pid <= 1 {
			bad(fmt.Sprintf("SystemdPIDs[%d]", i), "%d is not the host PID of a nested systemd", pid)
		}
	}
	return errors.Join(errs...)
}

// socketFamily returns the engine type and family of a socket unit's listen
// path p: the first ExtraSockets entry that matches, else the first family
// whose Sockets match (engine.Families.ForSocket), which reports the
// family's first type (its probe names the exact type of what answers).
func (c Config) socketFamily(p string) (model.EngineType, engine.Family, bool) {
	for _, s := range c.ExtraSockets {
		suf := strings.Trim(s.Suffix, "/")
		if suf != "" && (p == suf || strings.HasSuffix(p, "/"+suf)) {
			if f, ok := c.Families.ForType(s.Type); ok {
				return s.Type, f, true
			}
		}
	}
	if f, ok := c.Families.ForSocket(p); ok && len(f.Types) > 0 {
		return f.Types[0], f, true
	}
	return "", engine.Family{}, false
}

// excluded reports whether the config excludes unit from activation.
func (c Config) excluded(unit string) bool {
	for _, p := range c.ExcludeUnits {
		if ok, _ := path.Match(p, unit); ok {
			return true
		}
	}
	return false
}
