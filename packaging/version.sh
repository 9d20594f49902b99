#!/usr/bin/env bash
# Prints agentd's package version, valid for both Debian and RPM, from
# `git describe --tags --always --dirty` (or $VERSION when set, taken as is
# when valid and otherwise read as describe output):
#   v1.2.3                      -> 1.2.3
#   v1.2.3-4-gabc1234           -> 1.2.3+4.gabc1234
#   v1.2.3-4-gabc1234-dirty     -> 1.2.3+4.gabc1234.dirty
#   v1.3.0-rc1                  -> 1.3.0~rc1      (sorts before 1.3.0)
#   abc1234 (no tags)           -> 0.0.0~dev+abc1234
#   (no commits)                -> 0.0.0~dev
# Only [A-Za-z0-9.+~] remain: no "-" (the Debian revision and RPM release
# separator) and no "_".
set -euo pipefail

to_version() {
	local d=$1 dirty= base extra=
	if [[ $d == *-dirty ]]; then
		dirty=dirty
		d=${d%-dirty}
	fi
	if [[ $d =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		base=${BASH_REMATCH[1]}
		extra="${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
	else
		base=$d
	fi
	if [[ -z $extra && $base =~ ^[0-9a-f]{7,}$ ]]; then
		# No tag: describe printed the abbreviated commit.
		extra=$base
		base="0.0.0~dev"
	elif [[ $base =~ ^v?[0-9]+(\.[0-9]+)*(-[A-Za-z0-9.]+)?$ ]]; then
		base=${base#v}
		base=${base//-/\~}
	else
		# A tag that is not a version: keep it as build metadata.
		extra=${base//[^A-Za-z0-9.]/.}${extra:+.$extra}
		base="0.0.0~dev"
	fi
	[[ -n $dirty ]] && extra=${extra:+$extra.}$dirty
	echo "$base${extra:++$extra}"
}

valid='^[0-9][A-Za-z0-9.+~]*$'
if [[ -n ${VERSION:-} ]]; then
	# A version given as is when it is valid (0.0.1~test1), else read as
	# `git describe` output (make passes its own VERSION, e.g. v1.2.3-4-gabc1234-dirty).
	v=$VERSION
	if [[ ! $v =~ $valid || $v =~ ^[0-9a-f]{7,}$ ]]; then
		v=$(to_version "$v")
	fi
elif d=$(git describe --tags --always --dirty 2>/dev/null); then
	v=$(to_version "$d")
else
	v=0.0.0~dev
fi
if [[ ! $v =~ $valid ]]; then
	echo "version.sh: $v is not a valid Debian and RPM version" >&2
	exit 1
fi
echo "$v"
