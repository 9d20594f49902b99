#!/usr/bin/env bash
# Build the testbed's OpenTelemetry Collector from the Go module proxy with the
# collector builder, as $COLLECTOR_BIN. Idempotent: nothing happens when the binary
# exists and the stamp beside it records the checksum of the same manifest
# (testbed/otelcol/builder-config.yaml) and versions, so editing the manifest rebuilds.
#
# The builder runs with --skip-compilation: its own `go mod tidy` fails on test-only
# modules the proxy refuses (HTTP 403), after go.mod and the sources are written.
# `go mod tidy -e` tolerates those, then `go build` makes the binary.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=testbed/lib.sh
. "$here/lib.sh"

manifest=$here/otelcol/builder-config.yaml
workdir=$TESTBED_CACHE/otelcol
stamp=$workdir/otelcol-agentd.stamp
buildlog=$TESTBED_LOG/collector-build.log
builder=$TESTBED_CACHE/bin/builder

[ -f "$manifest" ] || die "collector manifest $manifest is missing"
command -v go >/dev/null || die "go is not on PATH (needed to build the collector)"

want="$(sha256sum "$manifest" | cut -d' ' -f1) builder=$BUILDER_VERSION collector=$COLLECTOR_VERSION"
if [ -x "$COLLECTOR_BIN" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
	exit 0
fi

# One build at a time; a run that waited finds the other's result.
mkdir -p "$workdir"
exec 9>"$workdir/.build.lock"
flock 9
if [ -x "$COLLECTOR_BIN" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
	exit 0
fi

# fail MESSAGE: show the end of the build log and stop.
fail() {
	tail -30 "$buildlog" >&2
	die "$1 (full log: $buildlog)"
}

start=$SECONDS
log "building the OpenTelemetry Collector $COLLECTOR_VERSION (about a minute; log in $buildlog)"
mkdir -p "$TESTBED_CACHE/bin"
: >"$buildlog"

installed=$("$builder" version 2>/dev/null || true)
if [[ $installed != *"${BUILDER_VERSION#v}"* ]]; then
	GOBIN=$TESTBED_CACHE/bin go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION" >>"$buildlog" 2>&1 ||
		fail "go install of the collector builder $BUILDER_VERSION failed"
fi

rm -rf "$workdir/src"
cp "$manifest" "$workdir/builder-config.yaml"
# The builder's own `go mod tidy` exits non-zero on modules the proxy refuses;
# what matters is that it wrote go.mod and main.go, checked just below.
(cd "$workdir" && "$builder" --config=builder-config.yaml --skip-compilation) >>"$buildlog" 2>&1 ||
	echo "collector.sh: builder exited non-zero (expected: its go mod tidy hits refused modules)" >>"$buildlog"
[ -f "$workdir/src/go.mod" ] && [ -f "$workdir/src/main.go" ] ||
	fail "the collector builder did not generate sources in $workdir/src"

(cd "$workdir/src" && go mod tidy -e) >>"$buildlog" 2>&1 || fail "go mod tidy -e of the collector sources failed"
rm -f "$COLLECTOR_BIN.tmp"
(cd "$workdir/src" && CGO_ENABLED=0 go build -trimpath -o "$COLLECTOR_BIN.tmp" .) >>"$buildlog" 2>&1 ||
	fail "go build of the collector failed"
# The binary must run and hold every component the tests configure.
components=$("$COLLECTOR_BIN.tmp" components 2>>"$buildlog") || fail "the built collector does not run"
for c in receiver/otlpreceiver exporter/debugexporter exporter/fileexporter; do
	grep -q "/$c " <<<"$components" || fail "the built collector lacks $c"
done
mv "$COLLECTOR_BIN.tmp" "$COLLECTOR_BIN"
echo "$want" >"$stamp"
log "collector built in $((SECONDS - start))s: $COLLECTOR_BIN"
