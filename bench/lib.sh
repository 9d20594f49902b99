# shellcheck shell=bash
# Shared helpers of the bench/ scripts: bench containers on the host Docker, the
# sink collector, agentd and the peer collector, and /proc accounting. Sourced,
# not run. Only containers labelled agentd.bench=1 are ever touched: other
# engineers' tests share the host Docker.

bench_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$bench_here/.." && pwd)
# shellcheck source=testbed/lib.sh
. "$repo/testbed/lib.sh"

BENCH_LABEL=agentd.bench=1
BENCH_OUT=${BENCH_OUT:-$bench_here/out}
BENCH_WORK=${BENCH_WORK:-$TESTBED_DIR/bench}
PEER_BIN=${PEER_BIN:-$TESTBED_CACHE/peer/otelcol-peer}
AGENTD_BIN=${AGENTD_BIN:-$repo/bin/agentd}
# The build tags of agentd, as the Makefile's GO_TAGS has them.
GO_TAGS=${GO_TAGS:-grpcnotrace}
# Parallel docker run calls while starting containers (the host has 2 cores).
BENCH_START_PARALLEL=${BENCH_START_PARALLEL:-6}
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$BENCH_OUT" "$BENCH_WORK"

# build_agentd OUT: build ./cmd/agentd into OUT the way `make build` does.
build_agentd() { (cd "$repo" && CGO_ENABLED=0 go build -trimpath -tags "$GO_TAGS" -o "$1" ./cmd/agentd); }

blog() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# bench_count: how many bench containers run.
bench_count() { docker ps -q --filter "label=$BENCH_LABEL" | wc -l; }

# bench_scale N: start bench containers until N run (never stops extra ones).
bench_scale() {
	local want=$1 have
	have=$(bench_count)
	((have >= want)) && return 0
	blog "starting $((want - have)) busybox containers ($have running, want $want)"
	seq "$have" $((want - 1)) | xargs -P "$BENCH_START_PARALLEL" -I{} \
		/usr/bin/docker run -d --label "$BENCH_LABEL" --label agentd.bench.seq={} \
		"$BUSYBOX_IMAGE" sleep 1d >/dev/null
	have=$(bench_count)
	((have >= want)) || die "only $have bench containers run, want $want"
}

# bench_cleanup [LABEL]: remove every container carrying LABEL (key=value,
# default the bench label).
bench_cleanup() {
	local ids
	ids=$(docker ps -aq --filter "label=${1:-$BENCH_LABEL}")
	[ -z "$ids" ] && return 0
	blog "removing $(wc -w <<<"$ids") bench containers"
	# shellcheck disable=SC2086
	xargs -n 50 /usr/bin/docker rm -f <<<"$ids" >/dev/null 2>&1 || true
}

# bench_cleanup_unless_kept: bench_cleanup, or with BENCH_KEEP=1 a line saying
# how many bench containers stay.
bench_cleanup_unless_kept() {
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		blog "BENCH_KEEP=1: leaving $(bench_count) bench containers running (bash bench/cleanup.sh removes them)"
	else
		bench_cleanup
	fi
}

# bench_ids: full IDs of the running bench containers, one a line.
bench_ids() { docker ps -q --no-trunc --filter "label=$BENCH_LABEL"; }

# listener_pid SOCKET: PID of the process listening on the unix socket path
# (/run/X also matches the same socket bound as /var/run/X).
listener_pid() {
	# awk reads to the end: an early exit would kill ss with SIGPIPE, and with
	# pipefail the script, once the host has many sockets (500 containers).
	ss -xlpn 2>/dev/null | awk -v s="$1" '!found && ($5 == s || $5 == "/var" s) && match($0, /pid=[0-9]+/) { print substr($0, RSTART + 4, RLENGTH - 4); found = 1 }'
}

# shim_pids: containerd-shim PIDs of the running bench containers (parents of
# their init processes), space separated.
shim_pids() {
	local pid
	# shellcheck disable=SC2046
	for pid in $(docker inspect -f '{{.State.Pid}}' $(bench_ids) 2>/dev/null); do
		awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null
	done | sort -u | tr '\n' ' '
}

# cpu_ticks PID...: sum of utime+stime of the processes, in clock ticks
# (a process that is gone counts 0).
cpu_ticks() {
	local sum=0 pid t
	for pid in "$@"; do
		# Fields after the ")" of comm: utime and stime are 12th and 13th.
		t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
		sum=$((sum + ${t:-0}))
	done
	echo "$sum"
}

