package model

import (
	"time"
)

// EngineType names a family of container engines.
type EngineType string

// The engine families agentd knows. CRI is any CRI runtime service (containerd's
// CRI plugin, CRI-O); CRIO is used when the runtime identifies itself as CRI-O.
const (
	Docker     EngineType = "docker"
	Containerd EngineType = "containerd"
	CRI        EngineType = "cri"
	CRIO       EngineType = "cri-o"
	Podman     EngineType = "podman"
)

// Engine is one container engine endpoint that agentd found and talks to.
type Engine struct {
	// ID identifies the engine across rescans: the engine's own ID where it has
	// one (Docker's daemon ID), else type plus endpoint.
	ID string `json:"id"`
	// Type is the engine family.
	Type EngineType `json:"type"`
	// Version is what the engine says its version is.
	Version string `json:"version,omitempty"`
	// APIVersion is the negotiated API version, where the engine has one.
	APIVersion string `json:"api_version,omitempty"`
	// Endpoint is the unix socket path as reached from the host, e.g.
	// /proc/812/root/run/podman/podman.sock for a nested engine; for a
	// daemonless podman, its storage root as reached from the host.
	Endpoint string `json:"endpoint"`
	// Runtime is the runtime's own name where the engine's API reports one
	// and it differs from Type: a CRI runtime service names the runtime behind
	// it ("containerd" for containerd's CRI plugin, "cri-o").
	Runtime string `json:"runtime,omitempty"`
	// Storage is podman's storage root (graphroot) in the engine's own mount
	// namespace, "" when unknown and for other engines: a podman service and
	// a daemonless podman with the same Storage and Prefix are one podman,
	// whose containers are reported once (see Store).
	Storage string `json:"storage,omitempty"`
	// Daemonless is true for podman with no service: an engine read from
	// podman's storage and its conmon processes, whose Endpoint is the
	// storage root as reached from the host.
	Daemonless bool `json:"daemonless,omitempty"`
	// PID is the engine's process ID in the host PID namespace; 0 for an engine
	// known only by its socket unit (not running). A daemonless podman's is
	// one of its conmon processes.
	PID int `json:"pid,omitempty"`
	// Prefix is the hierarchy path: the names of the containers that enclose the
	// engine from the host down, joined with "/"; "" on the host.
	Prefix string `json:"prefix"`
	// ParentContainerID is the ID of the container that holds the engine, "" on the host.
	ParentContainerID string `json:"parent_container_id,omitempty"`
	// ParentEngineID is the ID of the engine that manages that container, "" on the host.
	ParentEngineID string `json:"parent_engine_id,omitempty"`
	// Unit is the systemd socket unit that activates the engine, if any.
	Unit string `json:"unit,omitempty"`
	// Connected is true while the engine's watcher has a session established
	// (subscribed and listed), false before its first list and while it
	// reconnects. Only Store.SetConnected changes it in the Store.
	Connected bool `json:"connected"`
}

// RuntimeName is the value of the container.runtime.name semantic-convention
// attribute for the engine's containers: the runtime's own name when the
// engine reports one (a CRI service is no runtime), else the engine type.
func (e *Engine) RuntimeName() string {
	if e.Runtime != "" {
		return e.Runtime
	}
	return string(e.Type)
}

// Identity is how the engine is named on the OTLP resources of its
// containers (agentd.engine.id, agentd.engine.endpoint; its own resource
// has the ID too) and whether its containers' resources carry its version.
type Identity struct {
	ID, Endpoint string
	// ContainerVersion is whether the containers' resources carry
	// container.runtime.version.
	ContainerVersion bool
}

