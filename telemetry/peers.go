package telemetry

import (
	"fmt"
	"strings"
)

// Peer is another collector of container metrics that METRICS.md compares
// agentd with, metric by metric.
type Peer struct {
	// Name and Version say which peer and which release its names are from.
	Name, Version string
	// Metrics are the peer's names for agentd's metrics, by index into
	// Metrics; "" where the peer has none.
	Metrics [numMetrics]string
}

// Peers are the collectors agentd is compared with: the OpenTelemetry
// Collector's docker_stats and kubeletstats receivers (contrib v0.149.0) and
// cAdvisor's Prometheus metrics (v0.53). A name followed by {…} is one
// metric with that attribute; "a + b" means agentd's one metric stands for
// the peer's two.
var Peers = []Peer{
	{Name: "docker_stats", Version: "contrib v0.149.0", Metrics: [numMetrics]string{
		mCPUTime:             "container.cpu.usage.usermode + container.cpu.usage.kernelmode (ns)",
		mCPUUsage:            "container.cpu.utilization (percent of the host)",
		mCPUPeriods:          "container.cpu.throttling_data.periods",
		mCPUThrottledPeriods: "container.cpu.throttling_data.throttled_periods",
		mCPUThrottledTime:    "container.cpu.throttling_data.throttled_time (ns)",
		mMemoryUsage:         "container.memory.usage.total (cache excluded)",
		mMemoryRSS:           "container.memory.total_rss (v1; container.memory.anon on v2)",
		mMemoryLimit:         "container.memory.usage.limit",
		mPagingFaults:        "container.memory.pgfault + container.memory.pgmajfault",
		mDiskIO:              "container.blockio.io_service_bytes_recursive{device_major, device_minor, operation}",
		mNetworkIO:           "container.network.io.usage.rx_bytes + tx_bytes{interface}",
		mPidsCount:           "container.pids.count",
		mUptime:              "container.uptime",
		mRestarts:            "container.restarts",
		mState:               "container.status{status}",
	}},
	{Name: "cAdvisor", Version: "v0.53", Metrics: [numMetrics]string{
		mCPUTime:             "container_cpu_user_seconds_total + container_cpu_system_seconds_total",
		mCPUUsage:            "rate(container_cpu_usage_seconds_total)",
		mCPUPeriods:          "container_cpu_cfs_periods_total",
		mCPUThrottledPeriods: "container_cpu_cfs_throttled_periods_total",
		mCPUThrottledTime:    "container_cpu_cfs_throttled_seconds_total",
		mCPUPressure:         "container_pressure_cpu_waiting_seconds_total + container_pressure_cpu_stalled_seconds_total",
		mMemoryUsage:         "container_memory_usage_bytes",
		mMemoryRSS:           "container_memory_rss",
		mMemoryWorkingSet:    "container_memory_working_set_bytes",
		mMemoryLimit:         "container_spec_memory_limit_bytes",
		mPagingFaults:        "container_memory_failures_total{failure_type=pgfault, pgmajfault}",
		mOOMKills:            "container_oom_events_total",
		mMemoryPressure:      "container_pressure_memory_waiting_seconds_total + container_pressure_memory_stalled_seconds_total",
		mDiskIO:              "container_fs_reads_bytes_total + container_fs_writes_bytes_total{device}",
		mIOPressure:          "container_pressure_io_waiting_seconds_total + container_pressure_io_stalled_seconds_total",
		mNetworkIO:           "container_network_receive_bytes_total + container_network_transmit_bytes_total{interface}",
		mPidsCount:           "container_threads",
		mUptime:              "container_start_time_seconds",
	}},
	{Name: "kubeletstats", Version: "contrib v0.149.0", Metrics: [numMetrics]string{
		mCPUTime:          "container.cpu.time (no modes)",
		mCPUUsage:         "container.cpu.usage",
		mMemoryUsage:      "container.memory.usage",
		mMemoryRSS:        "container.memory.rss",
		mMemoryWorkingSet: "container.memory.working_set",
		mMemoryAvailable:  "container.memory.available",
		mPagingFaults:     "container.memory.page_faults + container.memory.major_page_faults",
		mUptime:           "container.uptime",
	}},
}

// metricSources says where each metric's value comes from, for the docs.
var metricSources = [numMetrics]string{
	mCPUTime:             "cpu.stat (v2); cpuacct.stat (v1)",
	mCPUUsage:            "cpu.stat usage_usec (v2); cpuacct.usage (v1)",
	mCPUPeriods:          "cpu.stat nr_periods (v2; v1 cpu controller, every round once it counts periods of a quota, else once a minute)",
	mCPUThrottledPeriods: "cpu.stat nr_throttled (v2; v1 cpu controller, as periods)",
	mCPUThrottledTime:    "cpu.stat throttled_usec (v2), throttled_time (v1 cpu controller)",
	mCPUPressure:         "cpu.pressure (cgroup v2 hosts only)",
	mMemoryUsage:         "memory.current (v2); memory.usage_in_bytes (v1)",
	mMemoryRSS:           "memory.stat anon (v2), total_rss (v1)",
	mMemoryWorkingSet:    "usage − memory.stat inactive_file",
	mMemoryAvailable:     "limit − working set",
	mMemoryLimit:         "memory.max (v2); memory.stat hierarchical_memory_limit (v1)",
	mPagingFaults:        "memory.stat pgfault, pgmajfault",
	mOOMKills:            "memory.events oom_kill (v2); memory.oom_control oom_kill (v1, Linux 4.13+); read after the kernel log shows a kill, and once a minute",
	mMemoryPressure:      "memory.pressure (cgroup v2 hosts only)",
	mDiskIO:              "io.stat (v2); blkio.throttle.io_service_bytes (v1); names from /sys/dev/block/MAJ:MIN/uevent",
	mIOPressure:          "io.pressure (cgroup v2 hosts only)",
	mNetworkIO:           "/proc/PID/net/dev",
	mPidsCount:           "pids.current",
	mUptime:              "engine: start time",
	mRestarts:            "engine: RestartCount (Docker, podman)",
	mState:               "engine: state",
	mHealth:              "engine: State.Health.Status (Docker, podman)",
}

