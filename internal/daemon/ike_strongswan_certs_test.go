//go:build linux

package daemon

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest/observer"

	"github.com/goipsec/goipsec/internal/interop"
)

// Certificate authentication between goipsec and strongSwan 5.9
// (kernel-libipsec), with CAs and certificates made by strongSwan's pki:
// goipsec in Left (netstack mode), charon in Right.

// swCertCase is one certificate pairing.
type swCertCase struct {
	name        string
	keyType     interop.KeyType
	size        int
	goInitiates bool
	// dnIDs leaves both local ids unset (each side's certificate subject,
	// strongSwan's default) and makes each remote id the peer's DN.
	dnIDs bool
	// inter issues both end-entity certificates from an intermediate CA
	// (a chain of three); each side sends its certificate and the
	// intermediate.
	inter bool
	// pss makes both sides sign with RSASSA-PSS.
	pss bool
	// classic turns charon's RFC 7427 support off: both ends then sign
	// with the classic methods (RSA 1, ECDSA 9-11).
	classic bool
	// untrustedByGo and untrustedBySW make goipsec or charon trust
	// another CA than the peer's.
	untrustedByGo, untrustedBySW bool
	// wantSWAuth is the scheme charon logs for goipsec's authentication
	// ("authentication of 'ID' with SCHEME successful").
	wantSWAuth, wantGoScheme string
}

// swCertPair is a running pairing.
type swCertPair struct {
	sw   *interop.StrongSwan
	d    *Daemon
	logs *observer.ObservedLogs
	tp   *interop.Topology
	// goID and swID are the identities as charon prints them.
	goID, swID string
}

// goLogged reports whether goipsec logged s.
func (p *swCertPair) goLogged(s string) bool { return logged(p.logs, s) }

