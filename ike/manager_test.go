package ike

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
	"github.com/goipsec/goipsec/sad"
)

func TestEstablishProposals(t *testing.T) {
	for _, tc := range []struct {
		ike, esp  string
		wantIKE   string
		wantESP   string
		integ     bool
		transport bool
	}{
		{"aes128gcm16-prfsha256-x25519", "aes128gcm16", "aes128gcm16-prfsha256-x25519", "aes128gcm16-noesn", false, false},
		{"aes256-sha384-ecp384", "aes256-sha384", "aes256-sha384-prfsha384-ecp384", "aes256-sha384-noesn", true, false},
		{"chacha20poly1305-prfsha256-modp2048", "chacha20poly1305", "chacha20poly1305-prfsha256-modp2048", "chacha20poly1305-noesn", false, false},
		{"aes256gcm16-prfsha512-ecp521", "aes256gcm16-esn", "aes256gcm16-prfsha512-ecp521", "aes256gcm16-esn", false, true},
		{"aes128-sha256-ecp256", "aes128-sha512", "aes128-sha256-prfsha256-ecp256", "aes128-sha512-noesn", true, false},
	} {
		t.Run(tc.ike, func(t *testing.T) {
			sa := side{proposals: []string{tc.ike}, esp: []string{tc.esp}, localTS: []string{"10.1.0.0/24"}, remoteTS: []string{"10.2.0.0/24"}}
			sb := side{proposals: []string{"aes128gcm16-prfsha256-ecp256", tc.ike}, esp: []string{tc.esp}, localTS: []string{"10.2.0.0/24"}, remoteTS: []string{"10.1.0.0/24"}}
			if tc.transport {
				sa.mode, sb.mode = sad.Transport, sad.Transport
				sa.localTS, sa.remoteTS, sb.localTS, sb.remoteTS = nil, nil, nil, nil
			}
			p := newPair(t, sa, sb, Options{})
			if err := p.initiate("conn"); err != nil {
				t.Fatalf("initiate: %v\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
			}
			ca, cb := p.established(t)
			if (ca.Out.Integ != nil) != tc.integ {
				t.Errorf("integrity algorithm %v", ca.Out.Integ)
			}
			if tc.transport {
				if ca.Mode != sad.Transport {
					t.Errorf("mode %v, want transport", ca.Mode)
				}
				if fmt.Sprint(ca.Local) != "[192.0.2.1/32]" || fmt.Sprint(ca.Remote) != "[192.0.2.2/32]" {
					t.Errorf("dynamic selectors %v === %v", ca.Local, ca.Remote)
				}
			} else if fmt.Sprint(ca.Local) != "[10.1.0.0/24]" {
				t.Errorf("selectors %v === %v", ca.Local, ca.Remote)
			}
			if ca.Peer != netip.AddrPortFrom(addrB, 4500) || cb.Peer != netip.AddrPortFrom(addrA, 4500) {
				t.Errorf("ESP peers %v, %v: want the NAT-T ports", ca.Peer, cb.Peer)
			}
			for _, pp := range []*peer{p.a, p.b} {
				sas := pp.m.IKESAs()
				if len(sas) != 1 || sas[0].State != "ESTABLISHED" || sas[0].Proposal != tc.wantIKE || !sas[0].NATT {
					t.Fatalf("IKE SAs %+v, want one established with %s", sas, tc.wantIKE)
				}
				if len(sas[0].Children) != 1 || sas[0].Children[0].Proposal != tc.wantESP {
					t.Errorf("children %+v, want %s", sas[0].Children, tc.wantESP)
				}
			}
			sa0, sb0 := p.a.m.IKESAs()[0], p.b.m.IKESAs()[0]
			if sa0.LocalID != "a.example.org" || sa0.RemoteID != "b.example.org" || sb0.RemoteID != "a.example.org" {
				t.Errorf("identities %s/%s, %s/%s", sa0.LocalID, sa0.RemoteID, sb0.LocalID, sb0.RemoteID)
			}
			// Both ends derived the same IKE keys.
			ka, kb := p.a.keys[0], p.b.keys[0]
			if ka.IKE == nil || kb.IKE == nil || !bytes.Equal(ka.SKEYSEED, kb.SKEYSEED) || !bytes.Equal(ka.IKE.D, kb.IKE.D) ||
				!bytes.Equal(ka.IKE.Ei, kb.IKE.Ei) || !bytes.Equal(ka.IKE.Pr, kb.IKE.Pr) || ka.SPIi != kb.SPIi || ka.SPIr != kb.SPIr {
				t.Error("IKE SA keys differ between the ends")
			}
			if !ka.Initiator || kb.Initiator {
				t.Error("key hook roles")
			}
			// The initiator floated to the NAT-T port after IKE_SA_INIT.
			for i, h := range p.net.sent() {
				_ = i
				_ = h
			}
			p.net.mu.Lock()
			for _, pk := range p.net.log {
				h, _ := message.ParseHeader(pk.data)
				if (h.Exchange == message.IKESAInit) == pk.natt {
					t.Errorf("%v sent with natt=%v", h.Exchange, pk.natt)
				}
			}
			p.net.mu.Unlock()
			if !p.a.logged("IKE SA established") || !p.b.logged("CHILD_SA established") {
				t.Error("missing log lines")
			}
		})
	}
}

// TestKeysNeverLogged checks that no key reaches the log.
func TestKeysNeverLogged(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	ca, _ := p.established(t)
	logs := p.a.dumpLogs() + p.b.dumpLogs()
	k := p.a.keys[0].IKE
	for _, secret := range [][]byte{ca.Out.EncKey, ca.In.EncKey, k.D, k.Ei, k.Er, k.Pi} {
		for _, enc := range []string{fmt.Sprintf("%x", secret), fmt.Sprintf("%X", secret), string(secret)} {
			if bytes.Contains([]byte(logs), []byte(enc)) {
				t.Fatal("a key appears in the log")
			}
		}
	}
}

func TestWrongPSK(t *testing.T) {
	p := newPair(t, side{psk: "one secret"}, side{psk: "another secret"}, Options{})
	err := p.initiate("conn")
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("initiate: %v, want AuthError", err)
	}
	if !p.a.logged("AUTHENTICATION_FAILED") || !p.b.logged("AUTHENTICATION_FAILED") {
		t.Errorf("both ends must log AUTHENTICATION_FAILED\n--- a:\n%s--- b:\n%s", p.a.dumpLogs(), p.b.dumpLogs())
	}
	if !p.b.logged("pre-shared keys of both ends differ") {
		t.Error("the responder does not say the PSKs differ")
	}
	p.a.noState(t, "initiator")
	p.b.noState(t, "responder")
}

