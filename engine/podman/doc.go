// Package podman is agentd's knowledge of podman, with a service or without.
//
// Its API service ("podman system service", long-running or
// socket-activated, root or rootless): its processes, the libpod probe, the
// watcher's Adapter over the libpod REST API and the stats fallback through
// the Docker-compatible stats endpoint. An open event stream keeps a
// socket-activated podman from exiting on idle; a reconnect through its
// socket activates it again.
//
// Daemonless podman (DaemonlessFamily): containers `podman run -d` started
// with no service, found through their conmon processes and read from
// podman's storage, the runtime's PID files and conmon's exit files, with
// inotify telling of changes; it never starts a podman process.
//
// ServiceStorage tells which storage the service behind a socket unit
// would use, so that a storage and the unit that would start its service
// are shown as one podman without connecting to the socket.
package podman