// peersDoc renders the side-by-side table of the container metrics.
func peersDoc() string {
	var b strings.Builder
	b.WriteString("## agentd and its peers\n\n")
	b.WriteString("The container metrics of agentd and what docker_stats, cAdvisor and kubeletstats call the same measurement (`—`: the peer has none). Generated from `Peers` in telemetry/peers.go.\n\n")
	b.WriteString("| agentd | read from |")
	for _, p := range Peers {
		fmt.Fprintf(&b, " %s (%s) |", p.Name, p.Version)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(Peers)) + "\n")
	for i, m := range Metrics {
		if m.Resource != "container" {
			continue
		}
		fmt.Fprintf(&b, "| `%s` | %s |", m.Name, metricSources[i])
		for _, p := range Peers {
			if n := p.Metrics[i]; n != "" {
				fmt.Fprintf(&b, " %s |", peerName(n))
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	return b.String()
}

// peerName puts the metric names of a peer's entry in code spans and leaves
// the notes in parentheses as text.
func peerName(n string) string {
	note := ""
	if i := strings.Index(n, " ("); i >= 0 {
		n, note = n[:i], n[i:]
	}
	parts := strings.Split(n, " + ")
	for i, p := range parts {
		parts[i] = "`" + p + "`"
	}
	return strings.Join(parts, " + ") + note
}

// costDoc says what the metrics cost to read and what was left out. The
// numbers come from the benchmarks it names, on the testbed (2 cores, shared).
const costDoc = `## Cost of the metrics, and what was left out

Every metric was added only where it is cheap. Measured with ` + "`go test -bench 'BenchmarkReadNewFile|BenchmarkReadContainerCgroup|BenchmarkReadCgroupV1' ./stats`" + ` (the systemd host container's real cgroup, files kept open, one pread and parse per op; 2 shared cores, 2026-12-05):

| added read | ns per container round | allocations |
|---|---|---|
| cpu controller's cpu.stat (v1 throttling; on v2 it is in cpu.stat, already read) | 990–1,470 | 0 |
| memory.oom_control (v1) / memory.events (v2) for OOM kills | 850–900 | 0 |
| cpu.pressure | 1,380–1,900 | 0 |
| memory.pressure | 1,600–2,010 | 0 |
| io.pressure | 1,630–1,880 | 0 |
| memory.stat pgfault, pgmajfault; cpu.stat periods on v2; memory available | parsed from files already read: no read | 0 |
| device names of container.disk.io | one uevent read per device for the agent's life, then a map lookup | 0 after the first |
| restarts, state, health | from the engine's inspect, already made | 0 |

Together 5–7 µs per container and round: a whole round of the real container's files (BenchmarkReadContainerCgroup, six interleaved runs of 50,000) went from 13.3 µs (fastest; median 17.5) to 16.5 µs (median 22.4), 0 allocations before and after. At 1,000 containers that is 5–7 ms of CPU per 10 s round, under 0.1 % of a core. Building the export batch of 500 containers (BenchmarkBuild500) went from 0.49–0.63 ms to 0.74–0.93 ms a round, 216 allocations a round instead of 143 (not per container).

What changes only on rare events is not read every round (stats.Reader.Read): the OOM kill counter is read when the kernel log shows an OOM kill (and every round when agentd cannot read the kernel log), v2 memory.max once a minute, the v1 throttling counters (the cpu controller's cpu.stat) every round once they have counted periods of a CPU quota, else once a minute (without a quota they do not move, and reading cpu.cfs_quota_us to know cost an open a minute for every container); each is also read at the first round and once a minute, so none is older than that. At 1,000 containers on the testbed (cgroup v1) files were two thirds of agentd's CPU, most of it opening the files past the budget of files kept open (then 4,096; each kept file holds a page of kernel memory, and the budget is now host.open_files, 10,240 by default: every file of 1,000 containers, which halves a round's reads, BenchmarkRound1000): the OOM counter was 12 % of the CPU, the pressure files 13 %. PSI is read on cgroup v2 hosts only, as cAdvisor and runc do: a hybrid v1 host's controllerless cgroup2 mount has pressure files too, but three files more per container and round there cost more than all the rest of the memory figures.

Left out, as not worth their cost or their series: the PSI averages (avg10, avg60, avg300: a rate of the stall time gives them, three gauges more per resource); memory.events' low, high and max counters and v1 memory.failcnt (a read or series each for what the OOM kill counter and working set show); I/O operation counts (rios, wios) and v1's blkio io_serviced (another file on v1); per-CPU usage (cpuacct.usage_percpu, a row per CPU per container); the PIDs limit. The health of containerd and CRI containers is not exported: they have no health check.

`
