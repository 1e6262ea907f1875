package ike

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/message"
)

// exchanges counts the messages of each exchange type sent on the fake
// network (a message sent in fragments once).
func (n *fakeNet) exchanges() map[message.ExchangeType]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[message.ExchangeType]int{}
	for _, p := range n.log {
		m, err := message.ParseMessage(p.data)
		if err != nil {
			continue
		}
		if len(m.Payloads) == 1 {
			if f, ok := m.Payloads[0].(*message.EncryptedFragment); ok && f.Number != 1 {
				continue
			}
		}
		out[m.Exchange]++
	}
	return out
}

// lastIKEKeys returns the last IKE SA keys a peer derived.
func (p *peer) lastIKEKeys(t *testing.T) *KeyMaterial {
	t.Helper()
	p.keyMu.Lock()
	defer p.keyMu.Unlock()
	for i := len(p.keys) - 1; i >= 0; i-- {
		if p.keys[i].IKE != nil {
			return &p.keys[i]
		}
	}
	t.Fatal("no IKE keys derived")
	return nil
}

func hybridSides(ike, esp []string) (side, side) {
	return side{proposals: ike, esp: esp, localTS: []string{"10.1.0.0/24"}, remoteTS: []string{"10.2.0.0/24"}},
		side{proposals: ike, esp: esp, localTS: []string{"10.2.0.0/24"}, remoteTS: []string{"10.1.0.0/24"}}
}

// TestHybridEstablish sets up IKE SAs with additional ML-KEM key exchanges
// in IKE_INTERMEDIATE, started by either end.
func TestHybridEstablish(t *testing.T) {
	for _, tc := range []struct {
		proposal      string
		intermediates int
	}{
		{"aes256gcm16-prfsha384-x25519-ke1_mlkem768", 1},
		{"aes256gcm16-prfsha384-x25519-ke1_mlkem1024", 1},
		{"aes128-sha256-prfsha256-ecp256-ke1_mlkem768", 1},
		{"aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024", 2},
		{"aes256gcm16-prfsha384-mlkem768", 0},
		{"aes256gcm16-prfsha384-mlkem1024-ke1_x25519", 1},
	} {
		for _, by := range []string{"a", "b"} {
			t.Run(tc.proposal+"/by="+by, func(t *testing.T) {
				sa, sb := hybridSides([]string{tc.proposal}, []string{"aes256gcm16"})
				p := newPair(t, sa, sb, Options{})
				if by == "b" {
					p.a, p.b = p.b, p.a
				}
				if err := p.initiate("conn"); err != nil {
					t.Fatalf("initiate: %v\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
				}
				p.established(t)
				for _, pp := range []*peer{p.a, p.b} {
					sas := pp.m.IKESAs()
					if len(sas) != 1 || sas[0].State != "ESTABLISHED" || sas[0].Proposal != tc.proposal {
						t.Fatalf("IKE SAs %+v, want one established with %s", sas, tc.proposal)
					}
				}
				ex := p.net.exchanges()
				if ex[message.IKEIntermediate] != 2*tc.intermediates || ex[message.IKEAuth] != 2 {
					t.Errorf("exchanges %v, want %d IKE_INTERMEDIATE messages", ex, 2*tc.intermediates)
				}
				// Both ends end with the same keys, and each additional
				// key exchange changed them.
				ka, kb := p.a.lastIKEKeys(t), p.b.lastIKEKeys(t)
				if !bytes.Equal(ka.IKE.D, kb.IKE.D) || !bytes.Equal(ka.IKE.Ei, kb.IKE.Ei) || !bytes.Equal(ka.IKE.Pr, kb.IKE.Pr) {
					t.Error("final IKE SA keys differ between the ends")
				}
				if n := len(p.a.keys); n < 2+tc.intermediates {
					t.Errorf("%d key derivations at a, want %d", n, 2+tc.intermediates)
				}
				if tc.intermediates > 0 && bytes.Equal(p.a.keys[0].IKE.D, ka.IKE.D) {
					t.Error("SK_d did not change after the additional key exchange")
				}
			})
		}
	}
}

// TestHybridFallback: a peer that does not propose additional key
// exchanges gets a classic IKE SA when the other end allows one, and
// NO_PROPOSAL_CHOSEN (no state left) when it insists.
func TestHybridFallback(t *testing.T) {
	const (
		hybrid   = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
		classic  = "aes256gcm16-prfsha384-x25519"
		optional = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"
	)
	for _, tc := range []struct {
		name       string
		a, b       []string
		want       string // "" for NO_PROPOSAL_CHOSEN
		intermedia int
	}{
		{"initiator offers fallback proposal", []string{hybrid, classic}, []string{classic}, classic, 0},
		{"initiator ADDKE optional", []string{optional}, []string{classic}, classic, 0},
		{"responder ADDKE optional", []string{classic}, []string{optional}, classic, 0},
		{"responder prefers hybrid", []string{classic, hybrid}, []string{hybrid, classic}, hybrid, 1},
		{"both optional", []string{optional}, []string{optional}, hybrid, 1},
		{"initiator insists", []string{hybrid}, []string{classic}, "", 0},
		{"responder insists", []string{classic}, []string{hybrid}, "", 0},
		{"different ML-KEM", []string{hybrid}, []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem1024"}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := hybridSides(tc.a, []string{"aes256gcm16"})
			sb.proposals = tc.b
			p := newPair(t, sa, sb, Options{})
			err := p.initiate("conn")
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "NO_PROPOSAL_CHOSEN") {
					t.Fatalf("initiate: %v, want NO_PROPOSAL_CHOSEN", err)
				}
				if hint := strings.Contains(err.Error(), "add a classic proposal"); hint != strings.Contains(tc.a[0], "ke1_") {
					t.Errorf("hint about additional key exchanges: %v (%v)", hint, err)
				}
				p.a.noState(t, "initiator")
				p.b.noState(t, "responder")
				return
			}
			if err != nil {
				t.Fatalf("initiate: %v\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
			}
			p.established(t)
			for _, pp := range []*peer{p.a, p.b} {
				if sas := pp.m.IKESAs(); len(sas) != 1 || sas[0].Proposal != tc.want {
					t.Errorf("IKE SAs %+v, want %s", sas, tc.want)
				}
			}
			if n := p.net.exchanges()[message.IKEIntermediate]; n != 2*tc.intermedia {
				t.Errorf("%d IKE_INTERMEDIATE messages, want %d", n, 2*tc.intermedia)
			}
			if fellBack := p.a.logged("without an additional key exchange"); fellBack != (tc.intermedia == 0 && tc.want != tc.a[0] && strings.Contains(tc.a[0], "ke1_")) {
				t.Errorf("fallback logged: %v\n%s", fellBack, p.a.dumpLogs())
			}
		})
	}
}

