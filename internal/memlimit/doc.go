// Package memlimit keeps the Go runtime's soft memory limit
// (runtime/debug.SetMemoryLimit) for agentd: at the configured limit while
// the live heap leaves room under it, and above it, in step with the live
// heap, when it does not, so that a host with more containers than the limit
// was sized for costs more memory, not a garbage collector that runs back to
// back. It does not size the limit and does not read cgroups or /proc.
package memlimit
