//go:build linux

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

var (
	// binary is the goipsec binary built for this run, in a directory
	// every user may read (the unprivileged test runs it as nobody).
	binary string
	// buildErr is why the binary could not be built; tests that need it
	// fail with it.
	buildErr error
	// runID makes this run's namespace and interface names unique.
	runID string
)

func TestMain(m *testing.M) {
	runID = randHex(2)
	var dir string
	if os.Geteuid() == 0 {
		dir, buildErr = build()
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// build compiles cmd/goipsec into a fresh world-readable directory, with
// -race when the tests run with it (so that races in the daemon under real
// traffic show up in its log).
func build() (string, error) {
	dir, err := os.MkdirTemp("", "goipsec-e2e-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return dir, err
	}
	bin := filepath.Join(dir, "goipsec")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/goipsec/goipsec/cmd/goipsec")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	cmd := exec.Command(gobin, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return dir, fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	binary = bin
	return dir, os.Chmod(bin, 0o755)
}

// needRoot skips the test unless it runs as root with the tools it names
// on PATH, and fails it if the binary did not build.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: end-to-end tests need root (network namespaces, TUN, capture); run go test as root")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not found on PATH (Debian: apt-get install iproute2 iputils-ping tshark nftables conntrack util-linux)", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: no /dev/net/tun: %v", err)
	}
	if buildErr != nil {
		t.Fatalf("building goipsec: %v", buildErr)
	}
	if binary == "" {
		t.Fatal("goipsec binary not built")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}
