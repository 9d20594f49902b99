#!/usr/bin/env bash
# Side-by-side cost of agentd and its peer (the OpenTelemetry Collector contrib
# docker_stats receiver, built by bench/build-peer.sh) on the testbed.
#
#   bench/run.sh [N...]        (default: 10 100 500)
#
# For each N: N idle busybox containers run on the host Docker (label
# agentd.bench=1, removed at the end, even on failure), then agentd and the peer
# run one after the other with the same export interval, each exporting OTLP to
# one sink collector (the testbed collector, file exporter). Over a window after
# a warm-up it records the agent's CPU (utime+stime from /proc/PID/stat), the
# host dockerd's, containerd's and the bench containers' shims' CPU minus an idle
# baseline (windows with no agent, before and after), the agent's RSS (VmRSS at
# the end, VmHWM), and what the sink received per export round (bench/analyze).
# Writes bench/out/results.tsv, bench/out/results.md and bench/out/cost.png.
#
# Environment: BENCH_INTERVAL (10s), BENCH_DURATION (measured window, s, 60),
# BENCH_WARMUP (s before the window, 15), BENCH_BASELINE (idle window, s, 30),
# BENCH_SETTLE (s after starting containers, 45), BENCH_ACTIVATION (0: agentd
# does not activate agentd-th's socket units), BENCH_OUT (bench/out), BENCH_KEEP
# (1: leave the containers running for bench/profile.sh), BENCH_ENGINE (host: the
# testbed's dockerd on /run/docker.sock; private: a dockerd and containerd of the
# bench's own, whose CPU no other test disturbs; results then go to
# bench/out/private/).
here=$(cd "$(dirname "$0")" && pwd)
BENCH_ENGINE=${BENCH_ENGINE:-host}
case $BENCH_ENGINE in
host) ;;
private) BENCH_OUT=${BENCH_OUT:-$here/out/private} ;;
*) echo "bench/run.sh: BENCH_ENGINE must be host or private, got $BENCH_ENGINE" >&2; exit 2 ;;
esac
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

INTERVAL=${BENCH_INTERVAL:-10s}
DURATION=${BENCH_DURATION:-60}
WARMUP=${BENCH_WARMUP:-15}
BASELINE=${BENCH_BASELINE:-30}
SETTLE=${BENCH_SETTLE:-45}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 100 500)
for n in "${sizes[@]}"; do
	[[ $n =~ ^[0-9]+$ ]] && ((n > 0)) || die "usage: bench/run.sh [N...] (N > 0, got $n)"
done
interval_s=$(awk -v i="$INTERVAL" 'BEGIN { v = i + 0; if (i ~ /ms$/) v /= 1000; else if (i ~ /m$/) v *= 60; print v }')

