// Package watch keeps the workload model (model.Store) in step with the
// container engines: one Watcher per engine, run by a Supervisor.
//
// A Watcher is engine-independent. It talks to its engine through an
// engine.Adapter that the engine's family builds (package engine and its
// docker, podman, containerd and cri packages): it subscribes to the engine's events first,
// then lists the containers and reconciles the model with the list, so that no
// change between the list and the events is lost; then it applies the events
// in short batches, in order, inspecting each container concerned once per
// batch where the events alone are not enough (a burst of one container's
// events costs one request of the engine's budget), and emits normalised
// lifecycle events (model.Event). When the engine goes away it
// reconnects with capped exponential backoff and resyncs by listing again,
// emitting exactly the transitions it missed.
//
// The package owns the watchers, their reconnect/resync logic and the translation of container PIDs reported by a nested
// engine into the host PID namespace (hostpid.go). It does not discover engines
// (discovery does), activate sockets through systemd (activation does; a
// socket-activated engine is simply reconnected to, which makes systemd start
// it again), read cgroup statistics or export anything (telemetry does).
package watch
