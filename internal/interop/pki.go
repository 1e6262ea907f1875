//go:build linux

package interop

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// KeyType is a key type pki --gen makes.
type KeyType string

// The key types of [CAOptions] and [CertOptions].
const (
	RSA     KeyType = "rsa"
	ECDSA   KeyType = "ecdsa"
	Ed25519 KeyType = "ed25519"
)

// defaultSize is pki's key size for a type: RSA 2048 bits, ECDSA P-256.
func (k KeyType) defaultSize() int {
	switch k {
	case RSA:
		return 2048
	case ECDSA:
		return 256
	}
	return 0
}

// CAOptions describe a CA made by [NewCA].
type CAOptions struct {
	// KeyType is the CA key's type (default ECDSA).
	KeyType KeyType
	// Size is the key size in bits (RSA 2048..., ECDSA 256, 384, 521;
	// 0: RSA 2048, ECDSA 256).
	Size int
	// DN is the CA's distinguished name (default "C=CH, O=goipsec test,
	// CN=goipsec test CA").
	DN string
	// LifetimeDays is the validity (default 30 days).
	LifetimeDays int
}

// CA is a certificate authority made with strongSwan's pki: a self-signed
// CA certificate and its key, PEM files in a test directory.
type CA struct {
	// Dir holds the CA's files and those of the certificates it issues.
	Dir string
	// CertFile is the CA certificate (PEM); KeyFile its private key (PEM,
	// as pki writes it: PKCS#1 for RSA, SEC 1 for ECDSA, PKCS#8 for
	// Ed25519).
	CertFile, KeyFile string
	// DN is the CA's subject.
	DN string
	// KeyType is the CA key's type.
	KeyType KeyType
}

// Cert is an end-entity certificate issued by a [CA].
type Cert struct {
	// Name is the name the test gave it (also its files' base name).
	Name string
	// CertFile is the certificate (PEM); KeyFile its private key as pki
	// writes it; KeyPKCS8File the same key as PKCS#8 PEM ("PRIVATE KEY").
	CertFile, KeyFile, KeyPKCS8File string
	// CAFile is the issuing CA's certificate (PEM).
	CAFile string
	// DN is the subject, SANs the subjectAltNames.
	DN   string
	SANs []string
	// KeyType is the key's type.
	KeyType KeyType
}

// CertOptions describe a certificate issued by [CA.Issue].
type CertOptions struct {
	// KeyType is the key's type (default ECDSA).
	KeyType KeyType
	// Size is the key size in bits (0: RSA 2048, ECDSA 256).
	Size int
	// DN is the subject (default "C=CH, O=goipsec test, CN=" + the first
	// SAN, or the name).
	DN string
	// SANs are subjectAltNames: FQDNs, IP addresses and e-mail addresses
	// (pki tells them apart).
	SANs []string
	// Flags are pki --flag values: serverAuth, clientAuth, ikeIntermediate,
	// ... (none by default: no extendedKeyUsage extension).
	Flags []string
	// LifetimeDays is the validity (default 30 days).
	LifetimeDays int
}

// pki runs strongSwan's pki with args and returns its output.
func pki(args ...string) ([]byte, error) {
	out, err := run(append([]string{PkiPath}, args...)...)
	return []byte(out), err
}

// NewCA makes a CA with pki --gen and pki --self in a directory of the
// test's.
func NewCA(t testing.TB, opt CAOptions) *CA {
	t.Helper()
	RequirePki(t)
	if opt.KeyType == "" {
		opt.KeyType = ECDSA
	}
	if opt.DN == "" {
		opt.DN = "C=CH, O=goipsec test, CN=goipsec test CA"
	}
	if opt.LifetimeDays == 0 {
		opt.LifetimeDays = 30
	}
	ca := &CA{Dir: t.TempDir(), DN: opt.DN, KeyType: opt.KeyType}
	ca.KeyFile = filepath.Join(ca.Dir, "ca.key.pem")
	ca.CertFile = filepath.Join(ca.Dir, "ca.cert.pem")
	genKey(t, ca.KeyFile, opt.KeyType, opt.Size)
	out, err := pki("--self", "--ca", "--in", ca.KeyFile, "--type", string(opt.KeyType),
		"--dn", opt.DN, "--lifetime", strconv.Itoa(opt.LifetimeDays), "--outform", "pem")
	if err != nil {
		t.Fatalf("pki --self: %v", err)
	}
	writeFile(t, ca.CertFile, out)
	return ca
}

