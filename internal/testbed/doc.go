// Package testbed lets integration tests find the real parts that testbed/up.sh
// provisions: host dockerd and containerd (with its CRI plugin), the "systemd
// host" container that boots systemd as PID 1 with podman and Docker behind
// socket units, and a locally built OpenTelemetry Collector.
//
// It owns locating those parts and deciding what a missing part means: under
// CI=true a test that needs a missing part fails with a message naming the part
// and how to provision it; elsewhere it skips with the same message. It does not
// provision anything itself; `make testbed` does.
package testbed