run_dir=$BENCH_WORK/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$run_dir"
AGENT_PID= SINK_PID=
cleanup() {
	stop_pid "$AGENT_PID"
	stop_pid "$SINK_PID"
	if [ "$BENCH_ENGINE" = private ]; then
		private_engine_stop
	else
		bench_cleanup_unless_kept
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Inputs: the testbed's engines and sink collector, the peer, agentd, the analyzer, gnuplot.
docker info >/dev/null 2>&1 || die "the host Docker does not answer (bash testbed/up.sh)"
docker image inspect "$BUSYBOX_IMAGE" >/dev/null 2>&1 || die "$BUSYBOX_IMAGE is missing (bash testbed/up.sh)"
bash "$repo/testbed/collector.sh"
bash "$here/build-peer.sh"
blog "building agentd and the analyzer"
{ build_agentd "$BENCH_WORK/agentd" && (cd "$repo" && go build -o "$BENCH_WORK/analyze" ./bench/analyze); } || die "go build failed"
AGENTD_BIN=$BENCH_WORK/agentd
if ! command -v gnuplot >/dev/null; then
	blog "installing gnuplot-nox"
	{ apt-get install -y gnuplot-nox || { apt-get update && apt-get install -y gnuplot-nox; }; } >"$run_dir/apt.log" 2>&1 ||
		blog "gnuplot-nox did not install (see $run_dir/apt.log): no plot"
fi

if [ "$BENCH_ENGINE" = private ]; then
	private_engine_start
	engine_desc="a private dockerd and containerd of the bench's own (bridge none, so no network metrics; the host engines run as well and agentd watches them too)"
else
	dockerd_pid=$(listener_pid /run/docker.sock)
	containerd_pid=$(listener_pid /run/containerd/containerd.sock)
	[ -n "$dockerd_pid" ] && [ -n "$containerd_pid" ] || die "no dockerd on /run/docker.sock or containerd on /run/containerd/containerd.sock"
	BENCH_DOCKER_SOCK=/run/docker.sock
	engine_desc="the host Docker (shared with other engineers' tests)"
fi
blog "dockerd $dockerd_pid, containerd $containerd_pid; run files in $run_dir"

bench_cleanup
sink_start "$run_dir/sink"

tsv=$BENCH_OUT/results.tsv
printf 'n\tagent\tagent_cpm\tdockerd_cpm\tcontainerd_cpm\tshims_cpm\thost_cpm\trss_mb\thwm_mb\tbytes_round\tgzip_bytes_round\tpoints_round\tresources_round\trounds\tcomplete_rounds\tbench_ids_min\tbaseline_dockerd_cpm\tbaseline_containerd_cpm\tbaseline_shims_cpm\tbaseline_drift_dockerd\tbaseline_drift_containerd\tbaseline_drift_shims\trequests_round\n' >"$tsv"

# baseline SECONDS: prints the ticks per second of dockerd, containerd and the
# bench containers' shims over an idle window.
baseline() {
	local shims d0 c0 s0 t0 d1 c1 s1 t1
	shims=$(shim_pids)
	# shellcheck disable=SC2086
	d0=$(cpu_ticks "$dockerd_pid") c0=$(cpu_ticks "$containerd_pid") s0=$(cpu_ticks $shims) t0=$(date +%s.%N)
	sleep "$1"
	# shellcheck disable=SC2086
	d1=$(cpu_ticks "$dockerd_pid") c1=$(cpu_ticks "$containerd_pid") s1=$(cpu_ticks $shims) t1=$(date +%s.%N)
	awk -v d=$((d1 - d0)) -v c=$((c1 - c0)) -v s=$((s1 - s0)) -v t0="$t0" -v t1="$t1" \
		'BEGIN { w = t1 - t0; printf "%.4f %.4f %.4f\n", d / w, c / w, s / w }'
}

# measure NAME N: run the agent NAME (agentd or peer) against the N containers;
# sets row to the measured values (ticks are raw; the baseline is applied later).
measure() {
	local name=$1 n=$2 dir=$run_dir/$1-$2 shims a0 d0 c0 s0 t0 a1 d1 c1 s1 t1 rss hwm sink
	mkdir -p "$dir"
	case $name in
	agentd)
		agentd_config "$dir/agentd.yaml" "$INTERVAL"
		"$AGENTD_BIN" run --config "$dir/agentd.yaml" --otlp-endpoint "$SINK_ENDPOINT" --otlp-insecure >"$dir/out.log" 2>&1 &
		;;
	peer)
		peer_config "$dir/peer.yaml" "$INTERVAL" "$SINK_ENDPOINT" "$BENCH_DOCKER_SOCK"
		"$PEER_BIN" --config="file:$dir/peer.yaml" >"$dir/out.log" 2>&1 &
		;;
	esac
	AGENT_PID=$!
	blog "$name (pid $AGENT_PID) at N=$n: ${WARMUP}s warm-up, ${DURATION}s window"
	sleep "$WARMUP"
	kill -0 "$AGENT_PID" 2>/dev/null || { tail -20 "$dir/out.log" >&2; die "$name exited during warm-up"; }
	shims=$(shim_pids)
	# shellcheck disable=SC2086
	a0=$(cpu_ticks "$AGENT_PID") d0=$(cpu_ticks "$dockerd_pid") c0=$(cpu_ticks "$containerd_pid") s0=$(cpu_ticks $shims) t0=$(date +%s.%N)
	sleep "$DURATION"
	# shellcheck disable=SC2086
	a1=$(cpu_ticks "$AGENT_PID") d1=$(cpu_ticks "$dockerd_pid") c1=$(cpu_ticks "$containerd_pid") s1=$(cpu_ticks $shims) t1=$(date +%s.%N)
	rss=$(status_kb "$AGENT_PID" VmRSS) hwm=$(status_kb "$AGENT_PID" VmHWM)
	kill -0 "$AGENT_PID" 2>/dev/null || { tail -20 "$dir/out.log" >&2; die "$name exited during the window"; }
	stop_pid "$AGENT_PID"
	AGENT_PID=
	sleep 1 # the file exporter flushes every 100 ms
	sink=$("$BENCH_WORK/analyze" -metrics "$run_dir/sink/metrics.jsonl" -from "$t0" -to "$t1" \
		-interval "$INTERVAL" -source "$name" -ids "$run_dir/ids-$n") || die "analyze failed"
	echo "$name N=$n $sink" >>"$run_dir/sink-summary.txt"
	row="$n $name $(awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f", t1 - t0 }') $((a1 - a0)) $((d1 - d0)) $((c1 - c0)) $((s1 - s0)) $rss $hwm $sink"
	echo "$row" >>"$run_dir/raw.txt"
}

