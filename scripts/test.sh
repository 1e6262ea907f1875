#!/usr/bin/env bash
# The whole test suite, as CI runs it. On a fresh Debian 12 machine, run as
# root, it first installs the tools the cross-checks need (scapy, tshark, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(python3-scapy python3-cryptography tshark nftables iproute2 iputils-ping conntrack iperf3)

install_deps() {
	local missing=()
	for p in "${PKGS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
		echo "test.sh: not root or no apt-get: not installing ${missing[*]}; tests that need them will skip" >&2
		return 0
	fi
	echo "test.sh: installing ${missing[*]}" >&2
	# Keep package postinst scripts from starting services in this namespace.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
	echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_deps
bash scripts/install-strongswan.sh

# As root (CI), the interop tests must not skip for lack of strongSwan.
if [ "$(id -u)" -eq 0 ]; then export GOIPSEC_REQUIRE_INTEROP=1; fi

# Cross-checks call Debian's python (scapy lives there), whatever python3 is on PATH.
export GOIPSEC_PYTHON=${GOIPSEC_PYTHON:-/usr/bin/python3}

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; exit 1; fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

# The portable code paths that the vector AES-GCM replaces on this CPU.
echo "== go test -tags purego (crypto packages)"
go test -tags purego -count=1 ./internal/aesgcm/ ./internal/xform/ ./esp/ ./ah/

echo "== cross-builds"
for t in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 freebsd/amd64; do
	GOOS=${t%/*} GOARCH=${t#*/} go build ./... || { echo "build failed for $t"; exit 1; }
done
# The tests too must compile off Linux (Linux-only ones carry a build tag).
GOOS=darwin GOARCH=arm64 go vet ./... || { echo "go vet failed for darwin/arm64"; exit 1; }

echo "== fuzz smoke (seed corpora run above; a few seconds of new inputs each)"
fuzz_secs=${FUZZ_SECONDS:-5}
while read -r pkg target; do
	if ! out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "${fuzz_secs}s" "$pkg" 2>&1); then
		echo "$out" | tail -60
		echo "FAIL $pkg $target"
		exit 1
	fi
	echo "ok  $pkg $target"
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	for t in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do echo "./$(dirname "${f#./}") $t"; done
done)

echo "== all tests passed"
