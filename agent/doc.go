// Package agent is agentd's run loop: it wires discovery (process table),
// activation (systemd socket units over D-Bus), one watcher per engine, the
// workload model and the telemetry pipeline, and reports health and the engine
// tree to the status endpoint.
//
// It owns the wiring and the lifetime of every part: Run starts them, and
// returns only when all of them have stopped. It does not parse configuration
// files, build loggers or talk to systemd's notify socket; cmd/agentd does.
package agent