# emit ROW BASE_BEFORE BASE_AFTER: append ROW to results.tsv, dockerd,
# containerd and shims net of the mean of the two idle baselines around it.
emit() {
	awk -v row="$1" -v b1="$2" -v b2="$3" -v hz="$CLK_TCK" 'BEGIN {
		split(row, f, " "); n = f[1]; name = f[2]; w = f[3]
		for (i = 10; i in f; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
		split(b1, x, " "); split(b2, y, " ")
		bd = (x[1] + y[1]) / 2; bc = (x[2] + y[2]) / 2; bs = (x[3] + y[3]) / 2
		cpm = 60 / hz / w   # ticks in the window -> CPU-seconds per minute
		ac = f[4] * cpm; dc = (f[5] - bd * w) * cpm; cc = (f[6] - bc * w) * cpm; sc = (f[7] - bs * w) * cpm
		printf "%d\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\n",
			n, name, ac, dc, cc, sc, ac + dc + cc + sc, f[8] / 1024, f[9] / 1024,
			v["bytes_per_round"], v["gzip_bytes_per_round"], v["points_per_round"], v["resources_per_round"],
			v["rounds"], v["complete_rounds"], v["bench_ids_min"], bd * 60 / hz, bc * 60 / hz, bs * 60 / hz,
			(x[1] - y[1]) * 60 / hz, (x[2] - y[2]) * 60 / hz, (x[3] - y[3]) * 60 / hz, v["requests_per_round"]
	}' >>"$tsv"
	tail -1 "$tsv" >&2
}

# Per N: idle baseline, agentd, idle baseline, peer, idle baseline; each agent is
# charged net of the mean of the baselines on either side of its window (other
# engineers' tests share the host engines, so the idle load drifts).
for n in "${sizes[@]}"; do
	bench_scale "$n"
	bench_ids | head -n "$n" >"$run_dir/ids-$n"
	(($(bench_count) == n)) || blog "warning: $(bench_count) bench containers run for N=$n"
	blog "settling ${SETTLE}s after the containers started"
	sleep "$SETTLE"
	blog "idle baseline at N=$n (${BASELINE}s)"
	b1=$(baseline "$BASELINE")
	measure agentd "$n"
	row_agentd=$row
	blog "idle baseline at N=$n (${BASELINE}s)"
	b2=$(baseline "$BASELINE")
	measure peer "$n"
	row_peer=$row
	blog "idle baseline at N=$n (${BASELINE}s)"
	b3=$(baseline "$BASELINE")
	echo "N=$n baseline ticks/s (dockerd containerd shims): $b1 | $b2 | $b3" >>"$run_dir/baselines.txt"
	emit "$row_agentd" "$b1" "$b2"
	emit "$row_peer" "$b2" "$b3"
done

BENCH_ENGINE_DESC=$engine_desc bash "$here/report.sh" "$tsv" "$DURATION" "$INTERVAL" "$run_dir"
blog "results: $BENCH_OUT/results.md, plot: $BENCH_OUT/cost.png, run files: $run_dir"
