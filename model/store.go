package model

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// ContainerKey identifies a container in the Store: the engine that manages it,
// its containerd namespace ("" for other engines) and the engine's ID for it.
type ContainerKey struct {
	EngineID  string
	Namespace string
	ID        string
}

// Key returns the Store key of c.
func (c *Container) Key() ContainerKey {
	return ContainerKey{EngineID: c.EngineID, Namespace: c.Namespace, ID: c.ID}
}

// Snapshot is a consistent, immutable view of the Store at one moment. The
// slices, and the Labels and ImageTags of the containers in them, are shared
// between callers: read them, never modify them.
type Snapshot struct {
	// Version increases with every change to the Store; equal versions mean equal snapshots.
	Version uint64
	// Engines sorted by ID.
	Engines []Engine
	// Containers visible to consumers (see Store for the deduplication rule),
	// sorted by engine ID, namespace and container ID.
	Containers []Container
}

// Engine returns the engine with id from the snapshot.
func (s *Snapshot) Engine(id string) (Engine, bool) {
	i, ok := slices.BinarySearchFunc(s.Engines, id, func(e Engine, id string) int { return cmp.Compare(e.ID, id) })
	if !ok {
		return Engine{}, false
	}
	return s.Engines[i], true
}

// Store is the workload model: the one source of truth for engines, their
// containers and the engine hierarchy (each Engine carries its Prefix and
// parent). Watchers write it; telemetry, the status endpoint and the CLI read
// Snapshots and subscribe to Events.
//
// The Store itself never loses an update: Upsert, Delete, PutEngine and
// DeleteEngine apply synchronously. Event subscribers are fed through bounded
// per-subscriber buffers (see Subscribe): a slow subscriber loses events, counted,
// and never stalls a watcher.
//
// # Deduplication
//
// Some containers are visible through two engines, and consumers must see them
// once. This is the only place that rule lives; it applies to Snapshot and to
// Emit:
//
//   - Docker runs its containers through containerd in the namespace "moby". A
//     containerd-engine container in namespace "moby" is hidden when a Docker
//     engine with the same Prefix (so on the same host, or in the same enclosing
//     container, hence on the same containerd) is in the Store, or knows or knew
//     until recently a container with the same ID (the last 4096 Docker IDs
//     deleted under that Prefix are remembered, so the containerd "delete" that
//     trails Docker's "destroy" stays hidden even after Docker is gone). The
//     engine test closes the race where containerd's watcher reports a create
//     before Docker's watcher has seen it.
//   - podman is seen through its service (`podman system service`, the
//     libpod API) and, daemonless, through its storage and conmon processes
//     (Engine.Daemonless): two engines with the same Storage and Prefix. While
//     the service's watcher is connected its view is reported and the
//     daemonless one is hidden; while it is not (the service exited, or was
//     never started again after an idle exit), the daemonless view is
//     reported and the service's stale one hidden. The service's resync
//     events after it reconnects are hidden too when a daemonless view of its
//     storage is connected: that view has already told them.
//   - CRI (kubelet's view) runs its containers in containerd's namespace
//     "k8s.io". A containerd-engine container in namespace "k8s.io" is hidden
//     when a CRI engine with the same Prefix is in the Store.
//
// Everything else is reported with its namespace. Hidden containers stay in the
// Store (their watcher needs them to reconcile) and are returned by
// EngineContainers and Container; only Snapshot and event fan-out leave them out.
//
// All methods are safe for concurrent use.
type Store struct {
	log *slog.Logger

	mu         sync.RWMutex
	engines    map[string]Engine
	containers map[ContainerKey]*Container
	byEngine   map[string]map[ContainerKey]struct{}
	// dockerIDs indexes the container IDs of Docker engines by engine Prefix.
	dockerIDs map[string]map[string]int
	// dockerGone remembers recently deleted Docker container IDs per Prefix.
	dockerGone map[string]*tombstones
	version    uint64
	snap       *Snapshot // cached, nil when stale

	subs    atomic.Pointer[[]*Subscription]
	subsMu  sync.Mutex // serialises changes to subs
	dropped atomic.Uint64
}

