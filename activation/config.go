package activation

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/agentd-dev/agentd/model"
)

// SocketSuffix maps the end of a listening socket path to the engine family
// that listens there. A path matches when it ends with "/"+Suffix (or equals
// Suffix), so "podman.sock" matches /run/podman/podman.sock as well as the
// rootless /run/user/1000/podman/podman.sock.
type SocketSuffix struct {
	// Suffix is the final part of the path, e.g. "podman.sock" or
	// "podman/podman.sock".
	Suffix string `yaml:"suffix"`
	// Type is the engine family reported for a matching socket.
	Type model.EngineType `yaml:"type"`
}

// Config configures a Manager. The zero value is not usable: start from
// DefaultConfig.
type Config struct {
	// Sockets lists the engine socket suffixes, first match wins.
	Sockets []SocketSuffix `yaml:"sockets"`
	// ExcludeUnits lists socket unit name patterns (path.Match syntax, e.g.
	// "docker.socket" or "podman*.socket") that are reported but never
	// activated.
	ExcludeUnits []string `yaml:"exclude_units"`
	// Activate makes the Manager activate every engine it finds listening
	// (not masked, not excluded). Without it engines are only reported.
	Activate bool `yaml:"activate"`
	// ActivationInterval is the least time between two activations of one
	// socket unit; a request within it is dropped with one log line.
	ActivationInterval time.Duration `yaml:"activation_interval"`
	// ActivationTimeout bounds one activation: the connect or StartUnit job,
	// the wait for ActiveState=active and the /_ping.
	ActivationTimeout time.Duration `yaml:"activation_timeout"`
	// ProcRoot is the procfs mount through which nested systemd instances and
	// their root filesystems are reached (default /proc).
	ProcRoot string `yaml:"proc_root"`
	// Host makes the Manager follow the host's systemd.
	Host bool `yaml:"host"`
	// HostBusAddresses are the D-Bus addresses tried in order for the host's
	// systemd. An address whose path ends in /systemd/private is a direct
	// peer-to-peer connection to systemd (no bus daemon, no Hello).
	HostBusAddresses []string `yaml:"host_bus_addresses"`
	// SystemdPIDs are host PIDs of systemd instances running as PID 1 of a
	// container, followed in addition to the ones found by FindNested.
	SystemdPIDs []int `yaml:"systemd_pids"`
	// FindNested makes the Manager look for nested systemd instances under
	// ProcRoot (see FindNestedSystemd) at start and every NestedScanInterval.
	FindNested bool `yaml:"find_nested"`
	// NestedScanInterval is how often ProcRoot is scanned for new nested
	// systemd instances; 0 scans only at start.
	NestedScanInterval time.Duration `yaml:"nested_scan_interval"`
	// CallTimeout bounds each D-Bus call and each connection attempt.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// MaxBackoff caps the wait between reconnection attempts to a systemd.
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// DefaultHostBusAddresses are the host's system bus and systemd's private
// socket, tried in that order.
var DefaultHostBusAddresses = []string{
	"unix:path=/run/dbus/system_bus_socket",
	"unix:path=/run/systemd/private",
}

// DefaultConfig returns the defaults: podman.sock is podman and docker.sock is
// Docker, activation on and at most once per 30 s per unit, the host's systemd
// followed, and nested systemd instances looked for every 30 s under /proc.
func DefaultConfig() Config {
	return Config{
		Sockets: []SocketSuffix{
			{Suffix: "podman.sock", Type: model.Podman},
			{Suffix: "docker.sock", Type: model.Docker},
		},
		Activate:           true,
		ActivationInterval: 30 * time.Second,
		ActivationTimeout:  30 * time.Second,
		ProcRoot:           "/proc",
		Host:               true,
		HostBusAddresses:   append([]string(nil), DefaultHostBusAddresses...),
		FindNested:         true,
		NestedScanInterval: 30 * time.Second,
		CallTimeout:        10 * time.Second,
		MaxBackoff:         time.Minute,
	}
}

// Validate reports every invalid setting, each naming its key and value.
func (c Config) Validate() error {
	var errs []error
	if len(c.Sockets) == 0 {
		errs = append(errs, errors.New("activation.sockets: empty, no engine socket would ever match"))
	}
	for i, s := range c.Sockets {
		if strings.Trim(s.Suffix, "/") == "" {
			errs = append(errs, fmt.Errorf("activation.sockets[%d].suffix: %q is empty", i, s.Suffix))
		}
		if s.Type == "" {
			errs = append(errs, fmt.Errorf("activation.sockets[%d].type: empty for suffix %q", i, s.Suffix))
		}
	}
	for i, p := range c.ExcludeUnits {
		if _, err := path.Match(p, "x.socket"); err != nil {
			errs = append(errs, fmt.Errorf("activation.exclude_units[%d]: pattern %q: %w", i, p, err))
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
		min time.Duration
	}{
		{"activation_interval", c.ActivationInterval, 0},
		{"activation_timeout", c.ActivationTimeout, time.Millisecond},
		{"nested_scan_interval", c.NestedScanInterval, 0},
		{"call_timeout", c.CallTimeout, time.Millisecond},
		{"max_backoff", c.MaxBackoff, time.Millisecond},
	} {
		if d.v < d.min {
			errs = append(errs, fmt.Errorf("activation.%s: %v is below %v", d.key, d.v, d.min))
		}
	}
	if c.ProcRoot == "" || !strings.HasPrefix(c.ProcRoot, "/") {
		errs = append(errs, fmt.Errorf("activation.proc_root: %q is not an absolute path", c.ProcRoot))
	}
	if c.Host && len(c.HostBusAddresses) == 0 {
		errs = append(errs, errors.New("activation.host_bus_addresses: empty while host is on"))
	}
	for i, a := range c.HostBusAddresses {
		if !strings.HasPrefix(a, "unix:") {
			errs = append(errs, fmt.Errorf("activation.host_bus_addresses[%d]: %q is not a unix: address", i, a))
		}
	}
	for i, pid := range c.SystemdPIDs {
		if pid <= 1 {
			errs = append(errs, fmt.Errorf("activation.systemd_pids[%d]: %d is not the host PID of a nested systemd", i, pid))
		}
	}
	return errors.Join(errs...)
}

// engineType returns the engine family whose suffix matches the socket path p.
func (c Config) engineType(p string) (model.EngineType, bool) {
	for _, s := range c.Sockets {
		suf := strings.Trim(s.Suffix, "/")
		if p == suf || strings.HasSuffix(p, "/"+suf) {
			return s.Type, true
		}
	}
	return "", false
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
