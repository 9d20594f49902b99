#!/usr/bin/env bash
# Event latency of agentd with its defaults: container start/die on the host
# Docker → container.start / container.die log record at an OpenTelemetry
# Collector. Starts a sink collector (file exporter flushed every 10 ms) and
# agentd exporting to it, then bench/latency starts COUNT containers at RATE a
# second, each killed (SIGKILL) a second after its start, so that starts and
# dies overlap (label agentd.bench.latency=1, removed at the end, even on
# failure), and prints p50/p95/p99 of the delay from Docker's event time to the
# record's arrival in the sink's file (polled every 10 ms). RATE 0 starts and
# kills them one after the other instead.
#
#   bench/latency.sh [COUNT [RATE]]      (default 600 at 20 a second)
#
# Writes bench/out/latency.md.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

count=${1:-600}
rate=${2:-20}
[[ $count =~ ^[0-9]+$ ]] && ((count > 0)) && [[ $rate =~ ^[0-9]+$ ]] || die "usage: bench/latency.sh [COUNT [RATE]]"
LAT_LABEL=agentd.bench.latency=1
run_dir=$BENCH_WORK/latency-$(date +%Y%m%d-%H%M%S)
mkdir -p "$run_dir"
AGENT_PID= SINK_PID=
cleanup() {
	stop_pid "$AGENT_PID"
	stop_pid "$SINK_PID"
	bench_cleanup "$LAT_LABEL"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

docker info >/dev/null 2>&1 || die "the host Docker does not answer (bash testbed/up.sh)"
bash "$repo/testbed/collector.sh"
blog "building agentd and bench/latency"
{ build_agentd "$BENCH_WORK/agentd" && build_latency "$BENCH_WORK/latency"; } || die "go build failed"

sink_start "$run_dir/sink" 10ms
agentd_events_start "$run_dir"

blog "starting and killing $count containers, $rate a second (0: one after the other)"
out=$("$BENCH_WORK/latency" -logs "$run_dir/sink/logs.jsonl" -count "$count" -rate "$rate" -label "$LAT_LABEL") ||
	{ echo "$out" >&2; die "bench/latency failed"; }
echo "$out"
{
	echo "# Event latency: Docker event → OTLP log record at the collector"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), agentd defaults (events.flush_interval 100ms), $count containers started"
	echo "on the host Docker at $rate a second (0: one after the other), each SIGKILLed a second after its"
	echo "start; delay from Docker's event timeNano to the"
	echo "record's appearance in the sink's file exporter output (flushed every 10 ms, polled every 10 ms)."
	echo
	echo "$out"
} >"$BENCH_OUT/latency.md"
blog "written $BENCH_OUT/latency.md"
