// Package interop is the test harness for running goipsec against real
// IPsec peers (strongSwan 5.9.x from Debian) on one Linux machine. It is a
// test-support package: its exported helpers are called from the _test.go
// files of other packages, and its own tests validate it with strongSwan
// talking to strongSwan.
//
// What it provides:
//
//   - Network namespaces ([Lab], [Netns]): uniquely named namespaces, veth
//     links, an nftables masquerading router ([NewTopology] with
//     TopologyOptions.NAT), commands and Go code run inside a namespace
//     ([Netns.Do]: sockets created there stay there), background processes
//     in their own process group ([Proc]). Everything is torn down by
//     t.Cleanup, also when the test fails; namespaces left by a test binary
//     that was killed are swept by the next [NewLab].
//   - strongSwan instances ([StartStrongSwan]): one charon per namespace with
//     its own /run, a self-contained strongswan.conf (kernel-libipsec, since
//     these kernels have no ESP transform), a swanctl.conf rendered from Go
//     structs ([SwanctlConfig]), initiate/terminate/list-sas through swanctl
//     and its vici socket, with the SAs parsed into [IKESA] and [ChildSA].
//   - Key material: charon logs its derived keys at log level 4 (ike=4,
//     chd=4); [ParseKeyLog] turns the log into [IKEKeys] (SKEYSEED, SK_d,
//     SK_ai/ar, SK_ei/er, SK_pi/pr, IKE SPIs, role) and [ChildKeys] (ESP
//     encryption and integrity keys of both directions, SPIs, role) for
//     comparison with goipsec's own.
//   - Certificates made with strongSwan's pki ([NewCA], [CA.Issue]): RSA,
//     ECDSA and Ed25519, with FQDN/IP/e-mail SANs, as PEM files usable by
//     both strongSwan and crypto/x509 (the key also as PKCS#8).
//
// The tests that need root, iproute2, nftables and strongSwan skip with a
// message when those are missing ([RequireRoot], [RequireStrongSwan]);
// scripts/install-strongswan.sh installs strongSwan. Setting
// GOIPSEC_REQUIRE_INTEROP=1 turns those skips into failures (for CI), and
// GOIPSEC_INTEROP_KEEP=1 keeps the charon directories (configs, logs) of
// failed tests.
//
// Run its own tests with
//
//	go test -v ./internal/interop/
package interop
