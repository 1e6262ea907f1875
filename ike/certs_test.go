package ike

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/message"
)

// A small PKI made with crypto/x509 for the in-memory tests: valid around
// the fake clock's 2026-01-01.

var (
	validFrom  = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	validUntil = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

// keyCache holds one key per name, so that the tests make few RSA keys.
var keyCache sync.Map

func testKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	if k, ok := keyCache.Load(name); ok {
		return k.(crypto.Signer)
	}
	var k crypto.Signer
	var err error
	switch {
	case strings.HasPrefix(name, "rsa"):
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case strings.HasPrefix(name, "p256"):
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case strings.HasPrefix(name, "p384"):
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case strings.HasPrefix(name, "p521"):
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case strings.HasPrefix(name, "ed25519"):
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key %q", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := keyCache.LoadOrStore(name, k)
	return k2.(crypto.Signer)
}

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var serial int64 = 1000

// newTestCA makes a CA certificate signed by parent (self-signed if nil).
func newTestCA(t testing.TB, cn string, key crypto.Signer, parent *testCA) *testCA {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"goipsec test"}, CommonName: cn},
		NotBefore: validFrom, NotAfter: validUntil, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	serial++
	ca := &testCA{key: key}
	signer, issuer := key, tmpl
	if parent != nil {
		signer, issuer = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes an end-entity certificate for key with subject CN cn and the
// SANs (FQDNs, IP addresses, e-mail addresses), valid from..until.
func (ca *testCA) issue(t testing.TB, key crypto.Signer, cn string, sans []string, from, until time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"goipsec test"}, CommonName: cn},
		NotBefore: from, NotAfter: until, KeyUsage: x509.KeyUsageDigitalSignature}
	serial++
	for _, s := range sans {
		switch ip := net.ParseIP(s); {
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		case strings.Contains(s, "@"):
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, s)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// certSide returns a tweak that authenticates a side with chain and key and
// trusts cas for the peer.
func certSide(chain []*x509.Certificate, key crypto.Signer, cas ...*x509.Certificate) func(*Connection) {
	return func(c *Connection) {
		c.LocalAuth, c.RemoteAuth = AuthPubkey, AuthPubkey
		c.LocalCerts, c.LocalKey, c.RemoteCACerts = chain, key, cas
	}
}

func then(fs ...func(*Connection)) func(*Connection) {
	return func(c *Connection) {
		for _, f := range fs {
			f(c)
		}
	}
}

// TestCertAuth establishes IKE SAs between two goipsec Managers with
// certificates of each key type and signature scheme, both ends
// authenticating with a certificate (so each type is used in both roles),
// and checks the scheme each end verified.
func TestCertAuth(t *testing.T) {
	root := newTestCA(t, "root", testKey(t, "p256-root"), nil)
	inter := newTestCA(t, "intermediate", testKey(t, "rsa-inter"), root)
	pss := func(c *Connection) { c.LocalAuth, c.RemoteAuth = AuthRSAPSS, AuthRSAPSS }
	classic := func(c *Connection) { c.ClassicSignatures = true }
	for _, tc := range []struct {
		name           string
		keyA, keyB     string
		sansA, sansB   []string
		idA, peerA     string // a's id and the id a expects of b
		idB, peerB     string
		tweakA, tweakB func(*Connection)
		viaInter       bool // a's certificate is issued by the intermediate
		wantA, wantB   string
	}{
		{name: "rsa-pkcs1", keyA: "rsa-a", keyB: "rsa-b", wantA: "SHA-256 (RFC 7427)", wantB: "SHA-256 (RFC 7427)"},
		{name: "rsa-pss", keyA: "rsa-a", keyB: "rsa-b", tweakA: pss, tweakB: pss, wantA: "RSASSA-PSS SHA-256 (RFC 7427)", wantB: "RSASSA-PSS SHA-256 (RFC 7427)"},
		{name: "ecdsa-p256", keyA: "p256-a", keyB: "p256-b", wantA: "SHA-256 (RFC 7427)", wantB: "SHA-256 (RFC 7427)"},
		{name: "ecdsa-p384", keyA: "p384-a", keyB: "p384-b", wantA: "SHA-384 (RFC 7427)", wantB: "SHA-384 (RFC 7427)"},
		{name: "ecdsa-p521", keyA: "p521-a", keyB: "p521-b", wantA: "SHA-512 (RFC 7427)", wantB: "SHA-512 (RFC 7427)"},
		{name: "ed25519", keyA: "ed25519-a", keyB: "ed25519-b", wantA: "Identity (RFC 7427)", wantB: "Identity (RFC 7427)"},
		{name: "mixed-rsa-ed25519", keyA: "rsa-a", keyB: "ed25519-b", wantA: "Identity (RFC 7427)", wantB: "SHA-256 (RFC 7427)"},
		{name: "classic-rsa", keyA: "rsa-a", keyB: "rsa-b", tweakA: classic, tweakB: classic, wantA: "RSA PKCS#1 v1.5 SHA-1 (method 1)", wantB: "RSA PKCS#1 v1.5 SHA-1 (method 1)"},
		{name: "classic-ecdsa-p384-p256", keyA: "p384-a", keyB: "p256-b", tweakA: classic, tweakB: classic, wantA: "ECDSA (method 9)", wantB: "ECDSA (method 10)"},
		{name: "dn-identities", keyA: "p256-a", keyB: "p256-b", idA: "%any", peerA: "C=CH, O=goipsec test, CN=b", idB: "%any", peerB: "c=ch, o=GOIPSEC TEST, cn=a",
			wantA: "SHA-256 (RFC 7427)", wantB: "SHA-256 (RFC 7427)"},
		{name: "any-remote-ip-email", keyA: "p256-a", keyB: "p256-b", sansA: []string{"192.0.2.1"}, sansB: []string{"b@example.org"},
			idA: "192.0.2.1", peerA: "%any", idB: "b@example.org", peerB: "%any", wantA: "SHA-256 (RFC 7427)", wantB: "SHA-256 (RFC 7427)"},
		{name: "wildcard-remote-ids", keyA: "p256-a", keyB: "p256-b", idA: "%any", peerA: "*.example.org", idB: "b.example.org", peerB: "C=CH, O=goipsec test, CN=*",
			wantA: "SHA-256 (RFC 7427)", wantB: "SHA-256 (RFC 7427)"},
		{name: "intermediate-chain", keyA: "p384-a", keyB: "rsa-b", viaInter: true, wantA: "SHA-256 (RFC 7427)", wantB: "SHA-384 (RFC 7427)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ka, kb := testKey(t, tc.keyA), testKey(t, tc.keyB)
			if tc.sansA == nil {
				tc.sansA = []string{"a.example.org"}
			}
			if tc.sansB == nil {
				tc.sansB = []string{"b.example.org"}
			}
			issuerA := root
			if tc.viaInter {
				issuerA = inter
			}
			chainA := []*x509.Certificate{issuerA.issue(t, ka, "a", tc.sansA, validFrom, validUntil)}
			if tc.viaInter {
				chainA = append(chainA, inter.cert)
			}
			chainB := []*x509.Certificate{root.issue(t, kb, "b", tc.sansB, validFrom, validUntil)}
			sa := side{id: tc.idA, peerID: tc.peerA, tweak: then(certSide(chainA, ka, root.cert), orNop(tc.tweakA))}
			sb := side{id: tc.idB, peerID: tc.peerB, tweak: then(certSide(chainB, kb, root.cert), orNop(tc.tweakB))}
			if tc.idA == "" {
				sa.id, sa.peerID, sb.id, sb.peerID = "a.example.org", "b.example.org", "b.example.org", "a.example.org"
			}
			p := newPair(t, sa, sb, Options{})
			if err := p.initiate("conn"); err != nil {
				t.Fatalf("initiate: %v\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
			}
			p.established(t)
			if !p.a.logged("peer authenticated with its certificate "+"") || !p.a.logged(tc.wantA) {
				t.Errorf("a did not verify b with %s:\n%s", tc.wantA, p.a.dumpLogs())
			}
			if !p.b.logged(tc.wantB) {
				t.Errorf("b did not verify a with %s:\n%s", tc.wantB, p.b.dumpLogs())
			}
			// The identities: as configured, or the certificates' subjects.
			sas := p.b.m.IKESAs()
			wantIDA := tc.idA
			if wantIDA == "" {
				wantIDA = "a.example.org"
			}
			if wantIDA == "%any" {
				wantIDA = "C=CH, O=goipsec test, CN=a"
			}
			if len(sas) != 1 || sas[0].RemoteID != wantIDA {
				t.Errorf("b's IKE SAs: %+v, want remote id %s", sas, wantIDA)
			}
		})
	}
}

func orNop(f func(*Connection)) func(*Connection) {
	if f == nil {
		return func(*Connection) {}
	}
	return f
}

// TestCertAuthFailures runs the failures of certificate authentication,
// refused by the responder (the initiator's certificate) or by the
// initiator (the responder's), and checks the error, the logs, that both
// ends keep nothing and that the failure is counted.
func TestCertAuthFailures(t *testing.T) {
	root := newTestCA(t, "root", testKey(t, "p256-root"), nil)
	other := newTestCA(t, "other root", testKey(t, "p256-other"), nil)
	inter := newTestCA(t, "intermediate", testKey(t, "p256-inter"), root)
	ka, kb := testKey(t, "p256-a"), testKey(t, "p256-b")
	good := func(k crypto.Signer, san string) []*x509.Certificate {
		return []*x509.Certificate{root.issue(t, k, san, []string{san}, validFrom, validUntil)}
	}
	expired := func(k crypto.Signer, san string) []*x509.Certificate {
		return []*x509.Certificate{root.issue(t, k, san, []string{san}, validFrom, time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC))}
	}
	otherKey := testKey(t, "p256-wrong")
	// After prepare (which checks key and certificate): a false identity
	// or a key that is not the certificate's.
	setID := func(p *peer, id string) {
		i, err := ParseIdentity(id)
		if err != nil {
			t.Fatal(err)
		}
		p.m.cfg.Connections[0].localID = identity{id: i}
	}
	setKey := func(p *peer) { p.m.cfg.Connections[0].LocalKey = otherKey }
	for _, tc := range []struct {
		name          string
		chainA        []*x509.Certificate
		chainB        []*x509.Certificate
		casA, casB    []*x509.Certificate // what a and b trust
		peerA, peerB  string
		after         func(p *pair)
		tweakA        func(*Connection)
		byInitiator   bool  // the initiator refuses the responder
		want          error // the cause, in the refusing end's error
		wantLog       string
		wantInitiator string // in the initiator's error when the responder refuses
	}{
		{name: "untrusted-ca-responder-refuses", chainA: good(ka, "a.example.org"), casB: []*x509.Certificate{other.cert},
			want: ErrCertUntrusted, wantLog: "does not chain to a configured CA"},
		{name: "untrusted-ca-initiator-refuses", chainB: good(kb, "b.example.org"), casA: []*x509.Certificate{other.cert},
			byInitiator: true, want: ErrCertUntrusted, wantLog: "does not chain to a configured CA"},
		{name: "expired-responder-refuses", chainA: expired(ka, "a.example.org"), want: ErrCertExpired, wantLog: "expired"},
		{name: "expired-initiator-refuses", chainB: expired(kb, "b.example.org"), byInitiator: true, want: ErrCertExpired, wantLog: "expired"},
		{name: "missing-intermediate", chainA: []*x509.Certificate{inter.issue(t, ka, "a", []string{"a.example.org"}, validFrom, validUntil)},
			want: ErrCertUntrusted, wantLog: "does not chain to a configured CA"},
		{name: "identity-not-in-cert-responder-refuses", peerB: "%any", after: func(p *pair) { setID(p.a, "c.example.org") },
			want: ErrIdentityMismatch, wantLog: "c.example.org (ID_FQDN) is neither the subject"},
		{name: "identity-not-in-cert-initiator-refuses", peerA: "%any", after: func(p *pair) { setID(p.b, "c.example.org") },
			byInitiator: true, want: ErrIdentityMismatch, wantLog: "c.example.org (ID_FQDN) is neither the subject"},
		{name: "wrong-key-responder-refuses", after: func(p *pair) { setKey(p.a) }, want: ErrBadSignature, wantLog: "signature does not verify"},
		{name: "wrong-key-initiator-refuses", after: func(p *pair) { setKey(p.b) }, byInitiator: true, want: ErrBadSignature, wantLog: "signature does not verify"},
		{name: "psk-where-cert-wanted", tweakA: func(c *Connection) { c.LocalAuth, c.LocalCerts, c.LocalKey = AuthPSK, nil, nil },
			wantLog: "authenticates with a pre-shared key, we want a certificate"},
		{name: "pss-required", tweakA: func(c *Connection) {
			c.ClassicSignatures = true
			c.LocalCerts, c.LocalKey = good(testKey(t, "rsa-a"), "a.example.org"), testKey(t, "rsa-a")
		},
			wantLog: "remote.auth rsa/pss wants RSASSA-PSS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.chainA == nil {
				tc.chainA = good(ka, "a.example.org")
			}
			if tc.chainB == nil {
				tc.chainB = good(kb, "b.example.org")
			}
			if tc.casA == nil {
				tc.casA = []*x509.Certificate{root.cert}
			}
			if tc.casB == nil {
				tc.casB = []*x509.Certificate{root.cert}
			}
			if tc.peerA == "" {
				tc.peerA = "b.example.org"
			}
			if tc.peerB == "" {
				tc.peerB = "a.example.org"
			}
			tweakB := certSide(tc.chainB, kb, tc.casB...)
			if strings.HasPrefix(tc.name, "pss") {
				tweakB = then(tweakB, func(c *Connection) { c.RemoteAuth = AuthRSAPSS })
			}
			p := newPair(t, side{id: "a.example.org", peerID: tc.peerA, tweak: then(certSide(tc.chainA, ka, tc.casA...), orNop(tc.tweakA))},
				side{id: "b.example.org", peerID: tc.peerB, tweak: tweakB}, Options{})
			if tc.after != nil {
				tc.after(p)
			}
			err := p.initiate("conn")
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("initiate: %v, want AuthError\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
			}
			refuser, refused := p.b, p.a
			if tc.byInitiator {
				refuser, refused = p.a, p.b
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("initiator's error %v does not wrap %v", err, tc.want)
				}
			}
			if !refuser.logged(tc.wantLog) || !refuser.logged("AUTHENTICATION_FAILED") {
				t.Errorf("the refusing end does not log %q and AUTHENTICATION_FAILED:\n%s", tc.wantLog, refuser.dumpLogs())
			}
			if tc.want != nil && !refuser.logged(tc.want.Error()) {
				t.Errorf("the refusing end does not log the cause %q", tc.want)
			}
			if !refused.logged("AUTHENTICATION_FAILED") {
				t.Errorf("the refused end does not learn it:\n%s", refused.dumpLogs())
			}
			if st := refuser.m.Stats(); st.Failed != 1 || st.AuthFailed != 1 || st.Established != 0 && !tc.byInitiator {
				t.Errorf("refusing end's counters: %+v", st)
			}
			if st := refused.m.Stats(); !tc.byInitiator && (st.Failed != 1 || st.AuthFailed != 1) {
				t.Errorf("refused initiator's counters: %+v", st)
			}
			p.a.noState(t, "initiator")
			p.b.noState(t, "responder")
		})
	}
}

