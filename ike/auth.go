package ike

import (
	"crypto/x509"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/message"
)

// Authentication methods of a Connection's LocalAuth and RemoteAuth
// (swanctl's local.auth and remote.auth).
const (
	AuthPSK    = "psk"     // pre-shared key (the default)
	AuthPubkey = "pubkey"  // certificate and signature
	AuthRSAPSS = "rsa/pss" // pubkey with RSASSA-PSS: we sign with it (local), the peer must (remote)
)

// pubkey reports whether an authentication method uses certificates.
func pubkey(auth string) bool { return auth == AuthPubkey || auth == AuthRSAPSS }

// sigHashNotify returns the SIGNATURE_HASH_ALGORITHMS notification we
// send in IKE_SA_INIT (RFC 7427 section 4).
func sigHashNotify() *message.Notify {
	return message.NewSignatureHashAlgorithms(ikecrypto.SupportedSigHashes...)
}

// readSigHashes records the peer's SIGNATURE_HASH_ALGORITHMS of an
// IKE_SA_INIT message; a malformed one counts as none.
func (sa *ikeSA) readSigHashes(msg *message.Message) {
	sa.sigHashes = nil
	if n := msg.Notify(message.SignatureHashAlgorithms); n != nil {
		if hs, err := n.HashAlgorithms(); err == nil {
			sa.sigHashes = hs
		} else {
			sa.m.log.Debug("ignoring a malformed SIGNATURE_HASH_ALGORITHMS", sa.logFields(zap.Error(err))...)
		}
	}
}

// certReq returns the CERTREQ payload naming the CAs we accept the peer's
// certificate from, nil if we accept none.
func (c *Connection) certReq() message.Payload {
	if !pubkey(c.RemoteAuth) {
		return nil
	}
	return certReqs(c.RemoteCACerts)
}

// localAuth returns the payloads that authenticate us in IKE_AUTH, in
// order: our CERT payloads (pubkey), then the AUTH payload over the octets
// of RFC 7296 section 2.15. peer is the identity the PSK is looked up for.
func (sa *ikeSA) localAuth(octets []byte, peer *message.Identity) ([]message.Payload, error) {
	conn := sa.conn
	if !pubkey(conn.LocalAuth) {
		psk, ok := sa.m.cfg.lookupPSK(&sa.localID, peer)
		if !ok {
			return nil, fmt.Errorf("no pre-shared key for %s - %s: add a secret for these identities", idString(&sa.localID), idString(peer))
		}
		return []message.Payload{&message.Auth{Method: message.AuthSharedKey, Data: ikecrypto.SharedKeyAuth(sa.suite.PRF, psk, octets)}}, nil
	}
	scheme, err := ikecrypto.ChooseScheme(conn.LocalKey.Public(), sa.sigHashes, conn.ClassicSignatures, conn.LocalAuth == AuthRSAPSS)
	if err != nil {
		return nil, fmt.Errorf("connection %s: %w", conn.Name, err)
	}
	data, err := ikecrypto.Sign(conn.LocalKey, scheme, octets)
	if err != nil {
		return nil, fmt.Errorf("connection %s: %w", conn.Name, err)
	}
	sa.m.log.Debug("authenticating with our certificate", sa.logFields(zap.String("subject", subjectString(conn.LocalCerts[0])),
		zap.Stringer("scheme", scheme))...)
	return append(certPayloads(conn.LocalCerts), &message.Auth{Method: scheme.Method, Data: data}), nil
}

