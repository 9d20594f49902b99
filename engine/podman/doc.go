// Package podman is agentd's knowledge of podman's API service ("podman
// system service", long-running or socket-activated, root or rootless): its
// processes, the libpod probe, the watcher's Adapter over the libpod REST API
// and the stats fallback through the Docker-compatible stats endpoint. An
// open event stream keeps a socket-activated podman from exiting on idle; a
// reconnect through its socket activates it again.
package podman