// TestCertReqAndHashes checks IKE_SA_INIT: both ends announce their
// signature hashes (RFC 7427), and the responder asks for certificates of
// its CA by the SHA-1 hash of the CA's public key.
func TestCertReqAndHashes(t *testing.T) {
	root := newTestCA(t, "root", testKey(t, "p256-root"), nil)
	other := newTestCA(t, "other root", testKey(t, "rsa-other"), nil)
	ka, kb := testKey(t, "p256-a"), testKey(t, "p256-b")
	p := newPair(t,
		side{id: "a.example.org", peerID: "b.example.org", tweak: certSide([]*x509.Certificate{root.issue(t, ka, "a", []string{"a.example.org"}, validFrom, validUntil)}, ka, root.cert)},
		side{id: "b.example.org", peerID: "a.example.org", tweak: certSide([]*x509.Certificate{root.issue(t, kb, "b", []string{"b.example.org"}, validFrom, validUntil)}, kb, root.cert, other.cert)},
		Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	p.net.mu.Lock()
	log := append([]packet(nil), p.net.log...)
	p.net.mu.Unlock()
	var req, resp *message.Message
	for _, pk := range log {
		m, err := message.ParseMessage(pk.data)
		if err != nil || m.Exchange != message.IKESAInit {
			continue
		}
		if m.IsResponse() {
			resp = m
		} else {
			req = m
		}
	}
	if req == nil || resp == nil {
		t.Fatal("no IKE_SA_INIT exchange seen")
	}
	for _, m := range []*message.Message{req, resp} {
		n := m.Notify(message.SignatureHashAlgorithms)
		if n == nil {
			t.Fatal("IKE_SA_INIT without SIGNATURE_HASH_ALGORITHMS")
		}
		hs, err := n.HashAlgorithms()
		if err != nil || len(hs) != 4 || hs[0] != message.HashSHA2_256 || hs[3] != message.HashIdentity {
			t.Errorf("announced hashes %v, %v", hs, err)
		}
	}
	cr, _ := resp.Get(message.PayloadCERTREQ).(*message.CertReq)
	if cr == nil || cr.Encoding != message.CertX509Sig {
		t.Fatalf("IKE_SA_INIT response CERTREQ: %+v", cr)
	}
	hashes, ok := cr.KeyHashes()
	if !ok || len(hashes) != 2 {
		t.Fatalf("CERTREQ authorities: %x", cr.Authorities)
	}
	for i, ca := range []*x509.Certificate{root.cert, other.cert} {
		spki, err := x509.MarshalPKIXPublicKey(ca.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		want := sha1.Sum(spki)
		if string(hashes[i]) != string(want[:]) {
			t.Errorf("CERTREQ hash %d: %x, want SHA-1 of the SubjectPublicKeyInfo %x", i, hashes[i], want)
		}
	}
	if req.Get(message.PayloadCERTREQ) != nil {
		t.Error("the initiator sends CERTREQ in IKE_AUTH, not IKE_SA_INIT")
	}
}

// TestParseKeysAndCerts reads keys in every encoding goipsec takes and
// certificates in PEM and DER.
func TestParseKeysAndCerts(t *testing.T) {
	root := newTestCA(t, "root", testKey(t, "p256-root"), nil)
	for _, name := range []string{"rsa-a", "p256-a", "p384-a", "ed25519-a"} {
		k := testKey(t, name)
		pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		forms := map[string][]byte{"pkcs8-der": pkcs8, "pkcs8-pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			der := x509.MarshalPKCS1PrivateKey(k)
			forms["pkcs1-der"], forms["pkcs1-pem"] = der, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der})
		case *ecdsa.PrivateKey:
			der, _ := x509.MarshalECPrivateKey(k)
			forms["sec1-der"], forms["sec1-pem"] = der, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		}
		cert := root.issue(t, k, name, nil, validFrom, validUntil)
		for form, b := range forms {
			got, err := ParsePrivateKey(b)
			if err != nil || !KeyMatches(got, cert) {
				t.Errorf("%s %s: %v", name, form, err)
			}
		}
		if KeyMatches(testKey(t, "p256-b"), cert) {
			t.Errorf("%s: another key matches the certificate", name)
		}
	}
	for _, bad := range [][]byte{nil, []byte("junk"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})} {
		if _, err := ParsePrivateKey(bad); err == nil {
			t.Errorf("ParsePrivateKey(%q) succeeded", bad)
		}
	}
	inter := newTestCA(t, "inter", testKey(t, "p256-inter"), root)
	leaf := inter.issue(t, testKey(t, "p256-a"), "leaf", nil, validFrom, validUntil)
	chainPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.cert.Raw})...)
	certs, err := ParseCertificates(chainPEM)
	if err != nil || len(certs) != 2 || !certs[0].Equal(leaf) || !certs[1].Equal(inter.cert) {
		t.Errorf("PEM chain: %d certificates, %v", len(certs), err)
	}
	if certs, err := ParseCertificates(leaf.Raw); err != nil || len(certs) != 1 || !certs[0].Equal(leaf) {
		t.Errorf("DER: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("junk"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		if _, err := ParseCertificates(bad); err == nil {
			t.Errorf("ParseCertificates(%q) succeeded", bad)
		}
	}
}