func TestWrongIdentity(t *testing.T) {
	// b expects another identity from a.
	p := newPair(t, side{}, side{id: "b.example.org", peerID: "c.example.org"}, Options{})
	err := p.initiate("conn")
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("initiate: %v, want AuthError", err)
	}
	if !p.b.logged("no connection accepts the peer's identity a.example.org") {
		t.Errorf("responder log lacks the reason:\n%s", p.b.dumpLogs())
	}
	p.a.noState(t, "initiator")
	p.b.noState(t, "responder")
}

func TestResponderAuthFails(t *testing.T) {
	// a expects b to be c.example.org: b authenticates a fine, a refuses b
	// and tells it.
	p := newPair(t, side{id: "a.example.org", peerID: "c.example.org",
		extraSecrets: []*Secret{{IDs: []string{"a.example.org", "b.example.org"}, Key: []byte("correct horse battery staple")}}}, side{}, Options{})
	err := p.initiate("conn")
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("initiate: %v, want AuthError", err)
	}
	if !p.b.logged("the peer refused our authentication (AUTHENTICATION_FAILED)") {
		t.Errorf("responder does not log the initiator's refusal:\n%s", p.b.dumpLogs())
	}
	p.a.noState(t, "initiator")
	p.b.noState(t, "responder")
}

