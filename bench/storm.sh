#!/usr/bin/env bash
# The storm of issue #19: RATE container starts a second for SECONDS, each
# container SIGKILLed a second after its start and removed once it exited, on
# the host Docker and then on the host containerd (namespace agentd-bench, the
# busybox image imported into it once). Per engine, first a run without agentd
# (the baseline), then one with agentd exporting to a sink collector, set up as
# bench/latency.sh does. bench/latency measures each run: the achieved rate; the
# CPU-seconds of dockerd and containerd (their own and their reaped children's)
# and of the shims and runc (through the process that reaps the shims: PID 1 on
# the project's machine, as containerd is no subreaper) from the first start to
# 3 s after the last container was removed; agentd's own CPU-seconds over the
# same window; and with agentd, the events expected, arrived at the sink and
# missing, and the latency from the engine's event time to the record's arrival.
# Targets: agentd adds under 5 % to the engines' CPU, loses no event, p99 < 1 s.
#
#   bench/storm.sh [RATE [SECONDS]]      (default 50 a second for 120 s)
#   STORM_ENGINES="containerd" bench/storm.sh   (only the engines named)
#
# The containers carry the label agentd.bench.storm=1 and are removed at the
# end, even on failure. Writes bench/out/storm.md.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

rate=${1:-50}
secs=${2:-120}
[[ $rate =~ ^[0-9]+$ ]] && ((rate > 0)) && [[ $secs =~ ^[0-9]+$ ]] && ((secs > 0)) || die "usage: bench/storm.sh [RATE [SECONDS]]"
STORM_LABEL=agentd.bench.storm=1
STORM_NS=agentd-bench
STORM_IMAGE=docker.io/$BUSYBOX_IMAGE
DOCKER_SOCK=/run/docker.sock
CONTAINERD_SOCK=/run/containerd/containerd.sock
run_dir=$BENCH_WORK/storm-$(date +%Y%m%d-%H%M%S)
mkdir -p "$run_dir"
AGENT_PID= SINK_PID=

# storm_ns_cleanup: kill and delete every task and container of the storm's
# containerd namespace (the image stays for the next run).
storm_ns_cleanup() {
	local id
	for id in $(ctr -n "$STORM_NS" tasks ls -q 2>/dev/null); do
		ctr -n "$STORM_NS" tasks delete -f "$id" >/dev/null 2>&1 || true
	done
	for id in $(ctr -n "$STORM_NS" containers ls -q 2>/dev/null); do
		ctr -n "$STORM_NS" containers delete "$id" >/dev/null 2>&1 || true
	done
}
cleanup() {
	stop_pid "$AGENT_PID"
	stop_pid "$SINK_PID"
	AGENT_PID= SINK_PID=
	bench_cleanup "$STORM_LABEL"
	storm_ns_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM

docker info >/dev/null 2>&1 || die "the host Docker does not answer (bash testbed/up.sh)"
ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 || die "the host containerd does not answer (bash testbed/up.sh)"
dockerd_pid=$(listener_pid "$DOCKER_SOCK")
containerd_pid=$(listener_pid "$CONTAINERD_SOCK")
[ -n "$dockerd_pid" ] && [ -n "$containerd_pid" ] || die "no dockerd on $DOCKER_SOCK or no containerd on $CONTAINERD_SOCK"
if ! ctr -n "$STORM_NS" images check "name==$STORM_IMAGE" 2>/dev/null | grep -q complete; then
	blog "importing $BUSYBOX_IMAGE into containerd namespace $STORM_NS"
	docker save "$BUSYBOX_IMAGE" | ctr --address "$CONTAINERD_SOCK" -n "$STORM_NS" images import - >/dev/null ||
		die "import of $BUSYBOX_IMAGE into containerd namespace $STORM_NS failed"
fi
bash "$repo/testbed/collector.sh"
blog "building agentd and bench/latency"
{ build_agentd "$BENCH_WORK/agentd" && build_latency "$BENCH_WORK/latency"; } || die "go build failed"

# storm ENGINE RUN [ARGS...]: one storm with bench/latency; its figures go to
# $run_dir/ENGINE-RUN.txt, its output to the terminal.
storm() {
	local engine=$1 run=$2
	shift 2
	blog "$engine, $run agentd: $rate starts a second for ${secs}s"
	"$BENCH_WORK/latency" -engine "$engine" -address "$CONTAINERD_SOCK" -namespace "$STORM_NS" \
		-rate "$rate" -duration "${secs}s" -count $((rate * secs)) -remove -label "$STORM_LABEL" \
		-cpu-pids "$dockerd_pid $containerd_pid" -results "$run_dir/$engine-$run.txt" "$@" >&2 ||
		die "bench/latency failed ($engine, $run agentd)"
}

# fig ENGINE RUN KEY: a figure of a run ("n/a" when it has none).
fig() { awk -v k="$3" '$1 == k { print $2; f = 1 } END { if (!f) print "n/a" }' "$run_dir/$1-$2.txt"; }

# diff_pct WITHOUT WITH: the difference in %, of WITH against WITHOUT.
diff_pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0) printf "%+.1f %%", (b - a) / a * 100; else print "n/a" }'; }

