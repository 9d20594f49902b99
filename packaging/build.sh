#!/usr/bin/env bash
# Builds dist/agentd_<version>_<debarch>.deb and dist/agentd-<version>.<rpmarch>.rpm
# from packaging/nfpm.yaml. Called by `make package`; VERSION=... overrides
# the version computed by packaging/version.sh, GOARCH=... the architecture,
# AGENTD_BIN=... packages an already built binary instead of building
# ./cmd/agentd (the packaging tests use it), DIST=... writes the packages
# elsewhere than dist/.
# nfpm comes from the pinned tools module in packaging/tools (go.mod/go.sum),
# built by the Go toolchain: nothing is downloaded by hand.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

version=$(bash packaging/version.sh)
arch=${GOARCH:-$(go env GOARCH)}
case $arch in
amd64) debarch=amd64 rpmarch=x86_64 ;;
arm64) debarch=arm64 rpmarch=aarch64 ;;
386) debarch=i386 rpmarch=i386 ;;
arm) debarch=armhf rpmarch=armv7hl ;;
ppc64le) debarch=ppc64el rpmarch=ppc64le ;;
s390x) debarch=s390x rpmarch=s390x ;;
riscv64) debarch=riscv64 rpmarch=riscv64 ;;
*) echo "build.sh: unsupported GOARCH $arch" >&2; exit 1 ;;
esac

dist=${DIST:-dist}
mkdir -p dist/build dist/tools "$dist"
echo "build.sh: agentd $version for $arch"
# nfpm.yaml packages dist/build/agentd.
if [[ -n ${AGENTD_BIN:-} ]]; then
	install -m 0755 "$AGENTD_BIN" dist/build/agentd
else
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -tags "${GO_TAGS:-grpcnotrace}" \
		-ldflags "-X main.version=$version" -o dist/build/agentd ./cmd/agentd
fi
go -C packaging/tools build -o "$root/dist/tools/nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm

export AGENTD_VERSION=$version AGENTD_ARCH=$arch
deb="$dist/agentd_${version}_${debarch}.deb"
rpm="$dist/agentd-${version}.${rpmarch}.rpm"
rm -f "$deb" "$rpm"
dist/tools/nfpm package --config packaging/nfpm.yaml --packager deb --target "$deb"
dist/tools/nfpm package --config packaging/nfpm.yaml --packager rpm --target "$rpm"
echo "build.sh: wrote $deb $rpm"