// Namespaces with a special meaning in containerd.
const (
	// NamespaceMoby is the containerd namespace dockerd uses by default.
	NamespaceMoby = "moby"
	// NamespaceK8s is the containerd namespace the CRI plugin uses.
	NamespaceK8s = "k8s.io"
)

const tombstoneCap = 4096

// NewStore returns an empty Store logging through log.
func NewStore(log *slog.Logger) *Store {
	s := &Store{
		log:        log,
		engines:    map[string]Engine{},
		containers: map[ContainerKey]*Container{},
		byEngine:   map[string]map[ContainerKey]struct{}{},
		dockerIDs:  map[string]map[string]int{},
		dockerGone: map[string]*tombstones{},
	}
	s.subs.Store(&[]*Subscription{})
	return s
}

// PutEngine adds or updates an engine. It reports whether the engine is new.
// It ignores e.Connected: an engine already in the Store keeps its state and a
// new one starts disconnected (see SetConnected).
func (s *Store) PutEngine(e Engine) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.engines[e.ID]
	e.Connected = ok && old.Connected
	if ok && old.Type == Docker {
		for k := range s.byEngine[e.ID] {
			s.unindexDocker(old.Prefix, k.ID, false)
		}
	}
	if e.Type == Docker {
		for k := range s.byEngine[e.ID] {
			s.indexDocker(e.Prefix, k.ID)
		}
	}
	s.engines[e.ID] = e
	s.changed()
	return !ok
}

// DeleteEngine removes an engine and prunes all its containers. It returns the
// engine and how many containers were pruned; ok is false when the engine was
// not in the Store.
func (s *Store) DeleteEngine(id string) (e Engine, pruned int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok = s.engines[id]
	if !ok {
		return Engine{}, 0, false
	}
	for k := range s.byEngine[id] {
		s.deleteLocked(k, false)
		pruned++
	}
	delete(s.byEngine, id)
	delete(s.engines, id)
	s.changed()
	return e, pruned, true
}

// SetConnected records whether the watcher of the engine with id has a session
// established; the watcher calls it when a session is listed and when it
// ends, so that Snapshots (and agentd.engine.up) follow the connection. It
// reports whether the engine is in the Store: an engine that is not (removed
// before its watcher stopped) is not added back.
func (s *Store) SetConnected(id string, connected bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.engines[id]
	if ok && e.Connected != connected {
		e.Connected = connected
		s.engines[id] = e
		s.changed()
	}
	return ok
}

// Engine returns the engine with id.
func (s *Store) Engine(id string) (Engine, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.engines[id]
	return e, ok
}

// Upsert adds or replaces a container. The Store keeps its own copy of c
// (Labels and ImageTags included), so the caller may reuse c afterwards. A
// container whose engine is not in the Store is still stored; DeleteEngine of
// that ID prunes it.
//
// OOMKilled is sticky within one run of a container: an Upsert of the same
// run (same StartedAt) without the flag keeps a stored one, so that a
// watcher's update built from an inspection made before MarkOOMKilled cannot
// undo it. Upsert returns the container as stored.
func (s *Store) Upsert(c Container) Container {
	c.Labels = maps.Clone(c.Labels)
	c.ImageTags = slices.Clone(c.ImageTags)
	k := c.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Labels == nil {
		c.Labels = s.knownLabelsLocked(k)
	}
	switch prev, ok := s.containers[k]; {
	case ok && prev.OOMKilled && !c.OOMKilled && prev.StartedAt.Equal(c.StartedAt):
		c.OOMKilled = true
	case !ok:
		if s.byEngine[k.EngineID] == nil {
			s.byEngine[k.EngineID] = map[ContainerKey]struct{}{}
		}
		s.byEngine[k.EngineID][k] = struct{}{}
		if e, ok := s.engines[k.EngineID]; ok && e.Type == Docker {
			s.indexDocker(e.Prefix, k.ID)
		}
	}
	s.containers[k] = &c
	s.changed()
	return c
}

