package config_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/daemon"
)

const examplesDir = "../../examples"

// exampleFiles lists the YAML files under examples/.
func exampleFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(examplesDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 7 {
		t.Fatalf("%d example files, want at least the 7 documented in examples/README.md", len(files))
	}
	return files
}

// runsToday is the "# Runs today: yes|no (...)" line of an example's
// header comment.
var runsToday = regexp.MustCompile(`(?m)^# Runs today: (yes|no)\b`)

// TestExamples loads and validates every example with config.Load, checks
// that its header comment says what it demonstrates and whether it runs
// today, and holds that claim against the daemon: a file that "runs today"
// must build a daemon (static keys, IKE wiring: everything but opening
// devices and sockets); one that does not must fail only for a feature
// that is not built yet, and this test tells when that changes.
func TestExamples(t *testing.T) {
	for _, path := range exampleFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			header := leadingComment(b)
			if !strings.Contains(header, "Demonstrates:") {
				t.Errorf("the comment at the top must say what the example demonstrates (a line starting \"# Demonstrates:\")")
			}
			m := runsToday.FindStringSubmatch(header)
			if m == nil {
				t.Fatalf("the comment at the top must say \"# Runs today: yes\" or \"# Runs today: no (why)\"")
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatalf("config.Load: %v", err)
			}
			if len(cfg.Warnings) > 0 {
				t.Errorf("examples use no legacy algorithm: %v", cfg.Warnings)
			}
			// Secrets from files and the environment: stand-ins, so that
			// the daemon can be built here.
			for name, s := range cfg.Secrets {
				switch {
				case s.File != "":
					f := filepath.Join(t.TempDir(), name)
					if err := os.WriteFile(f, []byte("0sc3RhbmQtaW4ga2V5\n"), 0o600); err != nil {
						t.Fatal(err)
					}
					s.File = f
				case s.Env != "":
					t.Setenv(s.Env, "stand-in key")
				}
			}
			// Certificates, keys and CAs: stand-ins made here for the
			// configured identities.
			for _, c := range cfg.Connections {
				standInCerts(t, c)
			}
			_, err = daemon.New(cfg, zap.NewNop())
			switch {
			case m[1] == "yes" && err != nil:
				t.Errorf("says it runs today, but the daemon refuses it: %v", err)
			case m[1] == "no" && err == nil:
				t.Errorf("says it does not run today, but the daemon takes it now: update its comment (Runs today: yes) and the docs")
			case m[1] == "no" && !strings.Contains(err.Error(), "not built yet") && !strings.Contains(err.Error(), "not implemented yet"):
				t.Errorf("says it does not run today, and the daemon refuses it for another reason: %v", err)
			}
		})
	}
}

// standInCerts replaces the certificate, key and CA files of a pubkey
// connection with ones made now: a CA, and our certificate for the local
// id (a subjectAltName) issued by it.
func standInCerts(t *testing.T, c *config.Connection) {
	t.Helper()
	if c.Local.Auth == "psk" && c.Remote.Auth == "psk" {
		return
	}
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stand-in CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	if c.Remote.Auth != "psk" {
		c.Remote.CACerts = []string{write("ca.pem", "CERTIFICATE", caDER)}
	}
	if c.Local.Auth != "psk" {
		key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: c.Local.ID}, DNSNames: []string{c.Local.ID},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		c.Local.Certs = []string{write("cert.pem", "CERTIFICATE", der)}
		c.Local.Key = write("key.pem", "PRIVATE KEY", kder)
	}
}

// leadingComment returns the comment lines at the top of a file.
func leadingComment(b []byte) string {
	var out []string
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("#")) {
			break
		}
		out = append(out, string(line))
	}
	return strings.Join(out, "\n")
}