// TestDistinguishedNames parses DNs as strongSwan writes them and compares
// them as it does.
func TestDistinguishedNames(t *testing.T) {
	want, err := (pkix.Name{Country: []string{"CH"}, Organization: []string{"goipsec test"}, CommonName: "moon"}).ToRDNSequence(), error(nil)
	_ = err
	for _, s := range []string{"C=CH, O=goipsec test, CN=moon", "C=CH,O=goipsec test,CN=moon", "/C=CH/O=goipsec test/CN=moon", "c=ch, o=GOIPSEC test, cn=MOON"} {
		id, err := ParseIdentity(s)
		if err != nil || id.IDType != message.IDDERASN1DN {
			t.Fatalf("ParseIdentity(%q): %v %v", s, id.IDType, err)
		}
		der, _ := asn1Marshal(want)
		if !dnEqual(id.Data, der) {
			t.Errorf("%q does not equal %s", s, dnString(der))
		}
		if got := idString(&id); !strings.EqualFold(got, "C=CH, O=goipsec test, CN=moon") {
			t.Errorf("idString = %q", got)
		}
	}
	a, _ := ParseIdentity("C=CH, O=goipsec test, CN=moon")
	for _, s := range []string{"C=CH, O=goipsec test, CN=sun", "C=CH, CN=moon", "O=goipsec test, C=CH, CN=moon", "C=CH, O=goipsec test, OU=x, CN=moon"} {
		b, _ := ParseIdentity(s)
		if dnEqual(a.Data, b.Data) {
			t.Errorf("%q equals C=CH, O=goipsec test, CN=moon", s)
		}
	}
	if id, err := ParseIdentity(`CN=a\, b, E=x@y`); err != nil || idString(&id) != "CN=a, b, E=x@y" {
		t.Errorf("escaped comma: %q, %v", idString(&id), err)
	}
}