func TestNoProposalChosenIKE(t *testing.T) {
	p := newPair(t, side{proposals: []string{"aes128gcm16-prfsha256-x25519"}}, side{proposals: []string{"aes256-sha384-ecp384"}}, Options{})
	err := p.initiate("conn")
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("NO_PROPOSAL_CHOSEN")) {
		t.Fatalf("initiate: %v, want NO_PROPOSAL_CHOSEN", err)
	}
	if !p.b.logged("no acceptable IKE proposal") || !p.b.logged("aes128gcm16-prfsha256-x25519") {
		t.Errorf("responder log:\n%s", p.b.dumpLogs())
	}
	p.a.noState(t, "initiator")
	p.b.noState(t, "responder")
}

func TestNoProposalChosenChild(t *testing.T) {
	p := newPair(t, side{esp: []string{"aes128gcm16"}}, side{esp: []string{"aes256-sha256"}}, Options{})
	err := p.initiate("conn")
	var ce *ChildError
	if !errors.As(err, &ce) || ce.Notify != message.NoProposalChosen {
		t.Fatalf("initiate: %v, want NO_PROPOSAL_CHOSEN", err)
	}
	if !p.b.logged("CHILD_SA refused: answering with NO_PROPOSAL_CHOSEN") || !p.a.logged("esp_proposals") {
		t.Errorf("logs:\n--- a:\n%s--- b:\n%s", p.a.dumpLogs(), p.b.dumpLogs())
	}
	// The initiator deletes the IKE SA it made for the child.
	p.a.noState(t, "initiator")
	p.b.noState(t, "responder")
}

