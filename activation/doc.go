// Package activation finds container engines that systemd holds behind socket
// units, activates them, and follows their units through systemd's D-Bus
// signals.
//
// It owns the D-Bus side of socket activation: connecting to the host's
// systemd (system bus, or systemd's private socket when no bus daemon runs)
// and to every systemd that runs as PID 1 of a container (reached from the
// host through /proc/PID/root), listing socket units and unit files, reading
// each socket's Listen property, matching the listening paths against engine
// socket names (podman.sock, docker.sock), triggering activation (a connect,
// or StartUnit of the triggered service) and confirming it (ActiveState and an
// HTTP GET /_ping over the socket), and following UnitNew, UnitRemoved,
// JobRemoved, Reloading, UnitFilesChanged and PropertiesChanged signals so
// that a socket started, stopped or removed later is reported within a
// second or two. It never polls systemd for unit state.
//
// It does not talk to the engines beyond the activation ping: discovery
// probes the reported Endpoint to build the model.Engine (and computes the
// hierarchy prefix from the systemd's container), and the watchers keep the
// engine's event stream open. A connect to the Endpoint of a socket-activated
// engine starts the engine: callers must not connect to an engine reported
// Masked or Excluded (see SocketEngine.MayConnect).
package activation
