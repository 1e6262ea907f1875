//go:build linux

package interop

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Paths of the strongSwan programs and plugins the harness uses (Debian's
// layout).
const (
	CharonPath  = "/usr/lib/ipsec/charon"
	SwanctlPath = "/usr/sbin/swanctl"
	PkiPath     = "/usr/bin/pki"
	PluginDir   = "/usr/lib/ipsec/plugins"
)

// RequireEnv is the environment variable that, set to 1, turns the
// harness's skips for missing prerequisites into failures.
const RequireEnv = "GOIPSEC_REQUIRE_INTEROP"

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("interop: %s (%s=1)", msg, RequireEnv)
	}
	t.Skipf("interop: %s", msg)
}

// RequireRoot skips the test unless it runs as root (namespaces, TUN
// devices and nftables need it).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root (network namespaces, veth, TUN, nftables); run the tests as root")
	}
}

// RequireTools skips the test unless every program is on PATH.
func RequireTools(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			missing(t, fmt.Sprintf("%s not found on PATH (Debian: iproute2, nftables, iputils-ping)", p))
		}
	}
}

// RequireStrongSwan skips the test unless root and strongSwan's charon,
// swanctl, pki and the plugins the harness loads (kernel-libipsec, gcm,
// openssl, ...) are installed, as scripts/install-strongswan.sh does.
func RequireStrongSwan(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "ip", "nft", "ping")
	for _, f := range []string{CharonPath, SwanctlPath, PkiPath} {
		if _, err := os.Stat(f); err != nil {
			missing(t, fmt.Sprintf("strongSwan not installed (%s missing): run scripts/install-strongswan.sh as root", f))
		}
	}
	for _, p := range []string{"kernel-libipsec", "gcm", "openssl", "vici", "curve25519"} {
		f := PluginDir + "/libstrongswan-" + p + ".so"
		if _, err := os.Stat(f); err != nil {
			missing(t, fmt.Sprintf("strongSwan plugin %s missing (%s): run scripts/install-strongswan.sh as root", p, f))
		}
	}
}

// RequirePki skips the test unless strongSwan's pki (Debian package
// strongswan-pki) is installed; it needs no root.
func RequirePki(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(PkiPath); err != nil {
		missing(t, fmt.Sprintf("strongSwan's pki not installed (%s missing): run scripts/install-strongswan.sh as root", PkiPath))
	}
}