// Delete removes a container and returns it; ok is false when it was not there.
func (s *Store) Delete(k ContainerKey) (c Container, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.containers[k]
	if !ok {
		return Container{}, false
	}
	s.deleteLocked(k, true)
	s.changed()
	return *p, true
}

// deleteLocked removes k; remember keeps a Docker ID as a tombstone for the
// deduplication rule.
func (s *Store) deleteLocked(k ContainerKey, remember bool) {
	delete(s.containers, k)
	if m := s.byEngine[k.EngineID]; m != nil {
		delete(m, k)
	}
	if e, ok := s.engines[k.EngineID]; ok && e.Type == Docker {
		s.unindexDocker(e.Prefix, k.ID, remember)
	}
}

func (s *Store) indexDocker(prefix, id string) {
	m := s.dockerIDs[prefix]
	if m == nil {
		m = map[string]int{}
		s.dockerIDs[prefix] = m
	}
	m[id]++
}

func (s *Store) unindexDocker(prefix, id string, remember bool) {
	m := s.dockerIDs[prefix]
	if m[id] <= 1 {
		delete(m, id)
	} else {
		m[id]--
	}
	if remember {
		t := s.dockerGone[prefix]
		if t == nil {
			t = &tombstones{set: map[string]struct{}{}}
			s.dockerGone[prefix] = t
		}
		t.add(id)
	}
}

// Container returns one container, hidden or not.
func (s *Store) Container(k ContainerKey) (Container, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.containers[k]
	if !ok {
		return Container{}, false
	}
	return *p, true
}

// Init names a running container by its init process: what the engine
// hierarchy needs of a container, without copying the container.
type Init struct {
	ContainerID, Name string
	// PID is the init process's host PID.
	PID int
}

// EngineInits appends to buf the Init of every running container of one
// engine that has an init PID (hidden ones included, in no particular order)
// and returns it, with how many containers the engine has in all.
func (s *Store) EngineInits(engineID string, buf []Init) ([]Init, int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := s.byEngine[engineID]
	for k := range keys {
		c := s.containers[k]
		if c.PID > 0 && c.State.Running() {
			buf = append(buf, Init{ContainerID: c.ID, Name: c.Name, PID: c.PID})
		}
	}
	return buf, len(keys)
}

// EngineContainers returns every container of one engine, hidden ones included,
// in no particular order. The Labels and ImageTags are shared: do not modify them.
func (s *Store) EngineContainers(engineID string) []Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Container, 0, len(s.byEngine[engineID]))
	for k := range s.byEngine[engineID] {
		out = append(out, *s.containers[k])
	}
	return out
}

// Visible reports whether consumers see c (see the deduplication rule on Store).
func (s *Store) Visible(c *Container) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.visibleLocked(c)
}

func (s *Store) visibleLocked(c *Container) bool {
	if c.Namespace != NamespaceMoby && c.Namespace != NamespaceK8s {
		return !s.podmanTwinLocked(c.EngineID)
	}
	e, ok := s.engines[c.EngineID]
	if !ok || e.Type != Containerd {
		return true
	}
	switch c.Namespace {
	case NamespaceMoby:
		if s.dockerIDs[e.Prefix][c.ID] > 0 {
			return false
		}
		// A Docker engine on the same containerd may not have listed this
		// container yet (its watcher starts after containerd's, or handles
		// the create later): the moby namespace is Docker's all the same.
		for _, o := range s.engines {
			if o.Type == Docker && o.Prefix == e.Prefix {
				return false
			}
		}
		if t := s.dockerGone[e.Prefix]; t != nil && t.has(c.ID) {
			return false
		}
		return true
	default: // NamespaceK8s
		for _, o := range s.engines {
			if (o.Type == CRI || o.Type == CRIO) && o.Prefix == e.Prefix {
				return false
			}
		}
		return true
	}
}

