#!/bin/sh
# Regenerates the strongSwan captures in this directory: charon 5.9.8 (Debian)
# as the peer of the capture program, each in its own network namespace.
# Needs root, strongswan-charon and strongswan-swanctl. Usage (from the
# module root):  sh ike/testdata/strongswan/capture.sh [capture name...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d /tmp/ikecap.XXXXXX)
ns_go=ikecapi ns_ss=ikecapr
go_addr=10.231.77.1 ss_addr=10.231.77.2

cleanup() {
	cp "$work/charon.log" /tmp/ikecap-charon.log 2>/dev/null || true # the last capture's log, for debugging
	if [ -f "$work/charon.pid" ]; then kill "$(cat "$work/charon.pid")" 2>/dev/null || true; fi
	ip netns del $ns_go 2>/dev/null || true
	ip netns del $ns_ss 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

ip netns add $ns_go
ip netns add $ns_ss
ip link add ikc0 netns $ns_go type veth peer name ikc1 netns $ns_ss
ip -n $ns_go addr add $go_addr/24 dev ikc0
ip -n $ns_ss addr add $ss_addr/24 dev ikc1
ip -n $ns_ss addr add 10.99.2.1/32 dev lo # a source address inside charon's local_ts
for n in $ns_go $ns_ss; do ip -n $n link set lo up; done
ip -n $ns_go link set ikc0 up
ip -n $ns_ss link set ikc1 up

mkdir -p "$work/run"
cat > "$work/strongswan.conf" <<CONF
charon {
	load = random nonce aes sha1 sha2 hmac gcm chapoly curve25519 gmp openssl kdf xcbc pem pkcs1 x509 pubkey socket-default vici kernel-libipsec kernel-netlink
	install_routes = no
	retransmit_tries = 2
	filelog {
		charon {
			path = $work/charon.log
			default = 1
			ike = 4
			chd = 4
			cfg = 2
			net = 2
			enc = 2
			flush_line = yes
		}
	}
	plugins {
		vici {
			socket = unix://$work/run/charon.vici
		}
		kernel-libipsec {
			load = yes
		}
	}
}
CONF
cp "$here/swanctl.conf" "$work/swanctl.conf"
export STRONGSWAN_CONF="$work/strongswan.conf"

ip netns exec $ns_ss sh -c "mount --bind $work/run /run && exec /usr/lib/ipsec/charon" >"$work/charon.stdout" 2>&1 &
echo $! > "$work/charon.pid"
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -S "$work/run/charon.vici" ] && break; sleep 0.5; done
swan() { cmd=$1; shift; ip netns exec $ns_ss swanctl "$cmd" --uri "unix://$work/run/charon.vici" "$@"; }
swan --load-all --file "$work/swanctl.conf"

(cd "$root" && go build -o "$work/capture" ./ike/testdata/strongswan/capture)
# Captures to make: all by default, or those named on the command line.
only="$*"
wanted() { [ -z "$only" ] || case " $only " in *" $1 "*) return 0;; *) return 1;; esac; }

cap() { # name, then capture program flags
	name=$1; shift
	wanted "$name" || return 0
	: > "$work/charon.log"
	ip netns exec $ns_go "$work/capture" -local $go_addr -remote $ss_addr -charonlog "$work/charon.log" -out "$here/$name.json" "$@"
	echo "captured $name"
}
# charon initiates connection to-goipsec while the capture program waits.
capinit() { # name, then capture program flags
	name=$1; shift
	wanted "$name" || return 0
	: > "$work/charon.log"
	ip netns exec $ns_go "$work/capture" -local $go_addr -remote $ss_addr -charonlog "$work/charon.log" -out "$here/$name.json" "$@" &
	lpid=$!
	sleep 0.5
	swan --initiate --ike to-goipsec --child net --timeout 5 >/dev/null 2>&1 || true
	wait $lpid
	echo "captured $name"
}
cap x25519-aes128gcm16 -ike aes128gcm16-aes256gcm16-chacha20poly1305-prfsha256-prfsha384-x25519-ecp256-modp3072 -ike aes128-sha256-prfsha256-x25519 -esp aes128gcm16-aes256gcm16 -esp aes128-sha256
cap ecp384-aes256-sha384 -ike aes256-sha384-ecp384 -esp aes256-sha256-sha384
cap modp2048-chacha20poly1305 -ike chacha20poly1305-prfsha256-ecp256-modp2048 -esp chacha20poly1305
cap ecp256-aes256gcm16-prfsha512 -ike aes256gcm16-prfsha512-ecp256 -esp aes256gcm16-esn-noesn
# charon as initiator: its IKE_SA_INIT request as strongSwan writes it...
capinit charon-initiator -listen
# ...and a whole exchange with goipsec as responder (charon floats to 4500).
capinit goipsec-responder -respond
