#!/usr/bin/env bash
# Two agentd binaries side by side, ABBA, against the same N bench containers
# on the host Docker and the same sink collector: old, new, new, old, each
# with the bench configuration (bench/lib.sh agentd_config), so that a machine
# whose load drifts (other engineers' VMs and tests) charges both alike.
#
#   bench/abba.sh OLD NEW [N]      (default N 1000)
#
# Per run: BENCH_WARMUP (30) seconds of warm-up, then a BENCH_DURATION (60)
# second window: the agent's CPU (utime+stime of /proc/PID/stat) over the
# window, VmRSS, VmHWM and RssAnon at its end, and what the sink received per
# export round (bench/analyze: complete rounds, the fewest bench containers in
# a round). Extra environment for the runs of one binary: ABBA_OLD_ENV and
# ABBA_NEW_ENV (e.g. GOMEMLIMIT=30MiB; the same binary twice with a different
# environment measures a runtime setting). Writes bench/out/abba.tsv and prints it. Bench
# containers are started if missing and removed at the end unless BENCH_KEEP=1.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

old=$1 new=$2 n=${3:-1000}
[ -x "$old" ] && [ -x "$new" ] && [[ $n =~ ^[0-9]+$ ]] || die "usage: bench/abba.sh OLD NEW [N]"
WARMUP=${BENCH_WARMUP:-30}
DURATION=${BENCH_DURATION:-60}
INTERVAL=${BENCH_INTERVAL:-10s}
run_dir=$BENCH_WORK/abba-$(date +%Y%m%d-%H%M%S)
mkdir -p "$run_dir"
AGENT_PID= SINK_PID=
cleanup() {
	stop_pid "$AGENT_PID"
	stop_pid "$SINK_PID"
	bench_cleanup_unless_kept
}
trap cleanup EXIT
trap 'exit 130' INT TERM

docker info >/dev/null 2>&1 || die "the host Docker does not answer (bash testbed/up.sh)"
bash "$repo/testbed/collector.sh"
(cd "$repo" && go build -o "$run_dir/analyze" ./bench/analyze) || die "go build of bench/analyze failed"
bench_scale "$n"
bench_ids | head -n "$n" >"$run_dir/ids"
sink_start "$run_dir/sink"
agentd_config "$run_dir/agentd.yaml" "$INTERVAL"
tsv=$BENCH_OUT/abba.tsv
printf 'run\tbinary\tcpu_s_per_min\tpct_core\trss_mb\thwm_mb\tanon_mb\tcomplete_rounds\trounds\tmin_containers\n' >"$tsv"

# run I LABEL BIN [ENV...]: one measured run.
run() {
	local i=$1 label=$2 bin=$3 a0 a1 t0 t1 rss hwm anon sink
	shift 3
	env "$@" "$bin" run --config "$run_dir/agentd.yaml" --otlp-endpoint "$SINK_ENDPOINT" --otlp-insecure >"$run_dir/$i-$label.log" 2>&1 &
	AGENT_PID=$!
	blog "run $i: $label (pid $AGENT_PID) ${WARMUP}s warm-up, ${DURATION}s window"
	sleep "$WARMUP"
	a0=$(cpu_ticks "$AGENT_PID") t0=$(date +%s.%N)
	sleep "$DURATION"
	a1=$(cpu_ticks "$AGENT_PID") t1=$(date +%s.%N)
	rss=$(status_kb "$AGENT_PID" VmRSS) hwm=$(status_kb "$AGENT_PID" VmHWM) anon=$(status_kb "$AGENT_PID" RssAnon)
	kill -0 "$AGENT_PID" 2>/dev/null || { tail -20 "$run_dir/$i-$label.log" >&2; die "$label exited during the window"; }
	stop_pid "$AGENT_PID"
	AGENT_PID=
	sleep 1
	sink=$("$run_dir/analyze" -metrics "$run_dir/sink/metrics.jsonl" -from "$t0" -to "$t1" \
		-interval "$INTERVAL" -source agentd -ids "$run_dir/ids") || die "analyze failed"
	echo "$i $label $sink" >>"$run_dir/sink-summary.txt"
	awk -v i="$i" -v l="$label" -v t=$((a1 - a0)) -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v hz="$CLK_TCK" \
		-v rss="$rss" -v hwm="$hwm" -v anon="$anon" -v sink="$sink" 'BEGIN {
		n = split(sink, f, " "); for (k = 1; k <= n; k++) { split(f[k], kv, "="); v[kv[1]] = kv[2] }
		cpm = t / hz * 60 / w
		printf "%d\t%s\t%.3f\t%.2f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\n", i, l, cpm, cpm / 60 * 100, rss / 1024, hwm / 1024, anon / 1024,
			v["complete_rounds"], v["rounds"], v["bench_ids_min"]
	}' >>"$tsv"
	tail -1 "$tsv" >&2
}

read -r -a old_env <<<"${ABBA_OLD_ENV:-}"
read -r -a new_env <<<"${ABBA_NEW_ENV:-}"
run 1 old "$old" "${old_env[@]}"
run 2 new "$new" "${new_env[@]}"
run 3 new "$new" "${new_env[@]}"
run 4 old "$old" "${old_env[@]}"
column -t "$tsv"
