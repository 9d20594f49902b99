#!/usr/bin/env bash
# Render bench/run.sh's results.tsv as bench/out/results.md (table, ratios,
# targets) and bench/out/cost.png (gnuplot, when installed).
#
#   bench/report.sh RESULTS_TSV DURATION INTERVAL [RUN_DIR]
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

tsv=$1 duration=$2 interval=$3 run_dir=${4:-}
[ -f "$tsv" ] || die "usage: bench/report.sh RESULTS_TSV DURATION INTERVAL [RUN_DIR]"
md=$BENCH_OUT/results.md
png=$BENCH_OUT/cost.png

{
	echo "# agentd vs the docker_stats receiver (OpenTelemetry Collector contrib v0.149.0)"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, Docker $(docker version -f '{{.Server.Version}}' 2>/dev/null), export interval $interval,"
	echo "${duration} s window per agent after a warm-up, N idle \`local/busybox:latest sleep 1d\` containers on ${BENCH_ENGINE_DESC:-the host Docker}."
	echo "CPU in CPU-seconds per minute (utime+stime from /proc/PID/stat); dockerd, containerd and the bench"
	echo "containers' containerd-shims net of their idle baseline (mean of a window before and after, no agent"
	echo "running); whole host = agent + dockerd + containerd + shims. RSS: VmRSS at the window's end, VmHWM."
	echo "OTLP per round: protobuf bytes of the export requests the sink received per export round (and their"
	echo "gzip size, as on a compressed wire), data points and resources per round; coverage: rounds in which"
	echo "every bench container had a resource / rounds, and the fewest bench containers seen in one round."
	echo
	echo "| N | agent | agent CPU-s/min | dockerd | containerd | shims | whole host | RSS MB | peak RSS MB | OTLP B/round | gzip B/round | requests/round | points/round | resources/round | coverage |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %s | %s | %s/%s rounds, min %s/%s |\n",
		$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $23, $12, $13, $15, $14, $16, $1 }' "$tsv"
	echo
	echo "Idle baselines subtracted, CPU-s/min (mean of the windows before and after the agent's; in"
	echo "brackets the difference before − after, a measure of the drift of the shared engines' idle load,"
	echo "which bounds the precision of the net dockerd/containerd/shims figures):"
	echo
	echo "| N | agent | dockerd | containerd | shims |"
	echo "|---:|---|---:|---:|---:|"
	awk -F'\t' 'NR > 1 { printf "| %s | %s | %s (%+.2f) | %s (%+.2f) | %s (%+.2f) |\n", $1, $2, $17, $20, $18, $21, $19, $22 }' "$tsv"
	echo
	echo "## Ratios agentd / peer"
	echo
	echo "| N | agent CPU | whole host CPU | RSS | peak RSS | OTLP bytes | points |"
	echo "|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' 'function r(a, b) { return b > 0 ? sprintf("%.3f", a / b) : "n/a" }
		NR > 1 { row[$1, $2] = $0; if (!($1 in seen)) { seen[$1] = 1; ns[++k] = $1 } }
		END { for (i = 1; i <= k; i++) { n = ns[i]
			if (!((n, "agentd") in row) || !((n, "peer") in row)) continue
			split(row[n, "agentd"], a, "\t"); split(row[n, "peer"], p, "\t")
			printf "| %s | %s | %s | %s | %s | %s | %s |\n", n, r(a[3], p[3]), r(a[7], p[7]), r(a[8], p[8]), r(a[9], p[9]), r(a[10], p[10]), r(a[12], p[12]) } }' "$tsv"
	echo
	echo "## Targets"
	echo
	awk -F'\t' 'function yn(c) { return c ? "met" : "**not met**" }
		NR > 1 { row[$1, $2] = $0 }
		END {
			if (((100, "agentd") in row) && ((100, "peer") in row)) {
				split(row[100, "agentd"], a, "\t"); split(row[100, "peer"], p, "\t")
				printf "- whole-host CPU at N=100 <= 1/10 of the peer: %s vs %s CPU-s/min (ratio %.3f): %s\n", a[7], p[7], (p[7] > 0 ? a[7] / p[7] : 0), yn(a[7] <= p[7] / 10)
				printf "- agentd RSS at N=100 <= 30 MB and below the peer: %s MB (peak %s) vs %s MB (peak %s): %s\n", a[8], a[9], p[8], p[9], yn(a[9] <= 30 && a[8] < p[8])
			} else print "- N=100 not measured: the N=100 targets are not evaluated"
			if ((500, "agentd") in row) {
				split(row[500, "agentd"], a, "\t")
				printf "- agentd own CPU at N=500 < 0.5%% of a core (0.3 CPU-s/min): %s CPU-s/min = %.2f%% of a core: %s\n", a[3], (a[3] / 60 * 100), yn(a[3] < 0.3)
				printf "- every bench container in every round at N=500: %s of %s rounds complete, min %s/500: %s\n", a[15], a[14], a[16], yn(a[15] == a[14] && a[14] > 0)
			} else print "- N=500 not measured: the N=500 targets are not evaluated"
		}' "$tsv"
	if [ -n "$run_dir" ] && [ -f "$run_dir/sink-summary.txt" ]; then
		echo
		echo "Raw sink summaries (bench/analyze):"
		echo
		sed 's/^/    /' "$run_dir/sink-summary.txt"
	fi
} >"$md"

if command -v gnuplot >/dev/null; then
	awk -F'\t' 'NR > 1 && $2 == "agentd" { print $1, $7, $3 }' "$tsv" >"$BENCH_OUT/agentd.dat"
	awk -F'\t' 'NR > 1 && $2 == "peer" { print $1, $7, $3 }' "$tsv" >"$BENCH_OUT/peer.dat"
	gnuplot <<GP || blog "gnuplot failed: no plot"
set terminal pngcairo size 900,560 noenhanced
set output "$png"
set title "Cost against N idle containers (export interval $interval; net CPU below 0 is noise of the shared engines)"
set xlabel "containers (N)"
set ylabel "CPU-seconds per minute"
set logscale x
set yrange [0:*]
set grid
set key top left
plot "$BENCH_OUT/peer.dat" using 1:2 with linespoints lw 2 title "peer: whole host (collector+dockerd+containerd+shims)", \
     "$BENCH_OUT/peer.dat" using 1:3 with linespoints dt 2 title "peer: collector only", \
     "$BENCH_OUT/agentd.dat" using 1:2 with linespoints lw 2 title "agentd: whole host", \
     "$BENCH_OUT/agentd.dat" using 1:3 with linespoints dt 2 title "agentd: agent only"
GP
	rm -f "$BENCH_OUT/agentd.dat" "$BENCH_OUT/peer.dat"
fi