# per_container CPU N: CPU-seconds per container in ms.
per_container() { awk -v c="$1" -v n="$2" 'BEGIN { if (n + 0 > 0) printf "%.1f", c / n * 1000; else print "n/a" }'; }

# table ENGINE: the markdown table of both runs of ENGINE.
table() {
	local e=$1 w=without a=with
	echo "### $e"
	echo
	echo "| asked starts/s | achieved starts/s without / with | engine CPU-s without agentd | with agentd | difference | per container (ms) without / with | agentd CPU-s | events expected | arrived | missing | p50 | p95 | p99 | max |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	echo "| $rate | $(fig "$e" $w achieved_rate) / $(fig "$e" $a achieved_rate) | $(fig "$e" $w cpu_engines_s) | $(fig "$e" $a cpu_engines_s)" \
		"| $(diff_pct "$(fig "$e" $w cpu_engines_s)" "$(fig "$e" $a cpu_engines_s)")" \
		"| $(per_container "$(fig "$e" $w cpu_engines_s)" "$(fig "$e" $w containers)") / $(per_container "$(fig "$e" $a cpu_engines_s)" "$(fig "$e" $a containers)")" \
		"| $(fig "$e" $a cpu_agent_s) | $(fig "$e" $a expected) | $(fig "$e" $a arrived) | $(fig "$e" $a missing)" \
		"| $(fig "$e" $a p50) | $(fig "$e" $a p95) | $(fig "$e" $a p99) | $(fig "$e" $a max) |"
	echo
	echo "Engine CPU-s, without / with agentd: dockerd $(fig "$e" $w cpu_dockerd_s) / $(fig "$e" $a cpu_dockerd_s)," \
		"containerd $(fig "$e" $w cpu_containerd_s) / $(fig "$e" $a cpu_containerd_s)," \
		"shims and runc $(fig "$e" $w cpu_shims_s) / $(fig "$e" $a cpu_shims_s) (reaped by $(fig "$e" $a shim_reaper));" \
		"containers $(fig "$e" $w containers) / $(fig "$e" $a containers); window $(fig "$e" $w window_s) / $(fig "$e" $a window_s) s."
	echo
}

engines=${STORM_ENGINES:-docker containerd}
for engine in $engines; do
	storm "$engine" without -no-sink
	sink_start "$run_dir/$engine/sink" 10ms
	agentd_events_start "$run_dir/$engine"
	storm "$engine" with -logs "$run_dir/$engine/sink/logs.jsonl" -agent-pid "$AGENT_PID"
	stop_pid "$AGENT_PID"
	stop_pid "$SINK_PID"
	AGENT_PID= SINK_PID=
done

out=$(
	echo "# Storm: container starts and stops, engines' CPU with and without agentd"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $rate starts a second asked for ${secs}s per run, each container SIGKILLed a"
	echo "second after its start and removed once it exited; agentd defaults (events.flush_interval 100ms)."
	echo "Per engine the run without agentd came first, then the run with it. Engine CPU: dockerd and"
	echo "containerd (own and reaped children) and the shims with their runc (the CPU their reaper got"
	echo "when they exited), from the first start to 3 s after the last removal. Difference: of the"
	echo "engines' CPU-seconds, with against without; per container, when the runs started different numbers."
	echo "Latency: engine event time to the record in the sink's file (flushed and polled every 10 ms)."
	echo "The machine is shared and noisy: other tests' load lands in either run."
	[ -z "${LAT_AGENTD_YAML:-}" ] || printf 'agentd settings added to the defaults:\n\n```yaml\n%s\n```\n' "$LAT_AGENTD_YAML"
	for engine in $engines; do
		echo
		table "$engine"
	done
)
echo "$out"
echo "$out" >"$BENCH_OUT/storm.md"
blog "written $BENCH_OUT/storm.md"