func TestInvalidKE(t *testing.T) {
	p := newPair(t, side{proposals: []string{"aes128gcm16-prfsha256-x25519-ecp256"}}, side{proposals: []string{"aes128gcm16-prfsha256-ecp256"}}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	p.established(t)
	inits := 0
	for _, h := range p.net.sent() {
		if h.Exchange == message.IKESAInit && !h.IsResponse() {
			inits++
		}
	}
	if inits != 2 {
		t.Errorf("%d IKE_SA_INIT requests, want 2", inits)
	}
	if !p.a.logged("INVALID_KE_PAYLOAD") || !p.b.logged("INVALID_KE_PAYLOAD") {
		t.Error("INVALID_KE_PAYLOAD not logged at both ends")
	}
	if got := p.a.m.IKESAs()[0].Proposal; got != "aes128gcm16-prfsha256-ecp256" {
		t.Errorf("proposal %s", got)
	}
}

func TestResponderTakesInitiatorKE(t *testing.T) {
	// b prefers ecp256 but accepts x25519, which a sent: no retry.
	p := newPair(t, side{proposals: []string{"aes128gcm16-prfsha256-x25519-ecp256"}}, side{proposals: []string{"aes128gcm16-prfsha256-ecp256-x25519"}}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	inits := 0
	for _, h := range p.net.sent() {
		if h.Exchange == message.IKESAInit && !h.IsResponse() {
			inits++
		}
	}
	if inits != 1 {
		t.Errorf("%d IKE_SA_INIT requests, want 1", inits)
	}
	if got := p.b.m.IKESAs()[0].Proposal; got != "aes128gcm16-prfsha256-x25519" {
		t.Errorf("proposal %s", got)
	}
}

func TestInvalidKEUnsupported(t *testing.T) {
	// b wants ecp384, which a does not offer at all... b's only proposal
	// shares nothing with a's: NO_PROPOSAL_CHOSEN, not a KE retry loop.
	p := newPair(t, side{proposals: []string{"aes128gcm16-prfsha256-x25519"}}, side{proposals: []string{"aes128gcm16-prfsha256-ecp384"}}, Options{})
	if err := p.initiate("conn"); err == nil {
		t.Fatal("established without a common group")
	}
	p.a.noState(t, "initiator")
	p.b.noState(t, "responder")
}

func TestTSNarrowing(t *testing.T) {
	p := newPair(t,
		side{localTS: []string{"10.1.0.0/16"}, remoteTS: []string{"10.2.0.0/16"}},
		side{localTS: []string{"10.2.1.0/24", "10.3.0.0/16"}, remoteTS: []string{"10.1.0.0/24[tcp]"}}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	ca, _ := p.established(t)
	if got := fmt.Sprint(ca.Local, ca.Remote); got != "[10.1.0.0/24[6]] [10.2.1.0/24]" {
		t.Errorf("narrowed selectors %s", got)
	}
}

func TestTSUnacceptable(t *testing.T) {
	p := newPair(t,
		side{localTS: []string{"10.1.0.0/16"}, remoteTS: []string{"10.2.0.0/16"}},
		side{localTS: []string{"10.2.0.0/16"}, remoteTS: []string{"10.9.0.0/16"}}, Options{})
	err := p.initiate("conn")
	var ce *ChildError
	if !errors.As(err, &ce) || ce.Notify != message.TSUnacceptable {
		t.Fatalf("initiate: %v, want TS_UNACCEPTABLE", err)
	}
	if !p.b.logged("TS_UNACCEPTABLE") || !p.a.logged("local_ts/remote_ts") {
		t.Errorf("logs:\n--- a:\n%s--- b:\n%s", p.a.dumpLogs(), p.b.dumpLogs())
	}
	p.a.noState(t, "initiator")
	p.b.noState(t, "responder")
}

// TestInvalidSyntax: an IKE_AUTH request without AUTH (re-encrypted in
// flight with the initiator's keys) is answered with INVALID_SYNTAX, which
// the initiator understands; neither end keeps state.
func TestInvalidSyntax(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	p.net.mutate = func(pk *packet) {
		h, _ := message.ParseHeader(pk.data)
		if h.Exchange != message.IKEAuth || h.IsResponse() {
			return
		}
		k := p.a.keys[0]
		prop, err := proposal.Parse(message.ProtoIKE, k.Proposal)
		if err != nil {
			t.Fatal(err)
		}
		suite, _ := proposal.ResolveIKE(&prop)
		ci, _, err := ikecrypto.NewIKECiphers(&suite.Suite, k.IKE)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := ikecrypto.Decrypt(pk.data, ci)
		if err != nil {
			t.Fatal(err)
		}
		var keep []message.Payload
		for _, pl := range msg.Payloads {
			if pl.Type() != message.PayloadAUTH {
				keep = append(keep, pl)
			}
		}
		msg.Payloads = keep
		if pk.data, err = ikecrypto.Encrypt(msg, ci); err != nil {
			t.Fatal(err)
		}
	}
	err := p.initiate("conn")
	if err == nil || !strings.Contains(err.Error(), "INVALID_SYNTAX") {
		t.Fatalf("initiate: %v, want INVALID_SYNTAX", err)
	}
	if !p.b.logged("answering INVALID_SYNTAX") || !p.a.logged("the peer answered IKE_AUTH with INVALID_SYNTAX") {
		t.Errorf("logs:\n--- a:\n%s--- b:\n%s", p.a.dumpLogs(), p.b.dumpLogs())
	}
	p.a.noState(t, "initiator")
	p.b.noState(t, "responder")
}

// dropFirst returns a drop filter that loses the first n messages that
// match.
func dropFirst(n int, match func(h *message.Header, p packet) bool) func(packet) bool {
	return func(p packet) bool {
		h, err := message.ParseHeader(p.data)
		if err != nil || n == 0 || !match(h, p) {
			return false
		}
		n--
		return true
	}
}

func TestRetransmitLostResponses(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	// Lose the first IKE_SA_INIT response and the first IKE_AUTH
	// response: the initiator retransmits, the responder answers from its
	// cache and processes each request once.
	initLost := dropFirst(1, func(h *message.Header, _ packet) bool { return h.Exchange == message.IKESAInit && h.IsResponse() })
	authLost := dropFirst(1, func(h *message.Header, _ packet) bool { return h.Exchange == message.IKEAuth && h.IsResponse() })
	p.net.drop = func(pk packet) bool { return initLost(pk) || authLost(pk) }
	done, err := p.a.m.Initiate("conn")
	if err != nil {
		t.Fatal(err)
	}
	p.net.Pump()
	p.clock.Advance(DefaultRetransmitTimeout, p.net)
	p.clock.Advance(DefaultRetransmitTimeout, p.net)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("not established\n--- a:\n%s--- b:\n%s", p.a.dumpLogs(), p.b.dumpLogs())
	}
	p.established(t)
	if len(p.b.inst.history) != 1 {
		t.Errorf("responder installed %d Child SAs, want 1 (duplicate request processed twice?)", len(p.b.inst.history))
	}
	if st := p.a.m.Stats(); st.Retransmits != 2 {
		t.Errorf("%d retransmissions, want 2", st.Retransmits)
	}
	if !p.b.logged("retransmitted IKE_SA_INIT: resending our response") || !p.b.logged("retransmitted request: resending our response") {
		t.Errorf("responder log:\n%s", p.b.dumpLogs())
	}
}

func TestRetransmitLossyLink(t *testing.T) {
	// Every third message is lost.
	for _, offset := range []int{0, 1, 2} {
		t.Run(fmt.Sprint(offset), func(t *testing.T) {
			p := newPair(t, side{dpd: 30 * time.Second}, side{dpd: 30 * time.Second}, Options{})
			n := offset
			p.net.drop = func(packet) bool { n++; return n%3 == 0 }
			done, err := p.a.m.Initiate("conn")
			if err != nil {
				t.Fatal(err)
			}
			p.net.Pump()
			for range 300 {
				select {
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
					p.established(t)
					if p.net.dropped == 0 {
						t.Error("nothing was lost")
					}
					// Liveness checks over the lossy link do not kill it.
					p.clock.Advance(5*time.Minute, p.net)
					if len(p.a.m.IKESAs()) != 1 || len(p.b.m.IKESAs()) != 1 {
						t.Errorf("the SA died on a lossy link:\n%s", p.a.dumpLogs())
					}
					return
				default:
				}
				p.clock.Advance(time.Second, p.net)
			}
			t.Fatalf("not established over a lossy link\n--- a:\n%s--- b:\n%s", p.a.dumpLogs(), p.b.dumpLogs())
		})
	}
}

func TestGiveUp(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	p.net.drop = func(packet) bool { return true }
	done, err := p.a.m.Initiate("conn")
	if err != nil {
		t.Fatal(err)
	}
	p.net.Pump()
	p.clock.Advance(10*time.Minute, p.net)
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("initiate: %v, want ErrTimeout", err)
		}
	default:
		t.Fatal("initiation never gave up")
	}
	sent := 0
	for _, h := range p.net.sent() {
		if h.Exchange == message.IKESAInit {
			sent++
		}
	}
	if sent != 1+DefaultRetransmitTries {
		t.Errorf("sent IKE_SA_INIT %d times, want %d", sent, 1+DefaultRetransmitTries)
	}
	p.a.noState(t, "initiator")
}

