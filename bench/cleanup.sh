#!/usr/bin/env bash
# Remove every container of the bench (label agentd.bench=1) from the host Docker.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_cleanup