// knownLabelsLocked returns the labels known of container k of a
// daemonless podman, which cannot read them (they live in podman's
// database): those its copy already has, else those of its copy in a
// podman service of the same storage. A container's labels never change
// after its creation, so what the service once said stays true, and the
// container's resource keeps its allowlisted labels when the daemonless
// view takes over from an idle-exited service. nil for other engines.
func (s *Store) knownLabelsLocked(k ContainerKey) map[string]string {
	e, ok := s.engines[k.EngineID]
	if !ok || e.Type != Podman || !e.Daemonless || e.Storage == "" {
		return nil
	}
	if prev, ok := s.containers[k]; ok && prev.Labels != nil {
		return prev.Labels
	}
	for _, o := range s.engines {
		if o.Type != Podman || o.Daemonless || o.Storage != e.Storage || o.Prefix != e.Prefix {
			continue
		}
		if twin, ok := s.containers[ContainerKey{EngineID: o.ID, Namespace: k.Namespace, ID: k.ID}]; ok && twin.Labels != nil {
			return maps.Clone(twin.Labels)
		}
	}
	return nil
}

// podmanTwinLocked reports whether the containers of engine id are hidden
// because another view of the same podman reports them: id is a
// daemonless podman and a podman service of its storage (same Storage and
// Prefix) is connected, or id is that service, disconnected, and a
// daemonless podman of its storage is in the Store.
func (s *Store) podmanTwinLocked(id string) bool {
	e, ok := s.engines[id]
	if !ok || e.Type != Podman || e.Storage == "" || (!e.Daemonless && e.Connected) {
		return false
	}
	for _, o := range s.engines {
		if o.Type != Podman || o.Daemonless == e.Daemonless || o.Storage != e.Storage || o.Prefix != e.Prefix {
			continue
		}
		if e.Daemonless && o.Connected || !e.Daemonless {
			return true
		}
	}
	return false
}

func (s *Store) changed() {
	s.version++
	s.snap = nil
}

// Snapshot returns the current view for consumers. It is cheap when nothing
// changed since the last call (the same *Snapshot is returned) and otherwise
// copies the engines and the visible containers once. Do not modify it.
func (s *Store) Snapshot() *Snapshot {
	s.mu.RLock()
	if snap := s.snap; snap != nil {
		s.mu.RUnlock()
		return snap
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil {
		return s.snap
	}
	snap := &Snapshot{
		Version:    s.version,
		Engines:    make([]Engine, 0, len(s.engines)),
		Containers: make([]Container, 0, len(s.containers)),
	}
	for _, e := range s.engines {
		snap.Engines = append(snap.Engines, e)
	}
	slices.SortFunc(snap.Engines, func(a, b Engine) int { return cmp.Compare(a.ID, b.ID) })
	for _, c := range s.containers {
		if s.visibleLocked(c) {
			snap.Containers = append(snap.Containers, *c)
		}
	}
	slices.SortFunc(snap.Containers, func(a, b Container) int {
		return cmp.Or(cmp.Compare(a.EngineID, b.EngineID), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.ID, b.ID))
	})
	s.snap = snap
	return snap
}

// tombstones is a bounded FIFO set of IDs.
type tombstones struct {
	set  map[string]struct{}
	ring []string
	next int
}

func (t *tombstones) add(id string) {
	if _, ok := t.set[id]; ok {
		return
	}
	if len(t.ring) < tombstoneCap {
		t.ring = append(t.ring, id)
	} else {
		delete(t.set, t.ring[t.next])
		t.ring[t.next] = id
		t.next = (t.next + 1) % tombstoneCap
	}
	t.set[id] = struct{}{}
}

func (t *tombstones) has(id string) bool {
	_, ok := t.set[id]
	return ok
}