// TestHybridNoIntermediateSupport: a responder never selects additional
// key exchanges from an initiator that did not announce IKE_INTERMEDIATE
// (here: the notification is stripped on the way, which then also breaks
// AUTH, so the responder must have answered without ADDKE first).
func TestHybridNoIntermediateSupport(t *testing.T) {
	sa, sb := hybridSides([]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16-prfsha384-x25519"}, []string{"aes256gcm16"})
	p := newPair(t, sa, sb, Options{})
	var chosen string
	p.net.mutate = func(pk *packet) {
		h, err := message.ParseHeader(pk.data)
		if err != nil || h.Exchange != message.IKESAInit {
			return
		}
		m, err := message.ParseMessage(pk.data)
		if err != nil {
			t.Fatal(err)
		}
		if h.IsResponse() {
			if s, ok := m.Get(message.PayloadSA).(*message.SA); ok {
				chosen = fmt.Sprint(s.Proposals[0].Transforms)
			}
			return
		}
		var keep []message.Payload
		for _, pl := range m.Payloads {
			if n, ok := pl.(*message.Notify); ok && n.NotifyType == message.IntermediateExchangeSupported {
				continue
			}
			keep = append(keep, pl)
		}
		m.Payloads = keep
		if pk.data, err = m.Marshal(); err != nil {
			t.Fatal(err)
		}
	}
	done, err := p.a.m.Initiate("conn")
	if err != nil {
		t.Fatal(err)
	}
	p.net.Pump()
	<-done
	if chosen == "" || strings.Contains(chosen, "ADDKE") {
		t.Errorf("responder chose %q from an initiator without INTERMEDIATE_EXCHANGE_SUPPORTED", chosen)
	}
	if n := p.net.exchanges()[message.IKEIntermediate]; n != 0 {
		t.Errorf("%d IKE_INTERMEDIATE messages", n)
	}
}

// TestHybridIntermediateLost: a lost IKE_INTERMEDIATE response is
// retransmitted from the responder's cache, sealed with the keys before the
// update, and the exchange is processed once.
func TestHybridIntermediateLost(t *testing.T) {
	sa, sb := hybridSides([]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"}, []string{"aes256gcm16"})
	p := newPair(t, sa, sb, Options{})
	lost := dropFirst(1, func(h *message.Header, _ packet) bool { return h.Exchange == message.IKEIntermediate && h.IsResponse() })
	lostReq := dropFirst(1, func(h *message.Header, _ packet) bool {
		return h.Exchange == message.IKEIntermediate && !h.IsResponse() && h.MessageID == 2
	})
	p.net.drop = func(pk packet) bool { return lost(pk) || lostReq(pk) }
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
	if st := p.a.m.Stats(); st.Retransmits != 2 {
		t.Errorf("%d retransmissions, want 2", st.Retransmits)
	}
}

// TestHybridChildRekey rekeys a Child SA with PFS through x25519 plus
// ML-KEM-768 in IKE_FOLLOWUP_KE, started by either end, and creates a
// second Child SA the same way.
func TestHybridChildRekey(t *testing.T) {
	for _, esp := range []string{"aes256gcm16-x25519-ke1_mlkem768", "aes256gcm16-mlkem768", "aes256gcm16-x25519-ke1_mlkem1024-ke2_mlkem768"} {
		for _, by := range []string{"a", "b"} {
			t.Run(esp+"/by="+by, func(t *testing.T) {
				sa, sb := hybridSides([]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, []string{esp})
				p := newPair(t, sa, sb, Options{})
				if err := p.initiate("conn"); err != nil {
					t.Fatalf("initiate: %v\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
				}
				p.established(t)
				p.a.inst.peer, p.b.inst.peer = p.b.inst, p.a.inst
				a0, b0 := p.converged(t)
				init := p.a
				if by == "b" {
					init = p.b
				}
				for round := range 2 {
					before := p.net.exchanges()[message.IKEFollowupKE]
					if n, err := init.m.Rekey("conn"); err != nil || n != 1 {
						t.Fatalf("Rekey: %d, %v", n, err)
					}
					p.net.Pump()
					p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
					a1, b1 := p.converged(t)
					changed(t, a0, a1)
					changed(t, b0, b1)
					a0, b0 = a1, b1
					want := 2 * strings.Count(esp, "-ke")
					if got := p.net.exchanges()[message.IKEFollowupKE] - before; got != want {
						t.Errorf("round %d: %d IKE_FOLLOWUP_KE messages, want %d", round, got, want)
					}
				}
				for _, pp := range []*peer{p.a, p.b} {
					if sas := pp.m.IKESAs(); len(sas) != 1 || len(sas[0].Children) != 1 || sas[0].Children[0].Proposal != esp+"-noesn" &&
						!strings.HasPrefix(sas[0].Children[0].Proposal, "aes256gcm16-") {
						t.Errorf("IKE SAs %+v", sas)
					}
					pp.m.mu.Lock()
					for _, s := range pp.m.sas {
						if len(s.followups) != 0 {
							t.Errorf("%d IKE_FOLLOWUP_KE states left", len(s.followups))
						}
					}
					pp.m.mu.Unlock()
				}
			})
		}
	}
}

// TestHybridChildRekeyRefused: the responder that insists on ML-KEM PFS
// refuses a rekey without it; the Child SA stays up.
func TestHybridChildRekeyRefused(t *testing.T) {
	sa, sb := hybridSides(nil, []string{"aes256gcm16-x25519"})
	sb.esp = []string{"aes256gcm16-x25519-ke1_mlkem768"}
	p := newPair(t, sa, sb, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatalf("initiate: %v", err)
	}
	p.established(t)
	if n, err := p.a.m.Rekey("conn"); err != nil || n != 1 {
		t.Fatalf("Rekey: %d, %v", n, err)
	}
	p.net.Pump()
	if !p.b.logged("CREATE_CHILD_SA refused: answering with NO_PROPOSAL_CHOSEN") {
		t.Errorf("responder log:\n%s", p.b.dumpLogs())
	}
	p.established(t)
}

// TestHybridIKERekey rekeys a hybrid IKE SA, with the additional key
// exchange in IKE_FOLLOWUP_KE, started by either end.
func TestHybridIKERekey(t *testing.T) {
	for _, by := range []string{"a", "b"} {
		t.Run("by="+by, func(t *testing.T) {
			const prop = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
			sa, sb := hybridSides([]string{prop}, []string{"aes256gcm16-x25519-ke1_mlkem768"})
			p := newPair(t, sa, sb, Options{})
			if err := p.initiate("conn"); err != nil {
				t.Fatalf("initiate: %v", err)
			}
			p.established(t)
			p.a.inst.peer, p.b.inst.peer = p.b.inst, p.a.inst
			init := p.a
			if by == "b" {
				init = p.b
			}
			i0, r0 := p.a.ikeSPIs(t)
			for round := range 2 {
				kBefore := init.lastIKEKeys(t).IKE.D
				fBefore := p.net.exchanges()[message.IKEFollowupKE]
				if n, err := init.m.RekeyIKE("conn"); err != nil || n != 1 {
					t.Fatalf("RekeyIKE: %d, %v", n, err)
				}
				p.net.Pump()
				i1, r1 := p.a.ikeSPIs(t)
				if bi, br := p.b.ikeSPIs(t); bi != i1 || br != r1 || i1 == i0 || r1 == r0 {
					t.Fatalf("round %d: IKE SPIs a %x/%x, b %x/%x, before %x/%x\n--- a:\n%s--- b:\n%s", round, i1, r1, bi, br, i0, r0, p.a.dumpLogs(), p.b.dumpLogs())
				}
				i0, r0 = i1, r1
				if got := p.net.exchanges()[message.IKEFollowupKE] - fBefore; got != 2 {
					t.Errorf("%d IKE_FOLLOWUP_KE messages, want 2", got)
				}
				ka, kb := p.a.lastIKEKeys(t), p.b.lastIKEKeys(t)
				if !bytes.Equal(ka.IKE.D, kb.IKE.D) || bytes.Equal(ka.IKE.D, kBefore) || ka.Proposal != prop {
					t.Errorf("rekeyed IKE keys differ between the ends or did not change (%s)", ka.Proposal)
				}
				// The new IKE SA works: a hybrid Child SA rekey over it.
				p.a.m.Rekey("conn")
				p.net.Pump()
				p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
				p.converged(t)
			}
		})
	}
}

// hybridRekeyPair is rekeyPair with ML-KEM-768 as additional key exchange
// for the IKE SA and the Child SA's PFS.
func hybridRekeyPair(t *testing.T) *pair {
	t.Helper()
	sa, sb := hybridSides([]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, []string{"aes256gcm16-x25519-ke1_mlkem768"})
	p := newPair(t, sa, sb, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatalf("initiate: %v", err)
	}
	p.established(t)
	p.a.inst.peer, p.b.inst.peer = p.b.inst, p.a.inst
	return p
}

// TestHybridRekeyCollisions: both ends rekey the Child SA, or the IKE SA,
// at the same moment, with IKE_FOLLOWUP_KE exchanges interleaved: one SA
// survives on both ends and works.
func TestHybridRekeyCollisions(t *testing.T) {
	t.Run("child", func(t *testing.T) {
		p := hybridRekeyPair(t)
		a0, b0 := p.converged(t)
		for round := range 4 {
			if n, _ := p.a.m.Rekey("conn"); n != 1 {
				t.Fatal("a did not start a rekey")
			}
			if n, _ := p.b.m.Rekey("conn"); n != 1 {
				t.Fatal("b did not start a rekey")
			}
			p.net.Pump()
			p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
			a1, b1 := p.converged(t)
			changed(t, a0, a1)
			changed(t, b0, b1)
			a0, b0 = a1, b1
			_ = round
		}
		if !p.a.logged("collision") || !p.b.logged("collision") {
			t.Error("no collision logged")
		}
	})
	t.Run("ike", func(t *testing.T) {
		p := hybridRekeyPair(t)
		p.converged(t)
		i0, _ := p.a.ikeSPIs(t)
		for round := range 6 {
			p.a.m.RekeyIKE("conn")
			p.b.m.RekeyIKE("conn")
			p.net.Pump()
			p.clock.Advance(time.Minute, p.net)
			i1, _ := p.a.ikeSPIs(t)
			if bi, _ := p.b.ikeSPIs(t); bi != i1 || i1 == i0 {
				t.Fatalf("round %d: IKE SPIs after the collision: a %x, b %x, before %x\n--- a:\n%s--- b:\n%s", round, i1, bi, i0, p.a.dumpLogs(), p.b.dumpLogs())
			}
			i0 = i1
			p.converged(t)
			p.b.m.Rekey("conn")
			p.net.Pump()
			p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
			p.converged(t)
		}
		if !p.a.logged("collision") && !p.b.logged("collision") {
			t.Error("no IKE SA collision seen")
		}
	})
}

// TestIntermediateNotify: INTERMEDIATE_EXCHANGE_SUPPORTED goes out only
// with proposals that have additional key exchanges, and the responder
// echoes it.
func TestIntermediateNotify(t *testing.T) {
	for _, tc := range []struct {
		a, b          string
		wantReq, resp bool
	}{
		{"aes256gcm16-prfsha384-x25519", "aes256gcm16-prfsha384-x25519", false, false},
		{"aes256gcm16-prfsha384-mlkem768", "aes256gcm16-prfsha384-mlkem768", false, false},
		{"aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16-prfsha384-x25519-ke1_mlkem768", true, true},
		{"aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none", "aes256gcm16-prfsha384-x25519", true, true},
	} {
		sa, sb := hybridSides([]string{tc.a}, []string{"aes256gcm16"})
		sb.proposals = []string{tc.b}
		p := newPair(t, sa, sb, Options{})
		if err := p.initiate("conn"); err != nil {
			t.Fatalf("%s: %v", tc.a, err)
		}
		p.net.mu.Lock()
		for _, pk := range p.net.log {
			m, err := message.ParseMessage(pk.data)
			if err != nil || m.Exchange != message.IKESAInit {
				continue
			}
			got := m.Notify(message.IntermediateExchangeSupported) != nil
			want := tc.wantReq
			if m.IsResponse() {
				want = tc.resp
			}
			if got != want {
				t.Errorf("%s: IKE_SA_INIT response=%v carries INTERMEDIATE_EXCHANGE_SUPPORTED: %v, want %v", tc.a, m.IsResponse(), got, want)
			}
		}
		p.net.mu.Unlock()
	}
}

// TestIntermediateRefused: the responder answers INVALID_SYNTAX and
// forgets the half-open IKE SA when the initiator's IKE_INTERMEDIATE lacks
// the selected key exchange, or IKE_AUTH comes before it.
func TestIntermediateRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		ex   message.ExchangeType
		ps   []message.Payload
	}{
		{"wrong method", message.IKEIntermediate, []message.Payload{&message.KE{Method: 37, Data: make([]byte, 1568)}}},
		{"no KE", message.IKEIntermediate, nil},
		{"bad KE data", message.IKEIntermediate, []message.Payload{&message.KE{Method: 36, Data: make([]byte, 1183)}}},
		{"IKE_AUTH first", message.IKEAuth, []message.Payload{&message.IDi{Identity: message.FQDNIdentity("a.example.org")},
			&message.Auth{Method: message.AuthSharedKey, Data: make([]byte, 48)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := hybridSides([]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, []string{"aes256gcm16"})
			p := newPair(t, sa, sb, Options{})
			p.net.drop = func(pk packet) bool {
				h, err := message.ParseHeader(pk.data)
				return err == nil && h.Exchange == message.IKEIntermediate
			}
			if _, err := p.a.m.Initiate("conn"); err != nil {
				t.Fatal(err)
			}
			p.net.Pump()
			p.net.drop = nil
			if sas := p.b.m.IKESAs(); len(sas) != 1 || sas[0].State != "HALF_OPEN" {
				t.Fatalf("responder: %+v", sas)
			}
			p.a.m.mu.Lock()
			var ini *ikeSA
			for _, s := range p.a.m.sas {
				ini = s
			}
			wire, err := ikecrypto.Encrypt(&message.Message{SPIi: ini.spiI, SPIr: ini.spiR, Exchange: tc.ex, Flags: ini.flags(false), MessageID: 1, Payloads: tc.ps}, ini.out)
			p.a.m.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			before := len(p.net.log)
			p.b.m.HandleMessage(wire, netip.AddrPortFrom(addrA, 4500), true)
			if len(p.net.log) != before+1 {
				t.Fatalf("%d answers", len(p.net.log)-before)
			}
			resp, err := ikecrypto.Decrypt(p.net.log[before].data, ini.in)
			if err != nil {
				t.Fatal(err)
			}
			if n := firstError(resp); n == nil || n.NotifyType != message.InvalidSyntax {
				t.Errorf("answer %v, want INVALID_SYNTAX", resp.Payloads)
			}
			p.b.noState(t, "responder")
		})
	}
}

// TestHybridFollowupLost: a lost IKE_FOLLOWUP_KE response is answered
// again from the responder's cache; a responder whose initiator never
// continues drops the pending Child SA and its SPI after a while.
func TestHybridFollowupLost(t *testing.T) {
	t.Run("response lost", func(t *testing.T) {
		p := hybridRekeyPair(t)
		a0, b0 := p.converged(t)
		p.net.drop = dropFirst(1, func(h *message.Header, _ packet) bool { return h.Exchange == message.IKEFollowupKE && h.IsResponse() })
		p.a.m.Rekey("conn")
		p.net.Pump()
		p.clock.Advance(DefaultRetransmitTimeout, p.net)
		p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
		a1, b1 := p.converged(t)
		changed(t, a0, a1)
		changed(t, b0, b1)
		if st := p.a.m.Stats(); st.Retransmits != 1 || !p.b.logged("retransmitted request: resending our response") || p.b.logged("STATE_NOT_FOUND") {
			t.Errorf("%d retransmissions; responder log:\n%s", st.Retransmits, p.b.dumpLogs())
		}
	})
	t.Run("initiator gone", func(t *testing.T) {
		p := hybridRekeyPair(t)
		p.converged(t)
		p.net.drop = func(pk packet) bool {
			h, err := message.ParseHeader(pk.data)
			return err == nil && h.Exchange == message.IKEFollowupKE
		}
		p.a.m.Rekey("conn")
		p.net.Pump()
		p.b.m.mu.Lock()
		pending, reserved := 0, len(p.b.m.reserved)
		for _, s := range p.b.m.sas {
			pending += len(s.followups)
		}
		p.b.m.mu.Unlock()
		if pending != 1 || reserved != 1 {
			t.Fatalf("responder: %d followups, %d reserved SPIs; want 1, 1", pending, reserved)
		}
		p.clock.Advance(followupTimeout+time.Second, p.net)
		p.b.m.mu.Lock()
		pending, reserved = 0, len(p.b.m.reserved)
		for _, s := range p.b.m.sas {
			pending += len(s.followups)
		}
		p.b.m.mu.Unlock()
		if pending != 0 || reserved != 0 {
			t.Errorf("after the timeout: %d followups, %d reserved SPIs", pending, reserved)
		}
		if !p.b.logged("did not continue with IKE_FOLLOWUP_KE") {
			t.Error("not logged")
		}
		// The initiator gives up on the silent peer.
		p.clock.Advance(10*time.Minute, p.net)
		p.a.noState(t, "initiator")
	})
}

// BenchmarkHybridEstablish measures a whole IKE SA setup (both ends, in
// memory) with classic and hybrid proposals, and reports the octets on the
// wire of the setup and of its largest message.
func BenchmarkHybridEstablish(b *testing.B) {
	for _, prop := range []string{
		"aes256gcm16-prfsha384-x25519",
		"aes256gcm16-prfsha384-x25519-ke1_mlkem768",
		"aes256gcm16-prfsha384-x25519-ke1_mlkem1024",
		"aes256gcm16-prfsha384-mlkem768",
	} {
		b.Run(prop, func(b *testing.B) {
			sa, sb := hybridSides([]string{prop}, []string{"aes256gcm16"})
			var total, largest int
			for b.Loop() {
				p := newPair(b, sa, sb, Options{})
				done, err := p.a.m.Initiate("conn")
				if err != nil {
					b.Fatal(err)
				}
				p.net.Pump()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				total, largest = 0, 0
				for _, pk := range p.net.log {
					total += len(pk.data)
					largest = max(largest, len(pk.data))
				}
				p.a.m.Close()
				p.b.m.Close()
			}
			b.ReportMetric(float64(total), "wire-B/setup")
			b.ReportMetric(float64(largest), "largest-B")
		})
	}
}

// opens authenticates and decrypts a message or a fragment of one with c.
func opens(b []byte, c *ikecrypto.Cipher) error {
	h, err := message.ParseHeader(b)
	if err != nil {
		return err
	}
	if h.NextPayload == message.PayloadSKF {
		_, _, err = ikecrypto.DecryptFragment(b, c)
		return err
	}
	_, err = ikecrypto.Decrypt(b, c)
	return err
}

// TestIntermediateResponderKeepsKeys: the responder switches to the keys of
// an additional key exchange only with the initiator's next request, so a
// retransmitted IKE_INTERMEDIATE request (or a fragment of it, which is
// authenticated before the cached answer goes out) still opens.
func TestIntermediateResponderKeepsKeys(t *testing.T) {
	sa, sb := hybridSides([]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, []string{"aes256gcm16"})
	p := newPair(t, sa, sb, Options{})
	var req []byte
	p.net.drop = func(pk packet) bool {
		h, err := message.ParseHeader(pk.data)
		if err != nil || h.Exchange != message.IKEIntermediate {
			return false
		}
		if !h.IsResponse() && req == nil {
			req = pk.data
		}
		return h.IsResponse() && h.MessageID == 1 && p.net.dropped == 0
	}
	done, err := p.a.m.Initiate("conn")
	if err != nil {
		t.Fatal(err)
	}
	p.net.Pump()
	p.b.m.mu.Lock()
	var resp *ikeSA
	for _, s := range p.b.m.sas {
		resp = s
	}
	errOld := opens(req, resp.in)
	pendingUpdate := resp.inter != nil && resp.inter.next != nil
	p.b.m.mu.Unlock()
	if errOld != nil || !pendingUpdate {
		t.Fatalf("after answering: the request opens with the responder's keys: %v; update pending: %v", errOld, pendingUpdate)
	}
	p.clock.Advance(DefaultRetransmitTimeout, p.net)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.established(t)
	p.b.m.mu.Lock()
	defer p.b.m.mu.Unlock()
	for _, s := range p.b.m.sas {
		if err := opens(req, s.in); err == nil {
			t.Error("the responder still uses the keys from before the update")
		}
	}
}

// TestHybridCertAuth: with certificate authentication the signatures cover
// IntAuth too (RFC 9242 section 3.3.2), both key types, both roles.
func TestHybridCertAuth(t *testing.T) {
	root := newTestCA(t, "root", testKey(t, "p256-root"), nil)
	for _, keys := range [][2]string{{"p256-a", "ed25519-b"}, {"rsa-a", "p384-b"}} {
		t.Run(keys[0]+"-"+keys[1], func(t *testing.T) {
			ka, kb := testKey(t, keys[0]), testKey(t, keys[1])
			chainA := []*x509.Certificate{root.issue(t, ka, "a", []string{"a.example.org"}, validFrom, validUntil)}
			chainB := []*x509.Certificate{root.issue(t, kb, "b", []string{"b.example.org"}, validFrom, validUntil)}
			sa, sb := hybridSides([]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, []string{"aes256gcm16"})
			sa.tweak, sb.tweak = certSide(chainA, ka, root.cert), certSide(chainB, kb, root.cert)
			p := newPair(t, sa, sb, Options{})
			if err := p.initiate("conn"); err != nil {
				t.Fatalf("initiate: %v\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
			}
			p.established(t)
			if !p.a.logged("peer authenticated with its certificate") || !p.b.logged("peer authenticated with its certificate") {
				t.Error("no certificate authentication logged")
			}
			if n := p.net.exchanges()[message.IKEIntermediate]; n != 2 {
				t.Errorf("%d IKE_INTERMEDIATE messages", n)
			}
		})
	}
}

// TestHybridReauth: a reauthentication (reauth_time) sets up the new IKE SA
// with the additional key exchange in IKE_INTERMEDIATE again.
func TestHybridReauth(t *testing.T) {
	p := hybridRekeyPair(t)
	p.b.inst.peer = nil // as in TestReauth: the fake installer knows no policies
	a0, _ := p.converged(t)
	old := p.a.m.IKESAs()[0]
	p.a.m.mu.Lock()
	p.a.m.cfg.Connections[0].ReauthTime = 10 * time.Minute
	for _, sa := range p.a.m.sas {
		sa.armIKERekey()
	}
	p.a.m.mu.Unlock()
	before := p.net.exchanges()[message.IKEIntermediate]
	p.clock.Advance(10*time.Minute+time.Second, p.net)
	p.clock.Advance(DefaultRekeyGrace+2*time.Second, p.net)
	a1, _ := p.converged(t)
	changed(t, a0, a1)
	sas := p.a.m.IKESAs()
	if len(sas) != 1 || sas[0].SPIi == old.SPIi || sas[0].Proposal != "aes256gcm16-prfsha384-x25519-ke1_mlkem768" {
		t.Fatalf("IKE SAs %+v after reauth_time, want one new hybrid one:\n%s", sas, p.a.dumpLogs())
	}
	if n := p.net.exchanges()[message.IKEIntermediate] - before; n != 2 {
		t.Errorf("%d IKE_INTERMEDIATE messages in the reauthentication, want 2", n)
	}
}

// TestHybridFragmentation: with IKE fragmentation (the default) and
// ML-KEM-1024, the IKE_INTERMEDIATE and IKE_FOLLOWUP_KE messages of both
// ends go as fragments no larger than the fragment size, the responder's
// before IKE_AUTH picked its connection too; setup, a hybrid Child SA rekey
// and an IKE SA rekey work.
func TestHybridFragmentation(t *testing.T) {
	for _, prop := range []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem1024", "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"} {
		t.Run(prop, func(t *testing.T) {
			sa, sb := hybridSides([]string{prop}, []string{"aes256gcm16-x25519-ke1_mlkem1024"})
			p := newPair(t, sa, sb, Options{})
			if err := p.initiate("conn"); err != nil {
				t.Fatalf("initiate: %v\n%s", err, p.b.dumpLogs())
			}
			p.established(t)
			p.a.inst.peer, p.b.inst.peer = p.b.inst, p.a.inst
			a0, b0 := p.converged(t)
			p.b.m.Rekey("conn")
			p.net.Pump()
			p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
			a1, b1 := p.converged(t)
			changed(t, a0, a1)
			changed(t, b0, b1)
			i0, _ := p.a.ikeSPIs(t)
			p.a.m.RekeyIKE("conn")
			p.net.Pump()
			if i1, _ := p.a.ikeSPIs(t); i1 == i0 {
				t.Error("IKE SA not rekeyed")
			}
			// IPv4, NAT-T port: 1280 less IP, UDP and the non-ESP marker.
			const limit = 1280 - 20 - 8 - 4
			frags := map[bool]int{}
			p.net.mu.Lock()
			for _, pk := range p.net.log {
				h, err := message.ParseHeader(pk.data)
				if err != nil {
					continue
				}
				if h.NextPayload == message.PayloadSKF {
					frags[h.IsResponse()]++
				}
				if h.Exchange != message.IKESAInit && len(pk.data) > limit {
					t.Errorf("%v (response %v, msgid %d) of %d octets, over %d", h.Exchange, h.IsResponse(), h.MessageID, len(pk.data), limit)
				}
			}
			p.net.mu.Unlock()
			if frags[false] == 0 || frags[true] == 0 {
				t.Errorf("fragments sent: requests %d, responses %d", frags[false], frags[true])
			}
		})
	}
}

// TestFragBeforeIKEAuth: before IKE_AUTH a responder fragments as all its
// candidate connections allow, at the smallest of their fragment sizes.
func TestFragBeforeIKEAuth(t *testing.T) {
	remote := netip.MustParseAddrPort("192.0.2.1:4500")
	both := fragState{local: true, peer: true}
	for _, tc := range []struct {
		name  string
		cands []*Connection
		send  bool
		max   int
	}{
		{"one", []*Connection{{Fragmentation: FragmentationYes}}, true, 1280 - 32},
		{"smallest size", []*Connection{{Fragmentation: FragmentationYes, FragmentSize: 1400}, {Fragmentation: FragmentationForce, FragmentSize: 1200}}, true, 1200 - 32},
		{"one accepts only", []*Connection{{Fragmentation: FragmentationYes}, {Fragmentation: FragmentationAccept}}, false, 0},
		{"none", nil, false, 0},
	} {
		sa := &ikeSA{cands: tc.cands, frag: both, remote: remote, natt: true}
		if got := sa.fragSend(); got != tc.send {
			t.Errorf("%s: fragSend %v, want %v", tc.name, got, tc.send)
		}
		if tc.send {
			if got := sa.fragMaxLen(); got != tc.max {
				t.Errorf("%s: fragMaxLen %d, want %d", tc.name, got, tc.max)
			}
		}
	}
}