# status_kb PID FIELD: a kB field of /proc/PID/status (VmRSS, VmHWM).
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null; }

# ticks_to_cpm TICKS SECONDS: CPU-seconds per minute.
ticks_to_cpm() { awk -v t="$1" -v s="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", t / hz * 60 / s }'; }

# free_port: a free loopback TCP port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
	awk 'BEGIN { srand(); print 20000 + int(rand() * 20000) }'; }

# sink_start DIR FLUSH: start the testbed collector as the sink, OTLP/gRPC on a
# free loopback port, metrics and logs to DIR/metrics.jsonl and DIR/logs.jsonl
# (file exporter flushed every FLUSH). Sets SINK_PID and SINK_ENDPOINT.
sink_start() {
	local dir=$1 flush=${2:-100ms} port i
	mkdir -p "$dir"
	for i in 1 2 3 4 5; do
		port=$(free_port)
		SINK_ENDPOINT=127.0.0.1:$port
		cat >"$dir/sink.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "$SINK_ENDPOINT"
        max_recv_msg_size_mib: 64
exporters:
  file/metrics:
    path: "$dir/metrics.jsonl"
    flush_interval: $flush
  file/logs:
    path: "$dir/logs.jsonl"
    flush_interval: $flush
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
    logs:
      receivers: [otlp]
      exporters: [file/logs]
YAML
		"$COLLECTOR_BIN" --config="file:$dir/sink.yaml" >"$dir/sink.log" 2>&1 &
		SINK_PID=$!
		if wait_for 30 "sink collector" grep -q "Everything is ready" "$dir/sink.log"; then
			blog "sink collector $SINK_PID on $SINK_ENDPOINT, files in $dir"
			return 0
		fi
		kill "$SINK_PID" 2>/dev/null || true
		wait "$SINK_PID" 2>/dev/null || true
		grep -q "address already in use" "$dir/sink.log" || break
	done
	cat "$dir/sink.log" >&2
	die "the sink collector did not start"
}

# stop_pid PID: SIGTERM, then SIGKILL after 15 s; waits for it.
stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# build_latency OUT: build the bench/latency tool into OUT.
build_latency() { (cd "$repo" && go build -o "$1" ./bench/latency); }

# agentd_events_start DIR: start agentd with its defaults (events flushed every
# 100 ms) but no status socket and no activation, plus the settings in
# LAT_AGENTD_YAML (a comparison), exporting to the sink at SINK_ENDPOINT; its
# configuration and log in DIR. Sets AGENT_PID and waits 5 s for it to watch the
# engines.
agentd_events_start() {
	local dir=$1
	mkdir -p "$dir"
	cat >"$dir/agentd.yaml" <<YAML
status:
  socket: ""
activation:
  enabled: false
YAML
	[ -z "${LAT_AGENTD_YAML:-}" ] || printf '%s\n' "$LAT_AGENTD_YAML" >>"$dir/agentd.yaml"
	"$BENCH_WORK/agentd" run --config "$dir/agentd.yaml" --otlp-endpoint "$SINK_ENDPOINT" --otlp-insecure >"$dir/agentd.log" 2>&1 &
	AGENT_PID=$!
	blog "agentd (pid $AGENT_PID) exporting to $SINK_ENDPOINT; waiting until it watches the engines"
	sleep 5
	kill -0 "$AGENT_PID" 2>/dev/null || { tail -20 "$dir/agentd.log" >&2; die "agentd exited"; }
}

# agentd_config FILE INTERVAL: agentd's configuration for the bench: no status
# socket (it would collide with other engineers' agents), and no socket
# activation unless BENCH_ACTIVATION=1 (activating agentd-th's socket units would
# change state other tests rely on).
agentd_config() {
	local activation=false
	[ "${BENCH_ACTIVATION:-0}" = 1 ] && activation=true
	cat >"$1" <<YAML
export:
  interval: $2
status:
  socket: ""
activation:
  enabled: $activation
log:
  level: warn
YAML
}

# peer_config FILE INTERVAL ENDPOINT [DOCKER_SOCK]: the peer's configuration:
# docker_stats on the Docker at DOCKER_SOCK (/run/docker.sock) with its defaults (API pinned to 1.41, what Docker 20.10
# speaks), OTLP/gRPC to the sink with the exporter's defaults (gzip), no own
# telemetry port.
peer_config() {
	cat >"$1" <<YAML
receivers:
  docker_stats:
    endpoint: unix://${4:-/run/docker.sock}
    collection_interval: $2
    api_version: "1.41"
exporters:
  otlp:
    endpoint: "$3"
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [docker_stats]
      exporters: [otlp]
YAML
}