func asn1Marshal(v any) ([]byte, error) { return asn1.Marshal(v) }

// TestVerifyChain checks chain validation and pinned certificates
// directly, with the causes of each failure.
func TestVerifyChain(t *testing.T) {
	root := newTestCA(t, "root", testKey(t, "p256-root"), nil)
	other := newTestCA(t, "other root", testKey(t, "p256-other"), nil)
	inter := newTestCA(t, "inter", testKey(t, "p256-inter"), root)
	k := testKey(t, "p256-a")
	leaf := root.issue(t, k, "a", []string{"a.example.org"}, validFrom, validUntil)
	viaInter := inter.issue(t, k, "a", []string{"a.example.org"}, validFrom, validUntil)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	future := root.issue(t, k, "a", nil, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), validUntil)
	for _, tc := range []struct {
		name         string
		leaf         *x509.Certificate
		inter, roots []*x509.Certificate
		pinned       []*x509.Certificate
		at           time.Time
		want         error
	}{
		{"direct", leaf, nil, []*x509.Certificate{root.cert}, nil, now, nil},
		{"one of several roots", leaf, nil, []*x509.Certificate{other.cert, root.cert}, nil, now, nil},
		{"via intermediate", viaInter, []*x509.Certificate{inter.cert}, []*x509.Certificate{root.cert}, nil, now, nil},
		{"intermediate as the trust anchor", viaInter, nil, []*x509.Certificate{inter.cert}, nil, now, nil},
		{"missing intermediate", viaInter, nil, []*x509.Certificate{root.cert}, nil, now, ErrCertUntrusted},
		{"other root", leaf, nil, []*x509.Certificate{other.cert}, nil, now, ErrCertUntrusted},
		{"no roots", leaf, nil, nil, nil, now, ErrCertUntrusted},
		{"expired", leaf, nil, []*x509.Certificate{root.cert}, nil, validUntil.Add(time.Hour), ErrCertExpired},
		{"not yet valid", future, nil, []*x509.Certificate{root.cert}, nil, now, ErrCertExpired},
		{"pinned", leaf, nil, nil, []*x509.Certificate{leaf}, now, nil},
		{"pinned but expired", leaf, nil, nil, []*x509.Certificate{leaf}, validUntil.Add(time.Hour), ErrCertExpired},
		{"not the pinned one", viaInter, []*x509.Certificate{inter.cert}, []*x509.Certificate{root.cert}, []*x509.Certificate{leaf}, now, ErrCertUntrusted},
	} {
		err := verifyChain(tc.leaf, tc.inter, tc.roots, tc.pinned, tc.at)
		if (tc.want == nil) != (err == nil) || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestCertProves checks which identities a certificate vouches for.
func TestCertProves(t *testing.T) {
	root := newTestCA(t, "root", testKey(t, "p256-root"), nil)
	c := root.issue(t, testKey(t, "p256-a"), "moon", []string{"moon.example.org", "192.0.2.1", "2001:db8::1", "carol@example.org"}, validFrom, validUntil)
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"moon.example.org", true}, {"MOON.example.org", true}, {"sun.example.org", false},
		{"192.0.2.1", true}, {"192.0.2.2", false}, {"2001:db8::1", true},
		{"carol@example.org", true}, {"dave@example.org", false},
		{"C=CH, O=goipsec test, CN=moon", true}, {"C=CH, O=goipsec test, CN=sun", false}, {"CN=moon", false},
		{"fqdn:carol@example.org", false}, {"keyid:moon", false},
	} {
		id, err := ParseIdentity(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := certProves(c, &id); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.id, got, tc.want)
		}
	}
}

