package ike

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/message"
)

// X.509 certificates for IKE authentication: loading, CERTREQ hashes,
// chain validation and identities (RFC 7296 sections 3.6, 3.7; strongSwan
// semantics for which identity a certificate proves).

// Errors of certificate authentication, wrapped in AuthError with context.
var (
	// ErrCertExpired: a certificate of the chain is expired or not yet valid.
	ErrCertExpired = errors.New("certificate expired or not yet valid")
	// ErrCertUntrusted: the chain does not lead to a configured CA.
	ErrCertUntrusted = errors.New("certificate not trusted")
	// ErrIdentityMismatch: the certificate does not prove the peer's identity.
	ErrIdentityMismatch = errors.New("identity not in certificate")
	// ErrBadSignature: the AUTH signature does not verify.
	ErrBadSignature = ikecrypto.ErrBadSignature
)

// ParseCertificates reads X.509 certificates: every CERTIFICATE block of
// PEM data, or one DER certificate.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ike: certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) > 0 {
		return out, nil
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return nil, errors.New("ike: no CERTIFICATE block in the PEM data")
	}
	c, err := x509.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("ike: neither PEM nor DER certificate: %w", err)
	}
	return []*x509.Certificate{c}, nil
}

// ParsePrivateKey reads an unencrypted private key: PEM or DER, PKCS#1
// (RSA), SEC 1 (ECDSA) or PKCS#8 (any of RSA, ECDSA, Ed25519).
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	der := data
	if blk, _ := pem.Decode(data); blk != nil {
		if strings.Contains(blk.Type, "ENCRYPTED") || blk.Headers["Proc-Type"] != "" {
			return nil, fmt.Errorf("ike: the private key (%s) is encrypted: store it unencrypted with tight file permissions", blk.Type)
		}
		der = blk.Bytes
	} else if bytes.Contains(data, []byte("-----BEGIN")) {
		return nil, errors.New("ike: malformed PEM private key")
	}
	var key any
	var err error
	if key, err = x509.ParsePKCS8PrivateKey(der); err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(der); err != nil {
			if key, err = x509.ParseECPrivateKey(der); err != nil {
				return nil, errors.New("ike: not a PKCS#8, PKCS#1 or SEC 1 private key")
			}
		}
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("ike: %T private keys are not supported", key)
}

// KeyMatches reports whether key is the private key of cert.
func KeyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// CertReqHash returns the CERTREQ authority of a CA certificate: the SHA-1
// hash of its SubjectPublicKeyInfo (RFC 7296 section 3.7).
func CertReqHash(ca *x509.Certificate) [sha1.Size]byte {
	return sha1.Sum(ca.RawSubjectPublicKeyInfo)
}

// certReqs returns the CERTREQ payload for the CA certificates, nil
// without any.
func certReqs(cas []*x509.Certificate) message.Payload {
	if len(cas) == 0 {
		return nil
	}
	var auth []byte
	seen := map[[sha1.Size]byte]bool{}
	for _, ca := range cas {
		h := CertReqHash(ca)
		if !seen[h] {
			seen[h] = true
			auth = append(auth, h[:]...)
		}
	}
	return &message.CertReq{Encoding: message.CertX509Sig, Authorities: auth}
}

// certPayloads returns the CERT payloads of a chain, end entity first.
func certPayloads(chain []*x509.Certificate) []message.Payload {
	out := make([]message.Payload, 0, len(chain))
	for _, c := range chain {
		out = append(out, &message.Cert{Encoding: message.CertX509Sig, Data: c.Raw})
	}
	return out
}

// maxPeerCerts bounds the CERT payloads of a message we parse.
const maxPeerCerts = 16

// peerCerts parses the X.509 CERT payloads of msg: the end entity (the
// first) and the others, intermediates. Other encodings are ignored.
func peerCerts(msg *message.Message) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range msg.Payloads {
		c, ok := p.(*message.Cert)
		if !ok || c.Encoding != message.CertX509Sig {
			continue
		}
		if len(out) == maxPeerCerts {
			return nil, fmt.Errorf("more than %d certificates", maxPeerCerts)
		}
		x, err := x509.ParseCertificate(c.Data)
		if err != nil {
			return nil, fmt.Errorf("CERT payload %d: %w", len(out)+1, err)
		}
		out = append(out, x)
	}
	return out, nil
}

// verifyChain checks that leaf chains to one of roots through the
// intermediates at time now. Any key usage is acceptable, as in
// strongSwan. A leaf that is one of pinned is trusted without a chain.
func verifyChain(leaf *x509.Certificate, intermediates, roots, pinned []*x509.Certificate, now time.Time) error {
	for _, p := range pinned {
		if bytes.Equal(p.Raw, leaf.Raw) {
			if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
				return fmt.Errorf("%q valid %s to %s: %w", subjectString(leaf), leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339), ErrCertExpired)
			}
			return nil
		}
	}
	if len(pinned) > 0 {
		return fmt.Errorf("%q is not one of the certificates of remote.certs: %w", subjectString(leaf), ErrCertUntrusted)
	}
	if len(roots) == 0 {
		return fmt.Errorf("%q is not one of remote.certs and no remote.cacerts are configured: %w", subjectString(leaf), ErrCertUntrusted)
	}
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, c := range intermediates {
		ip.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err == nil {
		return nil
	}
	var inv x509.CertificateInvalidError
	var unk x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return fmt.Errorf("%q (issued by %q): %v: %w", subjectString(leaf), dnString(leaf.RawIssuer), err, ErrCertExpired)
	case errors.As(err, &unk):
		return fmt.Errorf("%q (issued by %q) does not chain to a configured CA: %w", subjectString(leaf), dnString(leaf.RawIssuer), ErrCertUntrusted)
	}
	return fmt.Errorf("%q: %v: %w", subjectString(leaf), err, ErrCertUntrusted)
}

// certProves reports whether cert vouches for the identity id: its
// subject DN, or a subjectAltName of the identity's type.
func certProves(cert *x509.Certificate, id *message.Identity) bool {
	switch id.IDType {
	case message.IDDERASN1DN:
		return dnEqual(id.Data, cert.RawSubject)
	case message.IDFQDN:
		for _, n := range cert.DNSNames {
			if strings.EqualFold(n, string(id.Data)) {
				return true
			}
		}
	case message.IDRFC822:
		for _, n := range cert.EmailAddresses {
			if strings.EqualFold(n, string(id.Data)) {
				return true
			}
		}
	case message.IDIPv4, message.IDIPv6:
		a, ok := id.Addr()
		if !ok {
			return false
		}
		for _, ip := range cert.IPAddresses {
			if b, ok := netip.AddrFromSlice(ip); ok && b.Unmap() == a.Unmap() {
				return true
			}
		}
	}
	return false
}

// parseDN reads a distinguished name as strongSwan writes it.
func parseDN(s string) ([]byte, error) {
	der, err := message.ParseDN(s)
	if err != nil {
		return nil, fmt.Errorf("ike: %w", err)
	}
	return der, nil
}

// dnEqual compares two DER distinguished names as strongSwan does.
func dnEqual(a, b []byte) bool { return message.DNEqual(a, b) }

// dnString formats a DER distinguished name as strongSwan prints it.
func dnString(der []byte) string { return message.FormatDN(der) }

func subjectString(c *x509.Certificate) string { return dnString(c.RawSubject) }

// idString formats an identity for logs and errors, DNs readable.
func idString(id *message.Identity) string {
	switch id.IDType {
	case 0:
		return "%any"
	case message.IDDERASN1DN:
		return dnString(id.Data)
	}
	return id.String()
}
