#!/usr/bin/env bash
# Installs strongSwan 5.9.x from Debian for the IKEv2 interop tests
# (internal/interop): charon, swanctl, kernel-libipsec (libcharon-extra-plugins),
# the standard and extra crypto plugins and pki. Idempotent: installs only what
# is missing.
# libstrongswan-standard-plugins is listed explicitly: it holds aesni, gcm and
# openssl (AES-GCM, ECP groups, ECDSA) and is only a Recommends of libstrongswan,
# so --no-install-recommends would silently leave charon without AES-GCM.
# No service is started: a /usr/sbin/policy-rc.d that exits 101 keeps the
# packages' postinst scripts from starting charon/starter in this namespace.
# Needs root and apt-get; otherwise it says so and exits 0 (the tests skip).
set -euo pipefail

PKGS=(strongswan strongswan-charon strongswan-swanctl libcharon-extra-plugins
	libstrongswan-standard-plugins libstrongswan-extra-plugins strongswan-pki)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-strongswan: all installed: ${PKGS[*]} ($(dpkg-query -W -f='${Version}' strongswan-charon))"
	exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "install-strongswan: not root or no apt-get: not installing ${missing[*]}; the interop tests will skip" >&2
	exit 0
fi

if [ ! -e /usr/sbin/policy-rc.d ] || ! grep -q 'exit 101' /usr/sbin/policy-rc.d; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	echo "install-strongswan: wrote /usr/sbin/policy-rc.d (exit 101): no service will start"
fi
chmod +x /usr/sbin/policy-rc.d

export DEBIAN_FRONTEND=noninteractive
echo "install-strongswan: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Belt and braces: should any service have been started anyway, it would hold
# /run/charon.pid and UDP 500/4500 in the root namespace.
for unit in strongswan strongswan-starter ipsec; do
	if command -v systemctl >/dev/null && systemctl is-active --quiet "$unit" 2>/dev/null; then
		systemctl stop "$unit" && echo "install-strongswan: stopped service $unit"
	fi
done

echo "install-strongswan: installed ${missing[*]} ($(dpkg-query -W -f='${Version}' strongswan-charon))"
for f in /usr/lib/ipsec/charon /usr/sbin/swanctl /usr/bin/pki \
	/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so /usr/lib/ipsec/plugins/libstrongswan-gcm.so; do
	[ -e "$f" ] || { echo "install-strongswan: $f is missing after install" >&2; exit 1; }
done