// TestWildcardIdentities checks strongSwan's wildcards in remote ids.
func TestWildcardIdentities(t *testing.T) {
	for _, tc := range []struct {
		pattern, id string
		want        bool
	}{
		{"*.example.org", "moon.example.org", true},
		{"*.example.org", "MOON.Example.ORG", true},
		{"*.example.org", "example.org", false},
		{"*.example.org", ".example.org", false},
		{"*@example.org", "carol@example.org", true},
		{"*@example.org", "carol@example.com", false},
		{"C=CH, O=goipsec test, CN=*", "C=CH, O=goipsec test, CN=moon", true},
		{"C=CH, O=*, CN=*", "C=CH, O=goipsec test, CN=moon", true},
		{"C=CH, O=goipsec test, CN=*", "C=DE, O=goipsec test, CN=moon", false},
		{"C=CH, O=goipsec test, CN=*", "C=CH, O=goipsec test", false},
		{"moon.example.org", "*.example.org", false},
	} {
		p, err := parseIdentity(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		id, err := ParseIdentity(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.matches(&id); got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", tc.pattern, tc.id, got, tc.want)
		}
		if p.wildcard() != strings.Contains(tc.pattern, "*") {
			t.Errorf("%q: wildcard() = %v", tc.pattern, p.wildcard())
		}
	}
	c := &Connection{Name: "c", LocalID: "*.example.org", Children: []*Child{{Name: "n"}}}
	if err := (&Config{Connections: []*Connection{c}}).Validate(); err == nil || !strings.Contains(err.Error(), "is a wildcard") {
		t.Errorf("a wildcard local id: %v", err)
	}
}
