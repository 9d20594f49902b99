// Package docker is agentd's knowledge of Docker (dockerd): its processes,
// the Engine API probe, the watcher's Adapter (events since a timestamp, list
// and inspect, the cgroup path from the daemon's cgroup driver) and the stats
// fallback through the one-shot stats endpoint, whose document podman's
// compatible API answers too (DecodeStats). Docker's containers also appear
// in containerd's moby namespace; the model reports them once, under Docker.
package docker
