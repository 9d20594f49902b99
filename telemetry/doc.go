// Package telemetry turns the workload model and container stats into
// OpenTelemetry: OTLP/gRPC metrics (one resource per container and per
// engine) and lifecycle events as OTLP log records, or a human-readable
// console output when no endpoint is configured.
//
// It owns the one table of metrics (Metrics) and of events (Events), from
// which METRICS.md is generated (`go test ./telemetry -run TestMetricsDoc
// -update`); the resources and their semantic-convention attributes
// (semconv v1.43.0 as shipped in otel v1.47); the Pipeline that samples every
// export interval and forwards events; and the OTLP and console sinks. It does
// not read cgroups (package stats), track the workload (package model) or talk
// to engines. It consumes the model through the small Workload interface and
// an event channel, wired by the caller.
//
// Resource identity is kept stable on purpose: agentd.engine.pid is carried
// by engine resources only, and not for socket-activated engines (their PID
// changes at every activation), so a container's series never split when its
// engine restarts or idles out.
//
// # One resource per container, despite the SDK
//
// The OpenTelemetry SDK binds one resource to a MeterProvider and to a
// LoggerProvider. agentd needs one per container, so:
//
//   - Metrics bypass the MeterProvider: each round builds a
//     metricdata.ResourceMetrics per container and per engine itself (cached
//     resources, cumulative counters with the container's start time as a
//     stable StartTime) and hands them to one otlpmetricgrpc exporter. That
//     exporter sends exactly one request per ResourceMetrics: measured on the
//     testbed (2 shared cores, collector on loopback, TestExportCost500), 501
//     requests and 151 ms per round of 500 containers, and in a profile of
//     the agent at 500 containers half of its CPU. So OTLPMetrics keeps the
//     exporter for its connection (endpoint, TLS, headers, compression and
//     timeout of OTEL_EXPORTER_OTLP_*) and installs a gRPC interceptor on
//     that connection which takes the exporter's requests instead of sending
//     them. Each resource goes through the exporter's transform once, the
//     first round it appears in; the metrics are written as protobuf
//     records that later rounds update in place and hand to gRPC as they are
//     (wireRecords), and the round goes out 128 resources to a request over
//     the same connection with the same metadata, through the export queue
//     (below): 4 requests per round. The builder keeps no container's
//     metrics between rounds: it makes each container's ResourceMetrics into
//     one scratch as the sink encodes it (roundMetrics; BenchmarkBuildStream1000:
//     about 2 KB kept a container, 12 KB when each kept its own), and the whole export of such a round
//     to a local server takes about 1.5 ms and 850 allocations
//     (BenchmarkExport500; it was 11 ms when the round was converted into
//     messages and marshalled). Over OTLP/HTTP the same happens with an
//     http.RoundTripper (captureTransport) in place of the interceptor.
//   - Every OTLP setting (protocol, endpoints, TLS, headers, compression,
//     timeout, temporality) is resolved once, by ResolveOTLP, with one
//     precedence (command line > file > per-signal variable > general
//     variable > default), and handed to the exporters as explicit
//     options. The delta temporality preference is DeltaSink, which turns
//     the builder's cumulative counters into deltas.
//   - Events keep the SDK's loggers: one LoggerProvider per resource
//     (cached, no goroutines, never shut down), all feeding ONE eventBatch
//     processor that flushes every flush interval. It batches records of
//     every resource together and otlploggrpc groups them by resource into a
//     single request, so events cost one request per flush. (It replaces the
//     SDK's BatchProcessor, which drops a batch whose export times out.)
//
// # Export that loses nothing it accepted
//
// NewOTLP's sinks do not send: both exporters' requests are taken by gRPC
// interceptors (over OTLP/HTTP by the exporters' http.RoundTrippers,
// captureTransport and logTransport), encoded, and put in one Queue bounded
// in bytes (export.queue_size, DefaultQueueSize 32 MiB) shared by metrics
// and events. One sender per signal sends them in order over the exporter's
// own connection, metadata and call options, waiting for the connection to
// be ready (over HTTP: to the exporter's URL with its headers), and retries
// a retryable failure (the OTLP retryable codes, and RESOURCE_EXHAUSTED with
// a RetryInfo; over HTTP 429, 502, 503, 504 and connection errors) for as
// long as it takes: backoff from 250 ms to 4 s with ±20 % jitter, or the
// delay the collector's RetryInfo (HTTP: Retry-After) asks for. The SDK
// exporters' own retries are off. gRPC's reconnect backoff is capped at 1 s,
// so the first request after a collector outage goes out within about a
// second of its return. What does not fit is refused, never what is queued;
// it is counted in agentd.export.dropped (signal, reason) and logged at most
// once a minute; agentd.export.queue.size reports the queued bytes, both on
// agentd's own resource (service.name agentd). With export.queue_dir each
// request is also a file (diskqueue.go: length and CRC-32C, written and
// renamed) until delivered, and a restarted agentd sends what the last one
// left; a file that does not read back is moved aside as .corrupt, logged
// and counted. At shutdown the senders drain until the shutdown timeout;
// without a disk queue what is left is dropped and counted.
//
// # Deviations from the semantic conventions
//
// The container metrics follow the conventions of SemconvVersion (v1.44):
// memory usage, RSS, working set and available are UpDownCounters,
// container.paging.faults carries system.paging.fault.type and
// container.disk.io system.device. container.cpu.usage is a double (CPUs in
// use). container.memory.limit and container.pids.count are not in the
// conventions and keep their names; throttling, pressure, OOM kills,
// restarts, state and health, event attributes and agentd.engine.* are
// agentd's own, under agentd. Container environment variables are never
// read.
//
// # Concurrency
//
// Pipeline.Run runs the metric rounds on the caller's goroutine and starts one
// goroutine for events, which it stops and waits for before returning. Sinks
// are called from both and are safe for concurrent use.
package telemetry
