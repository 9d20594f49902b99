// Package activation finds container engines that systemd holds behind socket
// units, activates them, and follows their units through systemd's D-Bus
// signals.
//
// It owns the D-Bus side of socket activation: connecting to the host's
// systemd (system bus, or systemd's private socket when no bus daemon runs)
// and to every systemd that runs as PID 1 of a container (reached from the
// host through /proc/PID/root), listing socket units and unit files, reading
// each socket's Listen property, matching the listening paths against the
// engine families' socket names (engine.Family.Sockets: docker.sock,
// podman.sock, crio.sock; plus Config.ExtraSockets, each with its type),
// activating a unit once per period in which its socket listens (StartUnit of
// the triggered service, its job's result, its ActiveState) and following
// UnitNew, UnitRemoved, JobRemoved, Reloading, UnitFilesChanged and
// PropertiesChanged signals so that a socket started, stopped or removed
// later is reported within a second or two. It never polls systemd for unit
// state.
//
// It knows no engine API: whether the engine answers on the socket is asked
// of the family's Probe (Config.Families, supplied by the program), and the
// engines that answered are reported with the unit (SocketEngine.Engines).
// The caller hands those to its model as they are: it does not probe the
// Endpoint again, and the watchers keep the engine's event stream open
// (their reconnect is what starts an engine that idled out). A connect to the
// Endpoint of a socket-activated engine starts the engine: callers must not
// connect to an engine reported Masked or Excluded (see
// SocketEngine.MayConnect).
package activation