// Identity returns e's identity on the resources: its ID and endpoint, and
// its version on its containers' resources; but a podman whose storage is
// known is named by its storage (and its Prefix, which places that storage
// in a container), because a podman service and a daemonless view of the
// same storage are one podman (see Store): its containers move from one
// view to the other as the service comes and goes (podman's service exits
// after 5 idle seconds) and must stay one resource each at the backend
// whichever view reports them. The daemonless view cannot tell podman's
// version, so neither view puts it on the containers' resources (the
// engine's own resource carries it when known).
func (e *Engine) Identity() Identity {
	if e.Type != Podman || e.Storage == "" {
		return Identity{ID: e.ID, Endpoint: e.Endpoint, ContainerVersion: true}
	}
	id := string(Podman) + ":" + e.Storage
	if e.Prefix != "" {
		id = string(Podman) + ":" + e.Prefix + ":" + e.Storage
	}
	return Identity{ID: id, Endpoint: e.Storage}
}

// ContainerState is the lifecycle state of a container, normalised across engines.
type ContainerState string

// The container states.
const (
	StateCreated ContainerState = "created"
	StateRunning ContainerState = "running"
	StatePaused  ContainerState = "paused"
	StateExited  ContainerState = "exited"
	StateUnknown ContainerState = "unknown"
)

// Health check statuses, as Docker and podman report them.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Running reports whether a container in state s has processes: running or
// paused.
func (s ContainerState) Running() bool { return s == StateRunning || s == StatePaused }

// Container is one container as its engine reports it.
type Container struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	EngineID  string            `json:"engine_id"`
	Namespace string            `json:"namespace,omitempty"` // containerd namespace
	ImageName string            `json:"image_name,omitempty"`
	ImageTags []string          `json:"image_tags,omitempty"`
	ImageID   string            `json:"image_id,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	State     ContainerState    `json:"state"`
	// PID is the container's init process in the host PID namespace, 0 when not running.
	PID          int       `json:"pid,omitempty"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	StartedAt    time.Time `json:"started_at,omitzero"`
	FinishedAt   time.Time `json:"finished_at,omitzero"`
	ExitCode     int       `json:"exit_code"`
	OOMKilled    bool      `json:"oom_killed,omitempty"`
	RestartCount int       `json:"restart_count,omitempty"`
	// Health is the status of the container's health check (HealthStarting,
	// HealthHealthy, HealthUnhealthy), "" when it has none or the engine
	// does not report it.
	Health string `json:"health,omitempty"`
	// CgroupPath is the container's cgroup relative to the cgroup mount, where known.
	CgroupPath string `json:"cgroup_path,omitempty"`
}

// EventType names a lifecycle event. The full table with severities lives in telemetry.
type EventType string

// Lifecycle events, normalised across engines.
const (
	EventCreate      EventType = "container.create"
	EventStart       EventType = "container.start"
	EventPause       EventType = "container.pause"
	EventUnpause     EventType = "container.unpause"
	EventStop        EventType = "container.stop"
	EventDie         EventType = "container.die"
	EventOOM         EventType = "container.oom"
	EventDestroy     EventType = "container.destroy"
	EventHealth      EventType = "container.health_status" // the health check's status changed (Container.Health)
	EventEngineFound EventType = "agentd.engine.found"
	EventEngineLost  EventType = "agentd.engine.lost"
)

// Event is one lifecycle event of a container or an engine.
type Event struct {
	Type     EventType `json:"type"`
	Time     time.Time `json:"time"`
	EngineID string    `json:"engine_id"`
	// Container is the container as known after the event (nil for engine events).
	Container *Container `json:"container,omitempty"`
	// Engine is set for engine events.
	Engine   *Engine `json:"engine,omitempty"`
	ExitCode int     `json:"exit_code,omitempty"`
	// ExitUnknown marks a die whose exit code nobody told: the container
	// stopped (and was removed, or ran again) while its engine was not
	// watched, and the engine no longer knows how its run ended; and a
	// stop told before its die. ExitCode is 0 then and means nothing.
	ExitUnknown bool   `json:"exit_unknown,omitempty"`
	Signal      string `json:"signal,omitempty"`
	// Resync marks an event synthesised from a list after a reconnect.
	Resync bool `json:"resync,omitempty"`
}
