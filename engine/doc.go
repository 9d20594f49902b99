// Package engine is the contract between agentd and the container engines it
// knows: what an engine family package provides (Family: process names,
// probe, watcher adapter, socket-unit names) and what a watcher's Adapter and
// Stream promise, with the helpers the families share (image references,
// timestamps, bounded inspection), and the request budget of each engine
// endpoint (Budget, Budgets): a token bucket every connection to the endpoint
// draws on, through an HTTP transport (Transport) or gRPC interceptors
// (GRPCOptions), so that the probes, the watcher and the stats fallback of one
// endpoint together keep to engines.request_budget.
//
// Each family lives in a package of its own below this one (docker, podman,
// containerd, cri) and owns everything agentd knows about that engine: how
// its process is recognised, how its socket is probed, listing, events, its
// stats fallback and its quirks. No package outside engine/ imports an
// engine's API. The list of families is assembled explicitly (see
// agent.Families); a new engine is a new package here and one entry there.
//
// This package does not find processes (discovery does), keep watchers
// (watch does) or talk to systemd (activation does).
package engine
