package ike

import (
	"net/netip"
	"testing"

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