func genKey(t testing.TB, file string, kt KeyType, size int) {
	t.Helper()
	args := []string{"--gen", "--type", string(kt), "--outform", "pem"}
	if size == 0 {
		size = kt.defaultSize()
	}
	if size != 0 {
		args = append(args, "--size", strconv.Itoa(size))
	}
	out, err := pki(args...)
	if err != nil {
		t.Fatalf("pki --gen: %v", err)
	}
	writeFile(t, file, out)
}

func writeFile(t testing.TB, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// IssueCA makes an intermediate CA signed by ca (pki --gen, pki --issue
// --ca): its certificates chain through it to ca.
func (ca *CA) IssueCA(t testing.TB, name string, opt CAOptions) *CA {
	t.Helper()
	if opt.KeyType == "" {
		opt.KeyType = ECDSA
	}
	if opt.DN == "" {
		opt.DN = "C=CH, O=goipsec test, CN=" + name
	}
	if opt.LifetimeDays == 0 {
		opt.LifetimeDays = 30
	}
	sub := &CA{Dir: ca.Dir, DN: opt.DN, KeyType: opt.KeyType,
		KeyFile: filepath.Join(ca.Dir, name+".key.pem"), CertFile: filepath.Join(ca.Dir, name+".cert.pem")}
	genKey(t, sub.KeyFile, opt.KeyType, opt.Size)
	out, err := pki("--issue", "--ca", "--in", sub.KeyFile, "--type", "priv", "--cacert", ca.CertFile, "--cakey", ca.KeyFile,
		"--dn", opt.DN, "--lifetime", strconv.Itoa(opt.LifetimeDays), "--outform", "pem")
	if err != nil {
		t.Fatalf("pki --issue --ca: %v", err)
	}
	writeFile(t, sub.CertFile, out)
	return sub
}

// Issue makes a key and a certificate for it signed by the CA (pki --gen,
// pki --issue), and the key as PKCS#8 too. name names the files.
func (ca *CA) Issue(t testing.TB, name string, opt CertOptions) *Cert {
	t.Helper()
	if opt.KeyType == "" {
		opt.KeyType = ECDSA
	}
	if opt.DN == "" {
		cn := name
		if len(opt.SANs) > 0 {
			cn = opt.SANs[0]
		}
		opt.DN = "C=CH, O=goipsec test, CN=" + cn
	}
	if opt.LifetimeDays == 0 {
		opt.LifetimeDays = 30
	}
	c := &Cert{Name: name, CAFile: ca.CertFile, DN: opt.DN, SANs: opt.SANs, KeyType: opt.KeyType,
		CertFile:     filepath.Join(ca.Dir, name+".cert.pem"),
		KeyFile:      filepath.Join(ca.Dir, name+".key.pem"),
		KeyPKCS8File: filepath.Join(ca.Dir, name+".pkcs8.pem"),
	}
	genKey(t, c.KeyFile, opt.KeyType, opt.Size)
	args := []string{"--issue", "--in", c.KeyFile, "--type", "priv",
		"--cacert", ca.CertFile, "--cakey", ca.KeyFile,
		"--dn", opt.DN, "--lifetime", strconv.Itoa(opt.LifetimeDays), "--outform", "pem"}
	for _, san := range opt.SANs {
		args = append(args, "--san", san)
	}
	for _, f := range opt.Flags {
		args = append(args, "--flag", f)
	}
	out, err := pki(args...)
	if err != nil {
		t.Fatalf("pki --issue: %v", err)
	}
	writeFile(t, c.CertFile, out)
	key, err := c.Signer()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, c.KeyPKCS8File, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	return c
}

// Certificate parses the CA certificate.
func (ca *CA) Certificate() (*x509.Certificate, error) { return readCert(ca.CertFile) }

// Certificate parses the certificate.
func (c *Cert) Certificate() (*x509.Certificate, error) { return readCert(c.CertFile) }

// Signer parses the private key (PKCS#1, SEC 1 or PKCS#8 PEM).
func (c *Cert) Signer() (crypto.Signer, error) { return readKey(c.KeyFile) }

func readCert(file string) (*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func readKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", file)
	}
	var key any
	switch blk.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("%s: unknown PEM type %q", file, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T is no crypto.Signer", file, key)
	}
	return s, nil
}
