package activation

import (
	"path/filepath"
	"slices"
	"strconv"

	"github.com/agentd-dev/agentd/model"
)

// State is where a socket-activated engine stands, as systemd tells it.
type State string

// The states of a socket-activated engine.
const (
	// StateListening: the socket unit listens and its service has not run
	// since the socket started (a connect to the Endpoint starts it).
	StateListening State = "listening"
	// StateActive: the service behind the socket is active.
	StateActive State = "active"
	// StateInactive: the service exited (podman exits after a few idle
	// seconds) while its socket unit still listens. The engine is not lost: a
	// connect to the Endpoint starts it again.
	StateInactive State = "inactive"
	// StateRetired: the socket unit was stopped or removed, or its systemd is
	// gone. The engine is lost.
	StateRetired State = "retired"
)

// SocketEngine is one engine socket that a systemd socket unit listens on.
type SocketEngine struct {
	// Type is the engine type the socket's path stands for (the families'
	// Sockets, Config.ExtraSockets); the Engines that answered carry their
	// exact type.
	Type model.EngineType `json:"type"`
	// Unit is the socket unit, e.g. "podman.socket".
	Unit string `json:"unit"`
	// Service is the unit the socket triggers, e.g. "podman.service".
	Service string `json:"service,omitempty"`
	// ListenPath is the socket path inside the systemd's root filesystem,
	// e.g. /run/podman/podman.sock.
	ListenPath string `json:"listen_path"`
	// Endpoint is the socket path as reached from the host:
	// /proc/PID/root/run/podman/podman.sock for a nested systemd, ListenPath
	// for the host's.
	Endpoint string `json:"endpoint"`
	// SystemdPID is the host PID of the systemd that owns the unit, 0 for the
	// host's systemd.
	SystemdPID int `json:"systemd_pid"`
	// State is the engine's state.
	State State `json:"state"`
	// Masked is set when the socket unit or its service is masked: the
	// Manager never activates it.
	Masked bool `json:"masked,omitempty"`
	// Excluded is set when the config excludes the unit from activation.
	Excluded bool `json:"excluded,omitempty"`
	// Engines are the engines that answered the family's probe on Endpoint
	// when the Manager activated the unit (or confirmed its running
	// service). They are set once per period in which the socket listens
	// and kept while the service idles out and comes back; nil before, when
	// the Manager does not activate (Config.Activate off) and once retired.
	// A caller hands these to its model as they are: probing the Endpoint
	// again would be a second connect.
	Engines []model.Engine `json:"engines,omitempty"`
}

// Equal reports whether e and o are the same update.
func (e SocketEngine) Equal(o SocketEngine) bool {
	return e.Type == o.Type && e.Unit == o.Unit && e.Service == o.Service && e.ListenPath == o.ListenPath &&
		e.Endpoint == o.Endpoint && e.SystemdPID == o.SystemdPID && e.State == o.State &&
		e.Masked == o.Masked && e.Excluded == o.Excluded && slices.Equal(e.Engines, o.Engines)
}

// Key identifies the engine socket across updates: systemd PID, unit and
// listen path.
func (e SocketEngine) Key() string {
	return strconv.Itoa(e.SystemdPID) + "/" + e.Unit + "/" + e.ListenPath
}

// MayConnect reports whether a caller may connect to the Endpoint. A connect
// to a listening socket starts its service, so it is false for a masked or
// excluded unit whose service is not active, and for a retired engine.
func (e SocketEngine) MayConnect() bool {
	switch e.State {
	case StateActive:
		return true
	case StateListening, StateInactive:
		return !e.Masked && !e.Excluded
	}
	return false
}

// hostPath maps a path inside the root of the systemd with host PID pid to
// the path reachable from the host: /proc/PID/root/<p> under procRoot for a
// nested systemd, p itself for the host's (pid 0).
func hostPath(procRoot string, pid int, p string) string {
	if pid == 0 {
		return p
	}
	return filepath.Join(procRoot, strconv.Itoa(pid), "root", p)
}
