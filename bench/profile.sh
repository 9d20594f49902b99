#!/usr/bin/env bash
# Profile agentd (bench/profile: the agent package under runtime/pprof) against N
# idle busybox containers on the host Docker (label agentd.bench=1; started if
# missing, removed at the end unless BENCH_KEEP=1) exporting to a sink collector.
#
#   bench/profile.sh [N]          (default 500; BENCH_PROFILE_DURATION, default 120s;
#                                  BENCH_PROFILE_ARGS, more flags of bench/profile,
#                                  e.g. -memprofilerate=4096 for an exact live heap)
#
# Writes bench/out/profile.txt (pprof -top of CPU, live heap, allocations) and
# keeps cpu.pprof, heap.pprof and the binary in the run directory it names.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

n=${1:-500}
[[ $n =~ ^[0-9]+$ ]] && ((n > 0)) || die "usage: bench/profile.sh [N]"
duration=${BENCH_PROFILE_DURATION:-120s}
run_dir=$BENCH_WORK/profile-$(date +%Y%m%d-%H%M%S)
mkdir -p "$run_dir"
SINK_PID=
cleanup() {
	stop_pid "$SINK_PID"
	bench_cleanup_unless_kept
}
trap cleanup EXIT
trap 'exit 130' INT TERM

docker info >/dev/null 2>&1 || die "the host Docker does not answer (bash testbed/up.sh)"
bash "$repo/testbed/collector.sh"
(cd "$repo" && go build -tags "$GO_TAGS" -o "$run_dir/profile" ./bench/profile) || die "go build of bench/profile failed"
bench_scale "$n"
sink_start "$run_dir/sink"
blog "profiling agentd against $(bench_count) bench containers for $duration"
# shellcheck disable=SC2086 # BENCH_PROFILE_ARGS is a list of flags
"$run_dir/profile" -otlp-endpoint "$SINK_ENDPOINT" -duration "$duration" -out "$run_dir" ${BENCH_PROFILE_ARGS:-} >"$run_dir/profile.txt" ||
	die "bench/profile failed"
{
	echo "# agentd profile: N=$(bench_count) bench containers, $duration, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	cat "$run_dir/profile.txt"
} >"$BENCH_OUT/profile.txt"
blog "written $BENCH_OUT/profile.txt (profiles in $run_dir)"