func startSWCertPair(t *testing.T, tc swCertCase) *swCertPair {
	t.Helper()
	interop.RequireStrongSwan(t)
	root := interop.NewCA(t, interop.CAOptions{KeyType: tc.keyType, Size: tc.size, DN: "C=CH, O=goipsec test, CN=interop root " + tc.name})
	issuer := root
	if tc.inter {
		issuer = root.IssueCA(t, "intermediate", interop.CAOptions{KeyType: tc.keyType, Size: tc.size, DN: "C=CH, O=goipsec test, CN=interop intermediate"})
	}
	other := interop.NewCA(t, interop.CAOptions{KeyType: tc.keyType, Size: tc.size, DN: "C=CH, O=goipsec test, CN=someone else's CA"})
	goCert := issuer.Issue(t, "left", interop.CertOptions{KeyType: tc.keyType, Size: tc.size, SANs: []string{"left.example"}})
	swCert := issuer.Issue(t, "right", interop.CertOptions{KeyType: tc.keyType, Size: tc.size, SANs: []string{"right.example"}})
	goCA, swCA := root.CertFile, root.CertFile
	if tc.untrustedByGo {
		goCA = other.CertFile
	}
	if tc.untrustedBySW {
		swCA = other.CertFile
	}

	p := &swCertPair{tp: interop.NewTopology(t, interop.TopologyOptions{})}
	tp := p.tp
	opt := &interop.StrongSwanOptions{}
	if tc.pss {
		opt.Charon = "rsa_pss = yes"
	}
	if tc.classic {
		opt.Charon = "signature_authentication = no"
	}
	p.sw = interop.StartStrongSwan(t, tp.Right, "sw", opt)
	goCerts := []string{goCert.CertFile}
	if tc.inter {
		goCerts = append(goCerts, issuer.CertFile)
		// charon sends the intermediate it holds ("sending issuer cert").
		b, err := os.ReadFile(issuer.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.sw.Dir, "x509ca", "intermediate.pem"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	auth := "pubkey"
	if tc.pss {
		auth = "rsa/pss"
	}
	goLocalID, goRemoteID, swLocalID, swRemoteID := "left.example", "right.example", "right.example", "left.example"
	p.goID, p.swID = goLocalID, swLocalID
	if tc.dnIDs {
		goLocalID, swLocalID = "", ""
		goRemoteID, swRemoteID = swCert.DN, goCert.DN
		p.goID, p.swID = goCert.DN, swCert.DN
	}
	start := "none"
	if tc.goInitiates {
		start = "start"
	}
	idLine := func(id string) string {
		if id == "" {
			return ""
		}
		return fmt.Sprintf(", id: %q", id)
	}
	y := fmt.Sprintf(`connections:
  link:
    local_addrs: [%s]
    remote_addrs: [%s]
    proposals: [aes256gcm16-prfsha384-ecp384]
    local: {auth: %s, certs: [%s], key: %s%s}
    remote: {auth: %s, cacerts: [%s]%s}
    children:
      net:
        local_ts: [%s/32]
        remote_ts: [%s/32]
        esp_proposals: [aes256gcm16]
        start_action: %s
tun: {mode: netstack, addresses: [%s/24]}
control: {socket: "-"}
`, tp.LeftAddr, tp.RightAddr, auth, strings.Join(goCerts, ", "), goCert.KeyPKCS8File, idLine(goLocalID), auth, goCA, idLine(goRemoteID),
		tp.LeftInner, tp.RightInner, start, tp.LeftInner)
	p.d, p.logs = newObservedDaemon(t, y)
	remote := tp.LeftAddr.String()
	if tc.goInitiates {
		remote = "%any"
	}
	p.sw.Load(t, &interop.SwanctlConfig{
		PrivateKeys: []string{swCert.KeyFile},
		Connections: []interop.Connection{{Name: "ike", Version: 2, LocalAddrs: []string{tp.RightAddr.String()}, RemoteAddrs: []string{remote},
			Proposals: []string{"aes256gcm16-prfsha384-ecp384"}, KeyingTries: 1,
			Local:  interop.Auth{Auth: auth, ID: swLocalID, Certs: []string{swCert.CertFile}},
			Remote: interop.Auth{Auth: auth, ID: swRemoteID, CACerts: []string{swCA}},
			Children: []interop.Child{{Name: "net", LocalTS: []string{tp.RightInner.String() + "/32"}, RemoteTS: []string{tp.LeftInner.String() + "/32"},
				ESPProposals: []string{"aes256gcm16"}, Mode: "tunnel"}}}}})
	serveIn(t, tp.Left, p.d)
	if !tc.goInitiates {
		go p.sw.Initiate("net")
	}
	return p
}

// TestIKEStrongSwanCerts authenticates goipsec and charon to each other
// with pki-made certificates, in both roles, with RSA and ECDSA keys, and
// sends TCP through the tunnel.
func TestIKEStrongSwanCerts(t *testing.T) {
	for _, tc := range []swCertCase{
		{name: "rsa-goipsec-initiates-dn-ids", keyType: interop.RSA, goInitiates: true, dnIDs: true,
			wantSWAuth: "RSA_EMSA_PKCS1_SHA2_256", wantGoScheme: "SHA-256 (RFC 7427)"},
		{name: "rsa-strongswan-initiates", keyType: interop.RSA, wantSWAuth: "RSA_EMSA_PKCS1_SHA2_256", wantGoScheme: "SHA-256 (RFC 7427)"},
		{name: "ecdsa-goipsec-initiates", keyType: interop.ECDSA, goInitiates: true, wantSWAuth: "ECDSA_WITH_SHA256_DER", wantGoScheme: "SHA-256 (RFC 7427)"},
		{name: "ecdsa384-strongswan-initiates-dn-ids", keyType: interop.ECDSA, size: 384, dnIDs: true, wantSWAuth: "ECDSA_WITH_SHA384_DER", wantGoScheme: "SHA-384 (RFC 7427)"},
		{name: "rsa-pss-strongswan-initiates", keyType: interop.RSA, pss: true, wantSWAuth: "RSA_EMSA_PSS_SHA2_256_SALT_32", wantGoScheme: "RSASSA-PSS SHA-256 (RFC 7427)"},
		{name: "ecdsa-classic-goipsec-initiates", keyType: interop.ECDSA, goInitiates: true, classic: true,
			wantSWAuth: "ECDSA-256 signature", wantGoScheme: "ECDSA (method 9)"},
		{name: "rsa-classic-strongswan-initiates", keyType: interop.RSA, classic: true, wantSWAuth: "RSA signature", wantGoScheme: "RSA PKCS#1 v1.5 SHA-1 (method 1)"},
		{name: "ecdsa-intermediate-chain-goipsec-initiates", keyType: interop.ECDSA, goInitiates: true, inter: true,
			wantSWAuth: "ECDSA_WITH_SHA256_DER", wantGoScheme: "SHA-256 (RFC 7427)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startSWCertPair(t, tc)
			waitChild(t, p.d, true)
			sas := p.sw.WaitSAs(t, 10*time.Second, func(s []interop.IKESA) bool { return len(s) == 1 && len(s[0].Children) == 1 })
			if sas[0].State != "ESTABLISHED" || sas[0].RemoteID != p.goID || sas[0].LocalID != p.swID {
				t.Errorf("charon's IKE SA: %s, local id %q, remote id %q; want ESTABLISHED, %q, %q", sas[0].State, sas[0].LocalID, sas[0].RemoteID, p.swID, p.goID)
			}
			// charon verified goipsec's signature with the RFC 7427 scheme,
			// and goipsec charon's.
			p.sw.WaitLog(t, fmt.Sprintf("authentication of '%s' with %s successful", p.goID, tc.wantSWAuth), 5*time.Second)
			if !p.goLogged("peer authenticated with its certificate") || !p.goLogged(tc.wantGoScheme) {
				t.Errorf("goipsec did not log charon's authentication with %s", tc.wantGoScheme)
			}
			if !strings.Contains(p.sw.Log(), "received cert request for") {
				t.Error("charon received no CERTREQ from goipsec")
			}
			if tc.inter {
				for _, s := range []string{"received end entity cert", "received issuer cert \"C=CH, O=goipsec test, CN=interop intermediate\""} {
					if !strings.Contains(p.sw.Log(), s) {
						t.Errorf("charon's log lacks %q", s)
					}
				}
			}
			// TCP through the tunnel, echoed by charon's host.
			c := dialEcho(t, p.tp.Right, p.tp.RightInner, p.d, p.sw)
			data := bytes.Repeat([]byte("certificates "), 5000)
			go c.Write(data)
			got := make([]byte, len(data))
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("echo through the tunnel: %v", err)
			}
			if ch := p.sw.MustListSAs(t)[0].Children[0]; ch.State != "INSTALLED" || ch.PacketsIn < 5 || ch.PacketsOut < 5 {
				t.Errorf("charon's Child SA: %+v", ch)
			}
		})
	}
}

// TestIKEStrongSwanCertsUntrusted: a certificate from a CA the other end
// does not trust is refused both ways, and neither end keeps anything.
func TestIKEStrongSwanCertsUntrusted(t *testing.T) {
	for _, tc := range []swCertCase{
		{name: "strongswan-refuses-goipsec-initiator", keyType: interop.ECDSA, goInitiates: true, untrustedBySW: true},
		{name: "goipsec-refuses-strongswan-initiator", keyType: interop.RSA, untrustedByGo: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startSWCertPair(t, tc)
			goWant, swWant := "AUTHENTICATION_FAILED", "received AUTHENTICATION_FAILED notify error"
			if tc.untrustedBySW {
				swWant = "no trusted"
			} else {
				goWant = "does not chain to a configured CA"
			}
			p.sw.WaitLog(t, swWant, 15*time.Second)
			deadline := time.Now().Add(10 * time.Second)
			for !p.goLogged(goWant) || !p.goLogged("certificate not trusted") && tc.untrustedByGo {
				if time.Now().After(deadline) {
					t.Fatalf("goipsec never logged %q", goWant)
				}
				time.Sleep(50 * time.Millisecond)
			}
			checkNothingKept(t, p.d, p.sw)
		})
	}
}
