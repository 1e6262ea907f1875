package ike

import (
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/message"
)

// initRequests returns IKE_SA_INIT requests an initiator sends, as seeds.
func initRequests(t testing.TB) [][]byte {
	var out [][]byte
	for _, props := range [][]string{{"aes128gcm16-prfsha256-x25519"}, {"aes256-sha384-ecp384"}, {"chacha20poly1305-prfsha256-modp2048"}, nil} {
		p := newPair(t, side{proposals: props}, side{}, Options{})
		if _, err := p.a.m.Initiate("conn"); err != nil {
			t.Fatal(err)
		}
		p.net.mu.Lock()
		out = append(out, p.net.queue[0].data)
		p.net.mu.Unlock()
	}
	return out
}

// FuzzResponderInit feeds a responder arbitrary first messages. It must
// never panic, keep at most one half-open IKE SA per message, answer only
// with well-formed responses, and forget everything when closed.
func FuzzResponderInit(f *testing.F) {
	for _, s := range initRequests(f) {
		f.Add(s, false)
		f.Add(s, true)
		f.Add(s[:len(s)-1], false)
		f.Add(s[:message.HeaderLen], false)
	}
	from := netip.MustParseAddrPort("192.0.2.1:500")
	cfg := side{id: "b.example.org", peerID: "a.example.org"}.config(f, addrB, addrA)
	f.Fuzz(func(t *testing.T, data []byte, natt bool) {
		n := newFakeNet(t)
		inst := newFakeInstaller()
		m, err := NewManager(cfg, Options{Transport: n.transport(addrB), Installer: inst, Clock: newFakeClock(), PlainIKE: true})
		if err != nil {
			t.Fatal(err)
		}
		m.HandleMessage(data, from, natt)
		sas := m.IKESAs()
		if len(sas) > 1 || (len(sas) == 1 && sas[0].State != "HALF_OPEN") {
			t.Fatalf("responder state after one message: %+v", sas)
		}
		for _, p := range n.log {
			h, err := message.ParseHeader(p.data)
			if err != nil || !h.IsResponse() || h.Exchange != message.IKESAInit || p.dst != from || p.natt != natt {
				t.Fatalf("bad answer: %v %+v", err, h)
			}
			if _, err := message.ParseMessage(p.data); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
		}
		// A retransmission is answered the same way and creates nothing.
		before := len(n.log)
		m.HandleMessage(data, from, natt)
		if got := m.IKESAs(); len(got) != len(sas) {
			t.Fatalf("retransmission changed the state: %d -> %d SAs", len(sas), len(got))
		}
		if len(sas) == 1 && len(n.log) != before+1 {
			t.Fatalf("retransmission answered %d times", len(n.log)-before)
		}
		m.Close()
		if len(m.IKESAs()) != 0 || len(inst.list()) != 0 {
			t.Fatal("state left after Close")
		}
	})
}

// FuzzResponderAddKE feeds a responder arbitrary payloads, properly
// encrypted, in an IKE_INTERMEDIATE request of a half-open hybrid IKE SA
// (followup false) or an IKE_FOLLOWUP_KE request of an established one. It
// must never panic, answer the request, and keep at most the one IKE SA.
func FuzzResponderAddKE(f *testing.F) {
	seed := func(ps ...message.Payload) []byte {
		first, plain, err := message.MarshalPayloads(ps)
		if err != nil {
			f.Fatal(err)
		}
		return append([]byte{byte(first)}, plain...)
	}
	f.Add(seed(&message.KE{Method: 36, Data: make([]byte, 1184)}), false)
	f.Add(seed(&message.KE{Method: 37, Data: make([]byte, 1568)}), false)
	f.Add(seed(&message.KE{Method: 36, Data: make([]byte, 10)}), false)
	f.Add(seed(), false)
	f.Add(seed(message.NewNotify(message.AdditionalKeyExchange, []byte{1, 2, 3, 4, 5, 6, 7, 8}), &message.KE{Method: 36, Data: make([]byte, 1184)}), true)
	f.Add(seed(message.NewNotify(message.AdditionalKeyExchange, nil)), true)
	f.Fuzz(func(t *testing.T, data []byte, followup bool) {
		if len(data) == 0 {
			return
		}
		ps, err := message.ParsePayloads(message.PayloadType(data[0]), data[1:])
		if err != nil {
			return // parsing itself is FuzzDecrypt's and FuzzParseMessage's
		}
		const prop = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
		p := newPair(t, side{proposals: []string{prop}, esp: []string{"aes256gcm16-x25519-ke1_mlkem768"}},
			side{proposals: []string{prop}, esp: []string{"aes256gcm16-x25519-ke1_mlkem768"}}, Options{})
		ex := message.IKEFollowupKE
		if !followup {
			ex = message.IKEIntermediate
			p.net.drop = func(pk packet) bool {
				h, err := message.ParseHeader(pk.data)
				return err == nil && h.Exchange == message.IKEIntermediate
			}
			p.a.m.Initiate("conn")
			p.net.Pump()
		} else if err := p.initiate("conn"); err != nil {
			t.Fatal(err)
		}
		p.net.drop = nil
		p.a.m.mu.Lock()
		var sa *ikeSA
		for _, s := range p.a.m.sas {
			sa = s
		}
		mid := sa.nextReqID
		if !followup {
			mid = 1
		}
		wire, err := ikecrypto.Encrypt(&message.Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: ex, Flags: sa.flags(false), MessageID: mid, Payloads: ps}, sa.out)
		p.a.m.mu.Unlock()
		if err != nil {
			return
		}
		before := len(p.net.log)
		p.b.m.HandleMessage(wire, netip.AddrPortFrom(addrA, 4500), true)
		if sas := p.b.m.IKESAs(); len(sas) > 1 {
			t.Fatalf("responder state: %+v", sas)
		}
		answered := 0
		for _, pk := range p.net.log[before:] {
			h, err := message.ParseHeader(pk.data)
			if err != nil || !h.IsResponse() || h.Exchange != ex || h.MessageID != mid {
				t.Fatalf("bad answer: %v %+v", err, h)
			}
			answered++
		}
		if answered != 1 {
			t.Fatalf("%d answers", answered)
		}
		p.a.m.Close()
		p.b.m.Close()
		p.b.noState(t, "responder")
	})
}