# A private engine pair for the bench (BENCH_ENGINE=private): a containerd and
# a dockerd of the bench's own, so that their CPU is the agents' doing alone and
# not other engineers' tests on the shared host engines. The dockerd runs in a
# network namespace of its own with --bridge=none (a dockerd with --bridge=none
# deletes docker0 in its namespace, which must not be the host's), so the bench
# containers have no network; the containerd has no CRI plugin. Both are
# discovered by agentd like any engine on the host.
PRIVATE_DIR=$BENCH_WORK/engine
PRIVATE_CONTAINERD_PID= PRIVATE_DOCKERD_PID=

# private_engine_start: start the pair, import the busybox image, export
# DOCKER_HOST and set dockerd_pid, containerd_pid and BENCH_DOCKER_SOCK.
private_engine_start() {
	private_engine_stop
	mkdir -p "$PRIVATE_DIR"
	cat >"$PRIVATE_DIR/containerd.toml" <<TOML
version = 2
root = "$PRIVATE_DIR/containerd-root"
state = "$PRIVATE_DIR/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$PRIVATE_DIR/containerd.sock"
[ttrpc]
  address = "$PRIVATE_DIR/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
TOML
	setsid containerd --config "$PRIVATE_DIR/containerd.toml" >"$PRIVATE_DIR/containerd.log" 2>&1 </dev/null &
	PRIVATE_CONTAINERD_PID=$!
	echo "$PRIVATE_CONTAINERD_PID" >"$PRIVATE_DIR/containerd.pid"
	wait_for 60 "private containerd" test -S "$PRIVATE_DIR/containerd.sock" ||
		{ tail -20 "$PRIVATE_DIR/containerd.log" >&2; die "the private containerd did not start"; }
	# unshare, not `ip netns exec`: the latter remounts /sys, which hides the
	# cgroup mounts dockerd needs.
	setsid unshare --net -- dockerd \
		--host "unix://$PRIVATE_DIR/docker.sock" \
		--data-root "$PRIVATE_DIR/docker" --exec-root "$PRIVATE_DIR/exec" \
		--pidfile "$PRIVATE_DIR/dockerd.pid" \
		--bridge=none --iptables=false --ip-masq=false \
		--containerd "$PRIVATE_DIR/containerd.sock" >"$PRIVATE_DIR/dockerd.log" 2>&1 </dev/null &
	export DOCKER_HOST=unix://$PRIVATE_DIR/docker.sock
	wait_for 60 "private dockerd" /usr/bin/docker version ||
		{ tail -20 "$PRIVATE_DIR/dockerd.log" >&2; die "the private dockerd did not start"; }
	PRIVATE_DOCKERD_PID=$(cat "$PRIVATE_DIR/dockerd.pid")
	/usr/bin/docker import - "$BUSYBOX_IMAGE" <"$TESTBED_CACHE/busybox.tar" >/dev/null ||
		die "import of $BUSYBOX_IMAGE into the private dockerd failed"
	dockerd_pid=$PRIVATE_DOCKERD_PID containerd_pid=$PRIVATE_CONTAINERD_PID
	BENCH_DOCKER_SOCK=$PRIVATE_DIR/docker.sock
	blog "private engines: dockerd $dockerd_pid on $BENCH_DOCKER_SOCK (own network namespace), containerd $containerd_pid"
}

# private_engine_stop: remove the bench containers of the private dockerd, stop
# the pair (the PIDs recorded in its directory; its network namespace goes with dockerd).
private_engine_stop() {
	local pid
	if [ -S "$PRIVATE_DIR/docker.sock" ] && DOCKER_HOST=unix://$PRIVATE_DIR/docker.sock /usr/bin/docker version >/dev/null 2>&1; then
		DOCKER_HOST=unix://$PRIVATE_DIR/docker.sock bench_cleanup
	fi
	pid=$(cat "$PRIVATE_DIR/dockerd.pid" 2>/dev/null) && [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && stop_pid "$pid"
	pid=$(cat "$PRIVATE_DIR/containerd.pid" 2>/dev/null) && [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = containerd ] && stop_pid "$pid"
	rm -f "$PRIVATE_DIR/dockerd.pid" "$PRIVATE_DIR/containerd.pid"
	return 0
}