// TestExamplePairs checks that the -left and -right static-key examples
// mirror each other: addresses, traffic selectors, and each side's in SA
// the other's out.
func TestExamplePairs(t *testing.T) {
	pairs := 0
	for _, left := range exampleFiles(t) {
		if !strings.HasSuffix(left, "-left.yaml") {
			continue
		}
		right := strings.TrimSuffix(left, "-left.yaml") + "-right.yaml"
		l, err := config.Load(left)
		if err != nil {
			t.Fatal(err)
		}
		r, err := config.Load(right)
		if err != nil {
			t.Fatalf("%s has no mirror: %v", left, err)
		}
		pairs++
		for cn, lc := range l.Connections {
			rc := r.Connections[cn]
			if rc == nil {
				t.Errorf("%s: connection %s missing", right, cn)
				continue
			}
			if !same(lc.LocalAddrs, rc.RemoteAddrs) || !same(lc.RemoteAddrs, rc.LocalAddrs) || lc.LocalPort != rc.RemotePort || lc.RemotePort != rc.LocalPort {
				t.Errorf("%s/%s: addresses and ports are not swapped", filepath.Base(left), cn)
			}
			for chn, lch := range lc.Children {
				rch := rc.Children[chn]
				if rch == nil || lch.Manual == nil || rch.Manual == nil {
					t.Errorf("%s/%s.%s: no static-key mirror", filepath.Base(left), cn, chn)
					continue
				}
				lm, rm := lch.Manual, rch.Manual
				if lch.Mode != rch.Mode || !same(lch.LocalTS, rch.RemoteTS) || !same(lch.RemoteTS, rch.LocalTS) {
					t.Errorf("%s/%s.%s: mode or traffic selectors do not mirror", filepath.Base(left), cn, chn)
				}
				if lm.Proto != rm.Proto || lm.Enc != rm.Enc || lm.Integ != rm.Integ || lm.ESN != rm.ESN {
					t.Errorf("%s/%s.%s: algorithms differ", filepath.Base(left), cn, chn)
				}
				if !sameKey(lm.In, rm.Out) || !sameKey(lm.Out, rm.In) {
					t.Errorf("%s/%s.%s: in and out do not mirror (the left's in must be the right's out)", filepath.Base(left), cn, chn)
				}
			}
		}
	}
	if pairs < 2 {
		t.Errorf("%d left/right example pairs, want the tunnel and the transport one", pairs)
	}
}

func same(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func sameKey(a, b config.ManualKey) bool {
	return a.SPI == b.SPI && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.AuthKey, b.AuthKey)
}

// TestDaemonSection checks the daemon section's validation.
func TestDaemonSection(t *testing.T) {
	base := "tun: {mode: netstack, addresses: [10.0.0.1/24]}\n"
	for _, tc := range []struct{ yaml, want string }{
		{"daemon: {user: goipsec}", ""},
		{"daemon: {user: '65534', group: '65534'}", ""},
		{"daemon: {user: goipsec, group: nogroup}", ""},
		{"daemon: {user: root}", "f.yaml: daemon.user: want an unprivileged user: root keeps every privilege (remove the key to stay root)"},
		{"daemon: {user: '0'}", "daemon.user: want an unprivileged user: 0 keeps every privilege"},
		{"daemon: {user: 'no body'}", `f.yaml: daemon.user: want a user name or numeric user ID, got "no body"`},
		{"daemon: {user: -x}", `daemon.user: want a user name or numeric user ID, got "-x"`},
		{"daemon: {group: nogroup}", "f.yaml: daemon.group: needs daemon.user"},
		{"daemon: {user: goipsec, group: 'a:b'}", `daemon.group: want a group name or numeric group ID, got "a:b"`},
		{"daemon: {usr: goipsec}", "daemon.usr: unknown key (known here: user, group)"},
	} {
		c, err := config.Parse("f.yaml", []byte(base+tc.yaml+"\n"))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.yaml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want %q", tc.yaml, err, tc.want)
		case tc.want == "" && c.Daemon.User == "":
			t.Errorf("%s: user lost", tc.yaml)
		}
	}
}

// TestReadmeConfigs loads every YAML block of the README with config.Load,
// so that the configurations shown to users stay valid.
func TestReadmeConfigs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(b, -1)
	if len(blocks) < 2 {
		t.Fatalf("%d YAML blocks in the README, want at least 2 (static keys, IKEv2)", len(blocks))
	}
	for i, m := range blocks {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("readme-%d.yaml", i+1))
		if err := os.WriteFile(path, m[1], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := config.Load(path); err != nil {
			t.Errorf("README YAML block %d: %v", i+1, err)
		}
	}
}
