// Package e2e holds the end-to-end tests of goipsec: they build the goipsec
// binary and run it as real daemons, in network namespaces joined by veth
// pairs (and a NAT router), or unprivileged on loopback, and check the
// traffic, the wire (captured and decrypted with tshark) and fail-closed
// behaviour. The tests need root and iproute2, iputils-ping, tshark
// (dumpcap), nftables, conntrack and setpriv; without them they skip.
// TestIKEStrongSwanKernelTUN also needs strongSwan (internal/interop's
// prerequisites: it skips without, fails with GOIPSEC_REQUIRE_INTEROP=1).
//
// Run them with
//
//	go test -v ./internal/e2e/
package e2e
