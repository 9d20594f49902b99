#!/usr/bin/env bash
# Build the peer collector for bench/run.sh: the OpenTelemetry Collector contrib
# docker_stats receiver with the OTLP exporter, v0.149.0, from the Go module proxy
# with the collector builder, as $PEER_BIN. Idempotent: nothing happens when the
# binary exists and the stamp beside it records the checksum of the same manifest
# (bench/peer/builder-config.yaml) and builder version.
#
# Like testbed/collector.sh: the builder runs with --skip-compilation (its own
# `go mod tidy` fails on test-only modules the proxy refuses with HTTP 403, after
# go.mod and the sources are written), then `go mod tidy -e && go build`.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/lib.sh
. "$here/../testbed/lib.sh"

PEER_BUILDER_VERSION=v0.149.0
manifest=$here/peer/builder-config.yaml
workdir=$TESTBED_CACHE/peer
PEER_BIN=${PEER_BIN:-$workdir/otelcol-peer}
stamp=$PEER_BIN.stamp
buildlog=$TESTBED_LOG/peer-build.log
builder=$workdir/bin/builder

[ -f "$manifest" ] || die "peer manifest $manifest is missing"
command -v go >/dev/null || die "go is not on PATH (needed to build the peer collector)"

want="$(sha256sum "$manifest" | cut -d' ' -f1) builder=$PEER_BUILDER_VERSION"
if [ -x "$PEER_BIN" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
	exit 0
fi

mkdir -p "$workdir/bin"
exec 9>"$workdir/.build.lock"
flock 9
if [ -x "$PEER_BIN" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
	exit 0
fi

fail() {
	tail -30 "$buildlog" >&2
	die "$1 (full log: $buildlog)"
}

start=$SECONDS
log "building the peer collector (docker_stats receiver $PEER_BUILDER_VERSION; a few minutes; log in $buildlog)"
: >"$buildlog"

installed=$("$builder" version 2>/dev/null || true)
if [[ $installed != *"${PEER_BUILDER_VERSION#v}"* ]]; then
	GOBIN=$workdir/bin go install "go.opentelemetry.io/collector/cmd/builder@$PEER_BUILDER_VERSION" >>"$buildlog" 2>&1 ||
		fail "go install of the collector builder $PEER_BUILDER_VERSION failed"
fi

rm -rf "$workdir/src"
cp "$manifest" "$workdir/builder-config.yaml"
(cd "$workdir" && "$builder" --config=builder-config.yaml --skip-compilation) >>"$buildlog" 2>&1 ||
	echo "build-peer.sh: builder exited non-zero (expected: its go mod tidy hits refused modules)" >>"$buildlog"
[ -f "$workdir/src/go.mod" ] && [ -f "$workdir/src/main.go" ] ||
	fail "the collector builder did not generate sources in $workdir/src"

(cd "$workdir/src" && go mod tidy -e) >>"$buildlog" 2>&1 || fail "go mod tidy -e of the peer sources failed"
rm -f "$PEER_BIN.tmp"
(cd "$workdir/src" && CGO_ENABLED=0 go build -trimpath -o "$PEER_BIN.tmp" .) >>"$buildlog" 2>&1 ||
	fail "go build of the peer collector failed"
# The binary must run and accept the pipeline bench/run.sh configures. (Its
# `components` command lists no exporters in v0.149.0 although the OTLP exporter
# is built in, so validate a configuration instead.)
cat >"$workdir/validate.yaml" <<'YAML'
receivers:
  docker_stats:
    endpoint: unix:///run/docker.sock
    api_version: "1.41"
exporters:
  otlp:
    endpoint: 127.0.0.1:4317
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
"$PEER_BIN.tmp" validate --config="file:$workdir/validate.yaml" >>"$buildlog" 2>&1 ||
	fail "the built peer collector does not accept a docker_stats -> otlp pipeline"
mv "$PEER_BIN.tmp" "$PEER_BIN"
echo "$want" >"$stamp"
log "peer collector built in $((SECONDS - start))s: $PEER_BIN"
