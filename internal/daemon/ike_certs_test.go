package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/config"
)

// TestIKECertFiles builds the IKE configuration from certificate, key and
// CA files in the forms goipsec reads, and checks that bad ones are
// refused with the configuration key that names them.
func TestIKECertFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(pub any) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "a"}, DNSNames: []string{"a.example.org"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ecDER := issue(ecKey.Public())
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	other8, _ := x509.MarshalPKCS8PrivateKey(otherKey)
	files := map[string]string{
		"ca":        write("ca.pem", pemOf("CERTIFICATE", caDER)),
		"ec-pem":    write("ec.pem", pemOf("CERTIFICATE", ecDER)),
		"ec-der":    write("ec.der", ecDER),
		"chain":     write("chain.pem", append(pemOf("CERTIFICATE", ecDER), pemOf("CERTIFICATE", caDER)...)),
		"rsa-pem":   write("rsa.pem", pemOf("CERTIFICATE", issue(rsaKey.Public()))),
		"sec1-pem":  write("ec.key", pemOf("EC PRIVATE KEY", sec1)),
		"sec1-der":  write("ec-key.der", sec1),
		"pkcs8-pem": write("ec8.key", pemOf("PRIVATE KEY", pkcs8)),
		"pkcs1-pem": write("rsa.key", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))),
		"other-key": write("other.key", pemOf("PRIVATE KEY", other8)),
		"encrypted": write("enc.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})),
		"junk":      write("junk", []byte("not a certificate\n")),
	}
	for _, tc := range []struct {
		name, certs, key, cacerts, id string
		want                          string // "" for success
	}{
		{name: "pem-sec1", certs: "ec-pem", key: "sec1-pem"},
		{name: "der-sec1der", certs: "ec-der", key: "sec1-der"},
		{name: "chain-pkcs8", certs: "chain", key: "pkcs8-pem"},
		{name: "rsa-pkcs1", certs: "rsa-pem", key: "pkcs1-pem"},
		{name: "default-id-dn", certs: "ec-pem", key: "sec1-pem", id: "-"},
		{name: "dn-id", certs: "ec-pem", key: "sec1-pem", id: "CN=a"},
		{name: "missing-cert", certs: "nope.pem", key: "sec1-pem", want: "connections.link.local.certs[0]: open "},
		{name: "junk-cert", certs: "junk", key: "sec1-pem", want: "connections.link.local.certs[0]: {dir}/junk: ike: neither PEM nor DER certificate"},
		{name: "missing-key", certs: "ec-pem", key: "nope.key", want: "connections.link.local.key: open "},
		{name: "junk-key", certs: "ec-pem", key: "junk", want: "connections.link.local.key: {dir}/junk: ike: not a PKCS#8, PKCS#1 or SEC 1 private key"},
		{name: "encrypted-key", certs: "ec-pem", key: "encrypted", want: "connections.link.local.key: {dir}/enc.key: ike: the private key (ENCRYPTED PRIVATE KEY) is encrypted"},
		{name: "wrong-key", certs: "ec-pem", key: "other-key", want: "connections.link.local.key: {dir}/other.key is not the private key of the certificate in {dir}/ec.pem"},
		{name: "junk-ca", certs: "ec-pem", key: "sec1-pem", cacerts: "junk", want: "connections.link.remote.cacerts[0]: {dir}/junk: ike: neither PEM nor DER"},
		{name: "id-not-in-cert", certs: "ec-pem", key: "sec1-pem", id: "b.example.org",
			want: `connection link: local id b.example.org is neither the subject "CN=a" nor a subjectAltName`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := func(k string) string {
				if f, ok := files[k]; ok {
					return f
				}
				return k
			}
			if tc.cacerts == "" {
				tc.cacerts = "ca"
			}
			id := ", id: a.example.org"
			switch tc.id {
			case "-":
				id = ""
			case "":
			default:
				id = ", id: \"" + tc.id + "\""
			}
			y := "connections:\n  link:\n    local_addrs: [192.0.2.1]\n    remote_addrs: [192.0.2.2]\n" +
				"    local: {auth: pubkey, certs: [" + name(tc.certs) + "], key: " + name(tc.key) + id + "}\n" +
				"    remote: {auth: pubkey, cacerts: [" + name(tc.cacerts) + "]}\n" +
				"    children:\n      net: {local_ts: [10.0.0.1/32], remote_ts: [10.0.0.2/32]}\n" +
				"tun: {mode: netstack, addresses: [10.0.0.1/24]}\n"
			// Relative names resolve against the configuration file's
			// directory.
			cfg, err := config.Parse(filepath.Join(dir, "goipsec.yaml"), []byte(y))
			if err != nil {
				t.Fatal(err)
			}
			tc.want = strings.ReplaceAll(tc.want, "{dir}", dir)
			st, err := newIKE(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("newIKE: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("newIKE: %v\nwant %q", err, tc.want)
			case tc.want == "":
				c := st.cfg.Connections[0]
				if c.LocalAuth != "pubkey" || c.LocalKey == nil || len(c.LocalCerts) == 0 || len(c.RemoteCACerts) != 1 {
					t.Errorf("connection: %+v", c)
				}
			}
		})
	}
}

// TestIKEStatsAuth checks that certificate failures are reported as the
// authentication_failed reason of goipsec_ike_handshakes_failed_total.
func TestIKEStatsAuth(t *testing.T) {
	for _, cause := range []error{ike.ErrCertExpired, ike.ErrCertUntrusted, ike.ErrIdentityMismatch, ike.ErrBadSignature} {
		err := fmt.Errorf("ike: peer: %w", &ike.AuthError{Detail: "test", Err: cause})
		if got := ike.FailureReason(err); got != ike.ReasonAuthFailed {
			t.Errorf("%v: reason %q, want %q", cause, got, ike.ReasonAuthFailed)
		}
	}
	if got := ike.FailureReason(errors.New("ike: something else")); got == ike.ReasonAuthFailed {
		t.Errorf("an unrelated error counted as %q", got)
	}
}