func TestHalfOpenTimeout(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	// IKE_AUTH never arrives.
	p.net.drop = func(pk packet) bool {
		h, _ := message.ParseHeader(pk.data)
		return h.Exchange == message.IKEAuth
	}
	if _, err := p.a.m.Initiate("conn"); err != nil {
		t.Fatal(err)
	}
	p.net.Pump()
	if sas := p.b.m.IKESAs(); len(sas) != 1 || sas[0].State != "HALF_OPEN" {
		t.Fatalf("responder SAs %+v", sas)
	}
	p.clock.Advance(DefaultHalfOpenTimeout+time.Second, p.net)
	if !p.b.logged("half-open IKE SA timed out") {
		t.Error("no half-open timeout logged")
	}
	p.b.noState(t, "responder")
}

func TestCookie(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{CookieThreshold: 1})
	p.b.m.mu.Lock()
	p.b.m.nHalf = 1 // pretend another initiator is half-way
	p.b.m.mu.Unlock()
	if err := p.initiate("conn"); err != nil {
		t.Fatalf("%v\n%s", err, p.a.dumpLogs())
	}
	p.established(t)
	if !p.a.logged("asks for a cookie") {
		t.Error("no cookie round trip")
	}
	p.b.m.mu.Lock()
	p.b.m.nHalf = 0
	p.b.m.mu.Unlock()
}