// verifyPeerSignature checks the peer's certificate (chain, validity, the
// identity id) and its signature over octets. msg carries the CERT
// payloads.
func (sa *ikeSA) verifyPeerSignature(msg *message.Message, id *message.Identity, auth *message.Auth, octets []byte) error {
	conn := sa.conn
	who := idString(id)
	switch auth.Method {
	case message.AuthSharedKey:
		return &AuthError{Detail: fmt.Sprintf("the peer %s authenticates with a pre-shared key, we want a certificate (remote.auth: %s)", who, conn.RemoteAuth)}
	case message.AuthDigitalSig, message.AuthRSASig, message.AuthECDSA256, message.AuthECDSA384, message.AuthECDSA521:
	default:
		return &AuthError{Detail: fmt.Sprintf("the peer %s authenticates with method %d, which goipsec does not support", who, auth.Method)}
	}
	certs, err := peerCerts(msg)
	if err != nil {
		return &AuthError{Detail: fmt.Sprintf("the certificates of %s: %v", who, err), Err: err}
	}
	var leaf *certEntry
	if len(certs) > 0 {
		leaf = &certEntry{certs[0], certs[1:]}
	} else if len(conn.RemoteCerts) == 1 {
		// No CERT: only a single pinned certificate tells whose key it is.
		leaf = &certEntry{conn.RemoteCerts[0], nil}
	}
	if leaf == nil {
		return &AuthError{Detail: fmt.Sprintf("the peer %s sent no certificate (CERT payload) and none is configured in remote.certs", who), Err: ErrCertUntrusted}
	}
	if err := verifyChain(leaf.cert, leaf.inter, conn.RemoteCACerts, conn.RemoteCerts, sa.m.clock.Now()); err != nil {
		return &AuthError{Detail: fmt.Sprintf("the certificate of %s: %v", who, err), Err: err}
	}
	if !certProves(leaf.cert, id) {
		err := fmt.Errorf("%s (%v) is neither the subject %q nor a subjectAltName (DNS %v, email %v, IP %v) of its certificate: %w",
			who, id.IDType, subjectString(leaf.cert), leaf.cert.DNSNames, leaf.cert.EmailAddresses, leaf.cert.IPAddresses, ErrIdentityMismatch)
		return &AuthError{Detail: "the peer's identity " + err.Error(), Err: err}
	}
	scheme, err := ikecrypto.VerifySignature(leaf.cert.PublicKey, auth.Method, auth.Data, octets)
	if err != nil {
		detail := fmt.Sprintf("the AUTH signature of %s (certificate %q): %v", who, subjectString(leaf.cert), err)
		if errors.Is(err, ikecrypto.ErrBadSignature) {
			detail += ": the peer's private key is not that of its certificate, or the signed octets differ"
		}
		return &AuthError{Detail: detail, Err: err}
	}
	if conn.RemoteAuth == AuthRSAPSS && !scheme.PSS {
		return &AuthError{Detail: fmt.Sprintf("the peer %s signs with %s, remote.auth rsa/pss wants RSASSA-PSS", who, scheme)}
	}
	sa.info("peer authenticated with its certificate", zap.String("peer_id", who), zap.String("subject", subjectString(leaf.cert)),
		zap.String("issuer", dnString(leaf.cert.RawIssuer)), zap.Stringer("scheme", scheme))
	return nil
}

type certEntry struct {
	cert  *x509.Certificate
	inter []*x509.Certificate
}

// prepareAuth checks the authentication settings; with certificates, our
// identity defaults to the subject DN of our certificate, and one given
// must be the subject or a subjectAltName (strongSwan semantics).
func (c *Connection) prepareAuth() error {
	for _, a := range []*string{&c.LocalAuth, &c.RemoteAuth} {
		switch *a {
		case "":
			*a = AuthPSK
		case AuthPSK, AuthPubkey, AuthRSAPSS:
		default:
			return fmt.Errorf("auth %q: want %s, %s or %s", *a, AuthPSK, AuthPubkey, AuthRSAPSS)
		}
	}
	if pubkey(c.LocalAuth) {
		if len(c.LocalCerts) == 0 || c.LocalKey == nil {
			return errors.New("local auth pubkey needs a certificate (local certs) and its private key (local key)")
		}
		if !KeyMatches(c.LocalKey, c.LocalCerts[0]) {
			return fmt.Errorf("the local private key is not that of the certificate %q", subjectString(c.LocalCerts[0]))
		}
		if _, err := ikecrypto.ChooseScheme(c.LocalKey.Public(), ikecrypto.SupportedSigHashes, c.ClassicSignatures, c.LocalAuth == AuthRSAPSS); err != nil {
			return fmt.Errorf("local certificate %q: %w", subjectString(c.LocalCerts[0]), err)
		}
		leaf := c.LocalCerts[0]
		switch {
		case c.localID.any:
			c.localID = identity{id: message.DNIdentity(leaf.RawSubject)}
		case c.localID.id.IDType == message.IDDERASN1DN && dnEqual(c.localID.id.Data, leaf.RawSubject):
			// Send the subject exactly as the certificate encodes it.
			c.localID.id.Data = leaf.RawSubject
		case !certProves(leaf, &c.localID.id):
			return fmt.Errorf("local id %s is neither the subject %q nor a subjectAltName (DNS %v, email %v, IP %v) of the certificate",
				c.localID, subjectString(leaf), leaf.DNSNames, leaf.EmailAddresses, leaf.IPAddresses)
		}
	} else if c.LocalAuth == AuthPSK && (len(c.LocalCerts) > 0 || c.LocalKey != nil) {
		return errors.New("local certificates or key given with auth psk: set auth pubkey")
	}
	if pubkey(c.RemoteAuth) && len(c.RemoteCACerts) == 0 && len(c.RemoteCerts) == 0 {
		return errors.New("remote auth pubkey needs CA certificates (remote cacerts) or the peer's certificates (remote certs)")
	}
	return nil
}

// candidateCertReq returns the CERTREQ of the IKE_SA_INIT response: the
// CAs of every connection the peer's address may use.
func candidateCertReq(cands []*Connection) message.Payload {
	var cas []*x509.Certificate
	for _, c := range cands {
		if pubkey(c.RemoteAuth) {
			cas = append(cas, c.RemoteCACerts...)
		}
	}
	return certReqs(cas)
}
