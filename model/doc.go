// Package model holds the workload model: the engines agentd found, their
// containers and the engine hierarchy, and the lifecycle events between them.
// It is the one source of truth that watchers write and exporters read.
//
// It owns the data types and their bookkeeping. It does not talk to engines
// (the watch package does), read /proc (discovery) or export (telemetry).
package model