func TestDPDDeadPeer(t *testing.T) {
	p := newPair(t, side{dpd: 10 * time.Second}, side{}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	p.established(t)
	// Traffic from the peer keeps the checks away.
	id := p.a.inst.list()[0].ID
	for i := range 5 {
		p.a.inst.mu.Lock()
		p.a.inst.inbound[id] = uint64(i + 1)
		p.a.inst.mu.Unlock()
		p.clock.Advance(10*time.Second, p.net)
	}
	for _, h := range p.net.sent() {
		if h.Exchange == message.Informational {
			t.Fatal("liveness check although ESP arrived from the peer")
		}
	}
	// The peer goes quiet, then dies.
	p.clock.Advance(10*time.Second, p.net)
	checks := 0
	for _, h := range p.net.sent() {
		if h.Exchange == message.Informational && !h.IsResponse() {
			checks++
		}
	}
	if checks != 1 || len(p.a.m.IKESAs()) != 1 {
		t.Fatalf("%d liveness checks to a live peer", checks)
	}
	p.net.drop = func(packet) bool { return true }
	p.clock.Advance(10*time.Minute, p.net)
	if !p.a.logged("dead peer") {
		t.Errorf("no dead peer detected:\n%s", p.a.dumpLogs())
	}
	p.a.noState(t, "initiator")
}

func TestDeleteChildAndIKE(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	p.established(t)
	if n, err := p.a.m.Terminate("conn.net"); err != nil || n != 1 {
		t.Fatalf("terminate child: %d, %v", n, err)
	}
	p.net.Pump()
	if len(p.a.inst.list()) != 0 || len(p.b.inst.list()) != 0 {
		t.Fatal("Child SA survived its deletion")
	}
	if len(p.a.m.IKESAs()) != 1 || len(p.b.m.IKESAs()) != 1 {
		t.Fatal("the IKE SA went with the child")
	}
	if !p.b.logged("CHILD_SA deleted by the peer") {
		t.Error("responder does not log the deletion")
	}
	// A new child on the existing IKE SA (CREATE_CHILD_SA), then delete
	// all from the responder's side.
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	p.established(t)
	if n, err := p.b.m.Terminate("conn"); err != nil || n != 1 {
		t.Fatalf("terminate conn: %d, %v", n, err)
	}
	p.net.Pump()
	p.a.noState(t, "initiator")
	p.b.noState(t, "responder")
	if _, err := p.a.m.Terminate("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("terminate unknown: %v", err)
	}
}

func TestCreateChildSA(t *testing.T) {
	mk := func(pfs bool) (side, side) {
		esp := []string{"aes128gcm16"}
		if pfs {
			esp = []string{"aes128gcm16-ecp256"}
		}
		a := side{esp: esp, localTS: []string{"10.1.0.0/24"}, remoteTS: []string{"10.2.0.0/24"}}
		b := side{esp: esp, localTS: []string{"10.2.0.0/24"}, remoteTS: []string{"10.1.0.0/24"}}
		return a, b
	}
	for _, pfs := range []bool{false, true} {
		t.Run(fmt.Sprint("pfs=", pfs), func(t *testing.T) {
			sa, sb := mk(pfs)
			p := newPair(t, sa, sb, Options{})
			second := func(m *Manager, local, remote string) {
				c := m.cfg.Connections[0]
				ch := &Child{Name: "two", LocalTS: mustTS(t, []string{local}), RemoteTS: mustTS(t, []string{remote}),
					Proposals: c.Children[0].Proposals, conn: c, Mode: sad.Tunnel, StartAction: StartNone}
				c.Children = append(c.Children, ch)
			}
			second(p.a.m, "10.1.1.0/24", "10.2.1.0/24")
			second(p.b.m, "10.2.1.0/24", "10.1.1.0/24")
			done, err := p.a.m.Initiate("conn")
			if err != nil {
				t.Fatal(err)
			}
			p.net.Pump()
			for range 2 {
				if err := <-done; err != nil {
					t.Fatalf("%v\n%s", err, p.b.dumpLogs())
				}
			}
			la, lb := p.a.inst.list(), p.b.inst.list()
			if len(la) != 2 || len(lb) != 2 {
				t.Fatalf("children a %d b %d", len(la), len(lb))
			}
			checkChildPair(t, la[0], lb[0])
			checkChildPair(t, la[1], lb[1])
			hasCCSA := false
			for _, h := range p.net.sent() {
				hasCCSA = hasCCSA || h.Exchange == message.CreateChildSA
			}
			if !hasCCSA {
				t.Error("no CREATE_CHILD_SA exchange")
			}
			if pfs && bytes.Equal(la[1].Out.EncKey, la[0].Out.EncKey) {
				t.Error("same keys")
			}
		})
	}
}

func TestCreateChildInvalidKE(t *testing.T) {
	for _, tc := range []struct {
		a, b    string
		retries int
	}{
		{"aes128gcm16-x25519-ecp256", "aes128gcm16-ecp256", 1},        // b wants ecp256: one retry
		{"aes128gcm16-x25519-ecp256", "aes128gcm16-ecp256-x25519", 0}, // b takes a's x25519
	} {
		t.Run(tc.b, func(t *testing.T) {
			p := newPair(t, side{esp: []string{tc.a}}, side{esp: []string{tc.b}}, Options{})
			if err := p.initiate("conn"); err != nil {
				t.Fatal(err)
			}
			if _, err := p.a.m.Terminate("conn.net"); err != nil {
				t.Fatal(err)
			}
			p.net.Pump()
			if err := p.initiate("conn.net"); err != nil {
				t.Fatalf("%v\n%s", err, p.a.dumpLogs())
			}
			p.established(t)
			n := 0
			for _, h := range p.net.sent() {
				if h.Exchange == message.CreateChildSA && !h.IsResponse() {
					n++
				}
			}
			if n != 1+tc.retries {
				t.Errorf("%d CREATE_CHILD_SA requests, want %d", n, 1+tc.retries)
			}
		})
	}
}

func TestTrap(t *testing.T) {
	p := newPair(t, side{start: StartTrap, localTS: []string{"10.1.0.0/24"}, remoteTS: []string{"10.2.0.0/24"}},
		side{localTS: []string{"10.2.0.0/24"}, remoteTS: []string{"10.1.0.0/24"}}, Options{})
	p.a.m.Start()
	if len(p.a.inst.traps) != 1 {
		t.Fatalf("traps %v", p.a.inst.traps)
	}
	var id sad.ChildID
	for k := range p.a.inst.traps {
		id = k
	}
	if c, ch, ok := p.a.m.ChildName(id); !ok || c != "conn" || ch != "net" {
		t.Errorf("ChildName(%d) = %s %s %v", id, c, ch, ok)
	}
	p.a.m.Acquire(id)
	p.a.m.Acquire(id) // a second acquire while negotiating does nothing
	p.net.Pump()
	ca, _ := p.established(t)
	if ca.ID != id {
		t.Errorf("child installed as %d, want the trap's ID %d", ca.ID, id)
	}
	if inits := len(p.b.m.IKESAs()); inits != 1 {
		t.Errorf("%d IKE SAs at the responder", inits)
	}
	// Deleting the child brings the trap back.
	p.b.m.Terminate("conn")
	p.net.Pump()
	if _, ok := p.a.inst.traps[id]; !ok {
		t.Error("trap not reinstalled after the child went")
	}
}

func TestStartAction(t *testing.T) {
	p := newPair(t, side{start: StartStart}, side{}, Options{})
	p.a.m.Start()
	p.b.m.Start()
	p.net.Pump()
	p.established(t)
}

func TestNotifiesAnswered(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	// b sends what strongSwan sends a second after the SA is up.
	got := make(chan *message.Message, 1)
	p.b.m.mu.Lock()
	for _, sa := range p.b.m.sas {
		sa.sendRequest(message.Informational, []message.Payload{message.NewNotify(message.NoAdditionalAddresses, nil)},
			func(m *message.Message, _ []byte) { got <- m }, nil)
	}
	p.b.m.unlock()
	p.net.Pump()
	select {
	case m := <-got:
		if len(m.Payloads) != 0 {
			t.Errorf("answer carries %d payloads", len(m.Payloads))
		}
	default:
		t.Fatal("no answer to NO_ADDITIONAL_ADDRESSES")
	}
	if len(p.a.m.IKESAs()) != 1 {
		t.Error("SA lost")
	}
}

func TestInitiateUnknown(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	if _, err := p.a.m.Initiate("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("initiate unknown: %v", err)
	}
}

func TestIdentityParsing(t *testing.T) {
	for _, tc := range []struct {
		in   string
		typ  message.IDType
		data string
	}{
		{"192.0.2.1", message.IDIPv4, "\xc0\x00\x02\x01"},
		{"2001:db8::1", message.IDIPv6, "\x20\x01\x0d\xb8" + string(make([]byte, 11)) + "\x01"},
		{"moon.example.org", message.IDFQDN, "moon.example.org"},
		{"@moon.example.org", message.IDFQDN, "moon.example.org"},
		{"carol@example.org", message.IDRFC822, "carol@example.org"},
		{"@@carol", message.IDRFC822, "carol"},
		{"@#0a1b", message.IDKeyID, "\x0a\x1b"},
		{"keyid:hello", message.IDKeyID, "hello"},
		{"fqdn:192.0.2.1", message.IDFQDN, "192.0.2.1"},
		{"email:x@y", message.IDRFC822, "x@y"},
	} {
		id, err := ParseIdentity(tc.in)
		if err != nil || id.IDType != tc.typ || string(id.Data) != tc.data {
			t.Errorf("ParseIdentity(%q) = %v %q, %v", tc.in, id.IDType, id.Data, err)
		}
	}
	for _, bad := range []string{"%any", "", "C=CH, X=y", "C=CH,,O=x", "@#zz", "ipv4:2001:db8::1"} {
		if _, err := ParseIdentity(bad); err == nil {
			t.Errorf("ParseIdentity(%q) succeeded", bad)
		}
	}
}

func TestPSKLookup(t *testing.T) {
	cfg := &Config{Secrets: []*Secret{
		{IDs: nil, Key: []byte("wildcard")},
		{IDs: []string{"a.example.org"}, Key: []byte("a-only")},
		{IDs: []string{"a.example.org", "b.example.org"}, Key: []byte("a-b")},
		{IDs: []string{"c.example.org"}, Key: []byte("c")},
	}}
	if err := cfg.prepare(); err != nil {
		t.Fatal(err)
	}
	id := func(s string) *message.Identity { i, _ := ParseIdentity(s); return &i }
	for _, tc := range []struct{ l, r, want string }{
		{"a.example.org", "b.example.org", "a-b"},
		{"a.example.org", "x.example.org", "a-only"},
		{"x.example.org", "c.example.org", "c"},
		{"x.example.org", "y.example.org", "wildcard"},
		{"A.EXAMPLE.ORG", "B.example.org", "a-b"},
	} {
		k, ok := cfg.lookupPSK(id(tc.l), id(tc.r))
		if !ok || string(k) != tc.want {
			t.Errorf("lookupPSK(%s, %s) = %q", tc.l, tc.r, k)
		}
	}
	for _, tc := range []struct{ in, want string }{{"0x6869", "hi"}, {"0saGk=", "hi"}, {"plain", "plain"}} {
		if k, err := ParsePSK(tc.in); err != nil || string(k) != tc.want {
			t.Errorf("ParsePSK(%q) = %q, %v", tc.in, k, err)
		}
	}
}
