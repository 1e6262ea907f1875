package ike

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/internal/xform"
)

// testCipher returns a fixed-key cipher: AES-GCM, or AES-CBC with
// HMAC-SHA-256 when cbc.
func testCipher(t testing.TB, cbc bool) *ikecrypto.Cipher {
	t.Helper()
	name := "aes128gcm16"
	if cbc {
		name = "aes256"
	}
	var e *ikecrypto.Encr
	for _, x := range ikecrypto.Encrs() {
		if x.Name == name {
			e = x
		}
	}
	var integ *xform.Integ
	var ik []byte
	if cbc {
		integ, _ = ikecrypto.LookupInteg(xform.AuthHMACSHA256128)
		ik = bytes.Repeat([]byte{7}, integ.KeyLen)
	}
	c, err := ikecrypto.NewCipher(e, bytes.Repeat([]byte{3}, e.KeyLen()), integ, ik)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bigMessage returns an IKE_AUTH request whose payloads take about n
// octets.
func bigMessage(n int) *message.Message {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 7)
	}
	return &message.Message{SPIi: 1, SPIr: 2, Exchange: message.IKEAuth, Flags: message.FlagInitiator, MessageID: 1,
		Payloads: []message.Payload{&message.IDi{Identity: message.FQDNIdentity("a.example.org")},
			&message.VendorID{Data: data}, message.NewNotify(message.InitialContact, nil)}}
}

// splitOpen fragments m to maxLen octets and opens every fragment.
func splitOpen(t *testing.T, m *message.Message, c *ikecrypto.Cipher, maxLen int) []*ikecrypto.Fragment {
	t.Helper()
	wires, err := ikecrypto.EncryptFragments(m, c, maxLen)
	if err != nil {
		t.Fatal(err)
	}
	var out []*ikecrypto.Fragment
	for _, w := range wires {
		if len(w) > maxLen {
			t.Fatalf("fragment of %d octets, limit %d", len(w), maxLen)
		}
		_, f, err := ikecrypto.DecryptFragment(w, c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func TestFragSetRoundTrip(t *testing.T) {
	for _, cbc := range []bool{false, true} {
		c := testCipher(t, cbc)
		for _, size := range []int{100, 1000, 5000, 30000} {
			for _, maxLen := range []int{200, 548, 1232, 1452} {
				for _, order := range []string{"in order", "reversed", "shuffled with duplicates"} {
					t.Run(fmt.Sprintf("cbc=%v/%d/%d/%s", cbc, size, maxLen, order), func(t *testing.T) {
						m := bigMessage(size)
						frags := splitOpen(t, m, c, maxLen)
						if len(frags) > MaxFragments {
							t.Skipf("%d fragments exceed MaxFragments: covered by TestFragSetBounds", len(frags))
						}
						seq := append([]*ikecrypto.Fragment(nil), frags...)
						switch order {
						case "reversed":
							for i, j := 0, len(seq)-1; i < j; i, j = i+1, j-1 {
								seq[i], seq[j] = seq[j], seq[i]
							}
						case "shuffled with duplicates":
							r := rand.New(rand.NewPCG(uint64(size), uint64(maxLen)))
							seq = append(seq, frags[r.IntN(len(frags))])
							r.Shuffle(len(seq), func(i, j int) { seq[i], seq[j] = seq[j], seq[i] })
						}
						s := newFragSet(m.MessageID, m.Exchange)
						complete, dups := 0, 0
						for i, f := range seq {
							cp := *f
							cp.Data = clone(f.Data)
							switch v := s.add(&cp); v {
							case fragComplete:
								complete++
								if i != len(seq)-1 && order != "shuffled with duplicates" {
									t.Fatalf("complete after %d of %d fragments", i+1, len(seq))
								}
							case fragDuplicate:
								dups++
							case fragStored:
							default:
								t.Fatalf("fragment %d/%d: %v", f.Number, f.Total, v)
							}
						}
						if complete != 1 || dups != len(seq)-len(frags) {
							t.Fatalf("%d completions, %d duplicates of %d fragments (%d sent)", complete, dups, len(frags), len(seq))
						}
						ps, err := s.payloads()
						if err != nil {
							t.Fatal(err)
						}
						want, wb, _ := message.MarshalPayloads(m.Payloads)
						got, gb, _ := message.MarshalPayloads(ps)
						if want != got || !bytes.Equal(wb, gb) {
							t.Fatal("reassembled payloads differ from the original")
						}
					})
				}
			}
		}
	}
}

func TestFragSetBounds(t *testing.T) {
	frag := func(n, total int, size int) *ikecrypto.Fragment {
		return &ikecrypto.Fragment{Number: uint16(n), Total: uint16(total), Data: make([]byte, size)}
	}
	tests := []struct {
		name  string
		seq   []*ikecrypto.Fragment
		want  []fragVerdict
		have  int // fragments kept at the end
		total int
	}{
		{"too many fragments", []*ikecrypto.Fragment{frag(1, MaxFragments+1, 10)}, []fragVerdict{fragTooMany}, 0, 0},
		{"at the limit", []*ikecrypto.Fragment{frag(MaxFragments, MaxFragments, 10)}, []fragVerdict{fragStored}, 1, MaxFragments},
		{"oversize", []*ikecrypto.Fragment{frag(1, 3, MaxReassembledSize/2), frag(2, 3, MaxReassembledSize/2), frag(3, 3, 1)},
			[]fragVerdict{fragStored, fragStored, fragTooBig}, 0, 3},
		{"exactly the largest message", []*ikecrypto.Fragment{frag(1, 2, MaxReassembledSize/2), frag(2, 2, MaxReassembledSize/2)},
			[]fragVerdict{fragStored, fragComplete}, 2, 2},
		{"duplicate", []*ikecrypto.Fragment{frag(2, 3, 10), frag(2, 3, 10)}, []fragVerdict{fragStored, fragDuplicate}, 1, 3},
		// RFC 7383 section 2.6: more Total Fragments restarts the set,
		// fewer is an old fragment.
		{"total grows", []*ikecrypto.Fragment{frag(1, 2, 10), frag(3, 4, 10), frag(1, 4, 10)},
			[]fragVerdict{fragStored, fragRestart, fragStored}, 2, 4},
		{"total shrinks", []*ikecrypto.Fragment{frag(1, 4, 10), frag(2, 2, 10), frag(2, 4, 10)},
			[]fragVerdict{fragStored, fragStale, fragStored}, 2, 4},
		{"number above total", []*ikecrypto.Fragment{frag(3, 2, 10)}, []fragVerdict{fragStale}, 0, 0},
		{"number zero", []*ikecrypto.Fragment{frag(0, 2, 10)}, []fragVerdict{fragStale}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newFragSet(5, message.Informational)
			for i, f := range tc.seq {
				if v := s.add(f); v != tc.want[i] {
					t.Fatalf("fragment %d (%d/%d): %v, want %v", i, f.Number, f.Total, v, tc.want[i])
				}
			}
			if s.have != tc.have || int(s.total) != tc.total {
				t.Errorf("set keeps %d of %d, want %d of %d", s.have, s.total, tc.have, tc.total)
			}
			kept, size := 0, 0
			for _, p := range s.parts {
				if p != nil {
					kept++
					size += len(p.Data)
				}
			}
			if kept != s.have || size != s.size || size > MaxReassembledSize {
				t.Errorf("bookkeeping: %d parts, %d octets; have %d, size %d", kept, size, s.have, s.size)
			}
		})
	}
}

// setFrag sets a peer's fragmentation mode and fragment size (before the
// IKE SA is set up).
func setFrag(p *peer, mode string, size int) {
	for _, c := range p.m.cfg.Connections {
		c.Fragmentation, c.FragmentSize = mode, size
	}
}

// skfSent counts the fragments each side sent, and whether each side's
// IKE_SA_INIT announced fragmentation.
func (p *pair) skfSent() (fromA, fromB int, annA, annB bool) {
	p.net.mu.Lock()
	defer p.net.mu.Unlock()
	for _, pk := range p.net.log {
		h, err := message.ParseHeader(pk.data)
		if err != nil {
			continue
		}
		a := pk.src.Addr() == addrA
		if h.NextPayload == message.PayloadSKF {
			if a {
				fromA++
			} else {
				fromB++
			}
		}
		if h.Exchange == message.IKESAInit {
			m, err := message.ParseMessage(pk.data)
			if err == nil && m.Notify(message.IKEv2FragmentationSupported) != nil {
				if a {
					annA = true
				} else {
					annB = true
				}
			}
		}
	}
	return
}

// wideSide is a side whose IKE_AUTH messages are large: many traffic
// selectors and ESP proposals.
func wideSide() side {
	var local, remote []string
	for i := range 12 {
		local = append(local, fmt.Sprintf("10.1.%d.0/24", i))
		remote = append(remote, fmt.Sprintf("10.2.%d.0/24", i))
	}
	return side{localTS: local, remoteTS: remote,
		esp: []string{"aes128gcm16-aes256gcm16-chacha20poly1305", "aes128-aes256-sha256-sha384-sha512"}}
}

func mirror(s side) side {
	s.localTS, s.remoteTS = s.remoteTS, s.localTS
	return s
}

func TestFragmentedIKEAuth(t *testing.T) {
	for _, tc := range []struct {
		name         string
		modeA, modeB string
		sizeA, sizeB int
		wantA, wantB bool // fragments sent
		annA, annB   bool
	}{
		{"both yes", FragmentationYes, FragmentationYes, 300, 300, true, true, true, true},
		{"both force, IPv4 default sizes", FragmentationForce, FragmentationForce, 576, 576, true, true, true, true},
		{"initiator accept", FragmentationAccept, FragmentationYes, 300, 300, false, true, true, true},
		{"responder accept", FragmentationYes, FragmentationAccept, 300, 300, true, false, true, true},
		{"initiator no", FragmentationNo, FragmentationYes, 300, 300, false, false, false, false},
		{"responder no", FragmentationYes, FragmentationNo, 300, 300, false, false, true, false},
		{"large enough", FragmentationYes, FragmentationYes, 0, 0, false, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, wideSide(), mirror(wideSide()), Options{})
			setFrag(p.a, tc.modeA, tc.sizeA)
			setFrag(p.b, tc.modeB, tc.sizeB)
			if err := p.initiate("conn"); err != nil {
				t.Fatalf("%v\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
			}
			p.established(t)
			fa, fb, annA, annB := p.skfSent()
			if (fa > 0) != tc.wantA || (fb > 0) != tc.wantB || annA != tc.annA || annB != tc.annB {
				t.Errorf("fragments sent: a %d, b %d; announced: a %v, b %v", fa, fb, annA, annB)
			}
			sa, sb := p.a.m.Stats(), p.b.m.Stats()
			if sa.FragmentsSent != uint64(fa) || sb.FragmentsSent != uint64(fb) ||
				sb.FragmentsReceived != uint64(fa) || sa.FragmentsReceived != uint64(fb) {
				t.Errorf("counters: a %+v, b %+v", sa, sb)
			}
			if (sb.Reassembled > 0) != tc.wantA || (sa.Reassembled > 0) != tc.wantB || sa.FragmentsRejected+sb.FragmentsRejected != 0 {
				t.Errorf("reassembled: a %d, b %d; rejected a %d, b %d", sa.Reassembled, sb.Reassembled, sa.FragmentsRejected, sb.FragmentsRejected)
			}
			// Every datagram respects the fragment size (IPv4 and UDP
			// headers and the non-ESP marker included).
			p.net.mu.Lock()
			for _, pk := range p.net.log {
				h, _ := message.ParseHeader(pk.data)
				size := tc.sizeA
				if pk.src.Addr() == addrB {
					size = tc.sizeB
				}
				if h != nil && h.NextPayload == message.PayloadSKF && len(pk.data)+20+8+4 > size {
					t.Errorf("fragment of %d octets over a fragment size of %d", len(pk.data), size)
				}
			}
			p.net.mu.Unlock()
			if p.a.m.fragBytes != 0 || p.b.m.fragBytes != 0 {
				t.Errorf("reassembly memory still counted: a %d, b %d", p.a.m.fragBytes, p.b.m.fragBytes)
			}
			// Later exchanges fragment too, on a rekeyed IKE SA as well:
			// the negotiation carries over.
			if tc.wantA {
				old, _ := p.a.ikeSPIs(t)
				if n, err := p.a.m.RekeyIKE("conn"); n != 1 || err != nil {
					t.Fatalf("RekeyIKE: %d, %v", n, err)
				}
				p.net.Pump()
				if now, _ := p.a.ikeSPIs(t); now == old {
					t.Fatal("IKE SA not rekeyed")
				}
				before := p.a.m.Stats().FragmentsSent
				p.a.m.lock()
				for _, sa := range p.a.m.sas {
					sa.sendRequest(message.Informational, []message.Payload{&message.VendorID{Data: make([]byte, 1000)}}, nil, nil)
				}
				p.a.m.unlock()
				p.net.Pump()
				if p.a.m.Stats().FragmentsSent == before || p.b.m.Stats().Reassembled < 2 {
					t.Errorf("INFORMATIONAL not fragmented: %+v / %+v", p.a.m.Stats(), p.b.m.Stats())
				}
			}
		})
	}
}

// isFrag matches fragment n (from 1) of IKE_AUTH in one direction.
func isFrag(response bool, n uint16) func(h *message.Header, p packet) bool {
	return func(h *message.Header, p packet) bool {
		if h.Exchange != message.IKEAuth || h.IsResponse() != response || h.NextPayload != message.PayloadSKF {
			return false
		}
		m, err := message.ParseMessage(p.data)
		return err == nil && m.Payloads[0].(*message.EncryptedFragment).Number == n
	}
}

func TestFragmentLossRecovers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		response bool
	}{{"request fragment lost", false}, {"response fragment lost", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, wideSide(), mirror(wideSide()), Options{})
			setFrag(p.a, FragmentationYes, 300)
			setFrag(p.b, FragmentationYes, 300)
			p.net.drop = dropFirst(1, isFrag(tc.response, 2))
			done, err := p.a.m.Initiate("conn")
			if err != nil {
				t.Fatal(err)
			}
			p.net.Pump()
			select {
			case err := <-done:
				t.Fatalf("done before the retransmission: %v", err)
			default:
			}
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
			if p.net.dropped != 1 || p.a.m.Stats().Retransmits != 1 {
				t.Errorf("dropped %d, retransmits %d", p.net.dropped, p.a.m.Stats().Retransmits)
			}
			if len(p.b.inst.history) != 1 {
				t.Errorf("responder installed %d Child SAs, want 1", len(p.b.inst.history))
			}
			// Count IKE_AUTH datagrams: the initiator resends all its
			// fragments; the responder answers a retransmitted request
			// once, on its first fragment, with all of its fragments.
			var reqs, resps, reqFrags, respFrags int
			p.net.mu.Lock()
			for _, pk := range p.net.log {
				h, _ := message.ParseHeader(pk.data)
				if h == nil || h.Exchange != message.IKEAuth {
					continue
				}
				m, _ := message.ParseMessage(pk.data)
				total := int(m.Payloads[0].(*message.EncryptedFragment).Total)
				if h.IsResponse() {
					resps, respFrags = resps+1, total
				} else {
					reqs, reqFrags = reqs+1, total
				}
			}
			p.net.mu.Unlock()
			wantResps := respFrags
			if tc.response {
				wantResps = 2 * respFrags
			}
			if reqs != 2*reqFrags || resps != wantResps {
				t.Errorf("IKE_AUTH datagrams: %d requests (%d fragments each), %d responses (%d fragments each)", reqs, reqFrags, resps, respFrags)
			}
			if !tc.response && !p.b.logged("duplicate fragment ignored") {
				t.Error("the responder logged no duplicate fragment")
			}
		})
	}
}

func TestFragmentRejected(t *testing.T) {
	t.Run("bad ICV", func(t *testing.T) {
		p := newPair(t, wideSide(), mirror(wideSide()), Options{})
		setFrag(p.a, FragmentationYes, 300)
		setFrag(p.b, FragmentationYes, 300)
		bad := dropFirst(1, isFrag(false, 2)) // used to pick, not to drop
		p.net.mutate = func(pk *packet) {
			if bad(*pk) {
				pk.data[len(pk.data)-1] ^= 1
			}
		}
		done, _ := p.a.m.Initiate("conn")
		p.net.Pump()
		if st := p.b.m.Stats(); st.FragmentsRejected != 1 || st.Reassembled != 0 {
			t.Fatalf("responder: %+v", st)
		}
		if !p.b.logged("IKE fragment dropped: fragment not authentic or malformed") {
			t.Errorf("no log line:\n%s", p.b.dumpLogs())
		}
		p.clock.Advance(DefaultRetransmitTimeout, p.net)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		p.established(t)
	})
	t.Run("timeout", func(t *testing.T) {
		p := newPair(t, wideSide(), mirror(wideSide()), Options{RetransmitTimeout: time.Hour, FragmentTimeout: 5 * time.Second})
		setFrag(p.a, FragmentationYes, 300)
		setFrag(p.b, FragmentationYes, 300)
		p.net.drop = dropFirst(1, isFrag(false, 2))
		if _, err := p.a.m.Initiate("conn"); err != nil {
			t.Fatal(err)
		}
		p.net.Pump()
		sets := func() (n int) {
			p.b.m.lock()
			defer p.b.m.unlock()
			for _, sa := range p.b.m.sas {
				for _, s := range sa.frag.sets {
					if s != nil {
						n++
					}
				}
			}
			return n
		}
		if n := sets(); n != 1 {
			t.Fatalf("%d sets in reassembly, want 1", n)
		}
		p.clock.Advance(4*time.Second, p.net)
		if n := sets(); n != 1 {
			t.Fatalf("set dropped before its timeout")
		}
		p.clock.Advance(2*time.Second, p.net)
		if n := sets(); n != 0 || p.b.m.Stats().FragmentsRejected != 1 {
			t.Fatalf("after the timeout: %d sets, %+v", n, p.b.m.Stats())
		}
		if !p.b.logged("incomplete fragmented message timed out") {
			t.Errorf("no log line:\n%s", p.b.dumpLogs())
		}
	})
	t.Run("not negotiated", func(t *testing.T) {
		// The responder said no; fragments the initiator sends anyway
		// are dropped without being stored.
		p := newPair(t, wideSide(), mirror(wideSide()), Options{})
		setFrag(p.b, FragmentationNo, 0)
		if err := p.initiate("conn"); err != nil {
			t.Fatal(err)
		}
		n := 0
		for range 5 {
			n += sendCrafted(t, p, 2, 1, 2, 100)
		}
		if st := p.b.m.Stats(); st.FragmentsRejected != uint64(n) || st.FragmentsReceived != 0 {
			t.Fatalf("responder: %+v", st)
		}
		// A burst is logged once.
		if l := p.b.logs.FilterMessageSnippet("IKE fragment dropped").Len(); l != 1 {
			t.Errorf("%d log lines for a burst of %d rejected fragments", l, n)
		}
	})
	t.Run("too many fragments", func(t *testing.T) {
		p := newPair(t, side{}, side{}, Options{})
		if err := p.initiate("conn"); err != nil {
			t.Fatal(err)
		}
		sendCrafted(t, p, 2, 1, MaxFragments+1, 100)
		if st := p.b.m.Stats(); st.FragmentsRejected != 1 || st.FragmentsReceived != 1 {
			t.Fatalf("responder: %+v", st)
		}
	})
	t.Run("memory of all sets", func(t *testing.T) {
		defer func(l int) { fragMemoryLimit = l }(fragMemoryLimit)
		fragMemoryLimit = 5000
		p := newPair(t, side{}, side{}, Options{})
		if err := p.initiate("conn"); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			sendCrafted(t, p, 2, i, 4, 2000)
		}
		st := p.b.m.Stats()
		if st.FragmentsRejected != 1 || st.FragmentsReceived != 3 || !p.b.logged("reassembly memory of all IKE SAs exhausted") {
			t.Fatalf("responder: %+v\n%s", st, p.b.dumpLogs())
		}
		if held := p.b.fragHeld(); held != 0 || p.b.m.fragBytes != 0 {
			t.Errorf("%d octets held, %d counted after the set was dropped", held, p.b.m.fragBytes)
		}
		sendCrafted(t, p, 2, 1, 4, 2000)
		if held := p.b.fragHeld(); held != 2000 || p.b.m.fragBytes != 2000 {
			t.Errorf("%d octets held, %d counted", held, p.b.m.fragBytes)
		}
	})
	t.Run("oversize", func(t *testing.T) {
		p := newPair(t, side{}, side{}, Options{})
		if err := p.initiate("conn"); err != nil {
			t.Fatal(err)
		}
		// 40 fragments of 2000 octets: over MaxReassembledSize at the
		// 33rd; the rest start a new set, which the test then drops.
		n := 0
		for i := 1; i <= 40; i++ {
			n += sendCrafted(t, p, 2, i, 40, 2000)
		}
		st := p.b.m.Stats()
		if st.FragmentsRejected != 1 || st.Reassembled != 0 || st.FragmentsReceived != uint64(n) {
			t.Fatalf("responder: %+v", st)
		}
		p.b.m.lock()
		for _, sa := range p.b.m.sas {
			if s := sa.frag.sets[0]; s != nil && s.size > MaxReassembledSize {
				t.Errorf("set holds %d octets", s.size)
			}
		}
		p.b.m.unlock()
	})
}

// fragHeld returns the octets the peer's fragment sets hold.
func (p *peer) fragHeld() int {
	p.m.lock()
	defer p.m.unlock()
	n := 0
	for _, sa := range p.m.sas {
		for _, s := range sa.frag.sets {
			if s != nil {
				n += s.size
			}
		}
	}
	return n
}

// sendCrafted sends the established responder fragment number n of total
// (of size octets) of an INFORMATIONAL request with message ID id, sealed
// with the initiator's keys; it returns 1.
func sendCrafted(t *testing.T, p *pair, id uint32, n, total, size int) int {
	t.Helper()
	var sa *ikeSA
	p.a.m.lock()
	for _, s := range p.a.m.sas {
		sa = s
	}
	p.a.m.unlock()
	if sa == nil || sa.out == nil {
		t.Fatal("no IKE SA at the initiator")
	}
	hdr := &message.Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: message.Informational, Flags: message.FlagInitiator, MessageID: id}
	f := &ikecrypto.Fragment{Number: uint16(n), Total: uint16(total), Data: make([]byte, size)}
	if n == 1 {
		f.NextPayload = message.PayloadVendorID
	}
	w, err := ikecrypto.EncryptFragment(hdr, sa.out, f)
	if err != nil {
		t.Fatal(err)
	}
	p.b.m.HandleMessage(w, sa.remote, true)
	return 1
}

// FuzzFragSet adds arbitrary fragments to a set: each record is Fragment
// Number, Total Fragments (one octet each), a data length octet and the
// data. The set must keep its bounds and its bookkeeping, and a complete
// set must reassemble the data in number order or fail cleanly.
func FuzzFragSet(f *testing.F) {
	c := testCipher(f, false)
	for _, maxLen := range []int{200, 400} {
		wires, _ := ikecrypto.EncryptFragments(bigMessage(300), c, maxLen)
		var seed []byte
		for i := len(wires) - 1; i >= 0; i-- {
			_, fr, _ := ikecrypto.DecryptFragment(wires[i], c)
			d := fr.Data[:min(len(fr.Data), 255)]
			seed = append(seed, byte(fr.Number), byte(fr.Total), byte(len(d)))
			seed = append(seed, d...)
		}
		f.Add(seed)
	}
	f.Add([]byte{1, 2, 3, 'a', 'b', 'c', 2, 2, 1, 'd'})
	f.Add([]byte{1, 1, 0})
	f.Add([]byte{1, 65, 1, 0, 2, 3, 1, 0, 2, 4, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		// model is the expected state, kept the plain way.
		var model struct {
			total int
			parts map[int][]byte
			size  int
		}
		reset := func(total int) { model.total, model.parts, model.size = total, map[int][]byte{}, 0 }
		reset(0)
		s := newFragSet(1, message.IKEAuth)
		for len(data) >= 3 {
			n, total, l := int(data[0]), int(data[1]), int(data[2])
			data = data[3:]
			l = min(l, len(data))
			d := data[:l]
			data = data[l:]
			fr := &ikecrypto.Fragment{Number: uint16(n), Total: uint16(total), Data: clone(d)}
			if n == 1 {
				fr.NextPayload = message.PayloadIDi
			}
			want := fragStored
			switch {
			case total == 0 || n == 0 || n > total:
				want = fragStale
			case total > MaxFragments:
				want = fragTooMany
			case model.total != 0 && total < model.total:
				want = fragStale
			case model.total != 0 && total == model.total && model.parts[n] != nil:
				want = fragDuplicate
			default:
				if model.total != 0 && total > model.total {
					want = fragRestart
				}
				if model.total == 0 || total > model.total {
					reset(total)
				}
				if model.size+l > MaxReassembledSize {
					want = fragTooBig
					reset(model.total)
					break
				}
				model.parts[n] = append([]byte{}, d...)
				model.size += l
				if len(model.parts) == model.total {
					want = fragComplete
				}
			}
			if v := s.add(fr); v != want {
				t.Fatalf("fragment %d/%d: %v, want %v", n, total, v, want)
			}
			if s.have != len(model.parts) || int(s.total) != model.total || s.size != model.size || len(s.parts) != int(s.total) {
				t.Fatalf("set: have %d total %d size %d; model %d %d %d", s.have, s.total, s.size, len(model.parts), model.total, model.size)
			}
			if s.size > MaxReassembledSize || s.total > MaxFragments {
				t.Fatalf("bounds: total %d size %d", s.total, s.size)
			}
			if want != fragComplete {
				continue
			}
			var joined []byte
			for i := 1; i <= model.total; i++ {
				joined = append(joined, model.parts[i]...)
			}
			if s.parts[0].NextPayload != message.PayloadIDi {
				t.Fatal("first fragment lost its Next Payload")
			}
			ps, err := s.payloads()
			direct, derr := message.ParsePayloads(message.PayloadIDi, joined)
			if (err == nil) != (derr == nil) || len(ps) != len(direct) {
				t.Fatalf("reassembly %v (%d payloads), parsing the joined data %v (%d)", err, len(ps), derr, len(direct))
			}
			s = newFragSet(1, message.IKEAuth)
			reset(0)
		}
	})
}

// FuzzFragmentedRequests sends an established responder authentic
// fragments of its choosing: each record is Fragment Number, Total
// Fragments, a message ID offset from the expected one (0-3), a length and
// the data, sealed with the initiator's keys. The responder must not
// panic, keep at most two sets within their bounds, and answer only with
// messages it can open as the initiator.
func FuzzFragmentedRequests(f *testing.F) {
	c := testCipher(f, false)
	msg := &message.Message{Exchange: message.Informational, Payloads: []message.Payload{message.NewNotify(message.InitialContact, nil),
		&message.VendorID{Data: bytes.Repeat([]byte("goipsec"), 60)}}}
	wires, _ := ikecrypto.EncryptFragments(msg, c, 200)
	var seed []byte
	for i := len(wires) - 1; i >= 0; i-- {
		_, fr, _ := ikecrypto.DecryptFragment(wires[i], c)
		seed = append(seed, byte(fr.Number), byte(fr.Total), 0, byte(len(fr.Data)))
		seed = append(seed, fr.Data...)
	}
	f.Add(seed)
	f.Add([]byte{1, 1, 0, 4, 0, 0, 0, 4})
	f.Add([]byte{1, 2, 1, 1, 0, 2, 2, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newPair(t, side{}, side{}, Options{})
		if err := p.initiate("conn"); err != nil {
			t.Fatal(err)
		}
		var sa *ikeSA
		for _, s := range p.a.m.sas {
			sa = s
		}
		p.net.mu.Lock()
		p.net.log = nil
		p.net.mu.Unlock()
		for len(data) >= 4 {
			n, total, off, l := data[0], data[1], data[2]%4, int(data[3])
			data = data[4:]
			l = min(l, len(data))
			hdr := &message.Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: message.Informational, Flags: message.FlagInitiator, MessageID: 2 + uint32(off) - 1}
			fr := &ikecrypto.Fragment{Number: uint16(n), Total: uint16(total), Data: data[:l]}
			if n == 1 && l > 0 {
				fr.NextPayload = message.PayloadNotify
			}
			data = data[l:]
			w, err := ikecrypto.EncryptFragment(hdr, sa.out, fr)
			if err != nil {
				t.Fatal(err)
			}
			p.b.m.HandleMessage(w, sa.remote, true)
			p.b.m.lock()
			held := 0
			for _, bsa := range p.b.m.sas {
				for _, s := range bsa.frag.sets {
					if s != nil && (s.size > MaxReassembledSize || s.total > MaxFragments || s.have > int(s.total)) {
						t.Fatalf("set out of bounds: total %d have %d size %d", s.total, s.have, s.size)
					}
					if s != nil {
						held += s.size
					}
				}
			}
			if held != p.b.m.fragBytes {
				t.Fatalf("sets hold %d octets, %d counted", held, p.b.m.fragBytes)
			}
			p.b.m.unlock()
		}
		p.net.mu.Lock()
		defer p.net.mu.Unlock()
		for _, pk := range p.net.log {
			if pk.src.Addr() != addrB {
				continue
			}
			if _, err := ikecrypto.Decrypt(pk.data, sa.in); err != nil {
				if _, _, ferr := ikecrypto.DecryptFragment(pk.data, sa.in); ferr != nil {
					t.Fatalf("responder sent a message the initiator cannot open: %v / %v", err, ferr)
				}
			}
		}
	})
}

func TestFragMaxLen(t *testing.T) {
	for _, tc := range []struct {
		size   int
		remote string
		natt   bool
		want   int
	}{
		{0, "192.0.2.1:4500", true, 1280 - 20 - 8 - 4},
		{0, "192.0.2.1:500", false, 1280 - 20 - 8},
		{576, "192.0.2.1:4500", true, 576 - 32},
		{0, "[2001:db8::1]:4500", true, 1280 - 40 - 8 - 4},
		{1500, "[2001:db8::1]:500", false, 1500 - 48},
	} {
		sa := &ikeSA{conn: &Connection{FragmentSize: tc.size}, remote: netip.MustParseAddrPort(tc.remote), natt: tc.natt}
		if got := sa.fragMaxLen(); got != tc.want {
			t.Errorf("%d to %s (natt %v): %d, want %d", tc.size, tc.remote, tc.natt, got, tc.want)
		}
	}
}

// TestFragmentedCertChain authenticates two goipsec Managers with
// certificates two intermediate CAs deep, each end sending its chain: the
// IKE_AUTH messages of several kilobytes go as fragments both ways at the
// default fragment size.
func TestFragmentedCertChain(t *testing.T) {
	root := newTestCA(t, "root", testKey(t, "p256-root"), nil)
	inter := newTestCA(t, "intermediate", testKey(t, "rsa-inter"), root)
	inter2 := newTestCA(t, "intermediate 2", testKey(t, "rsa-inter2"), inter)
	ka, kb := testKey(t, "rsa-a"), testKey(t, "rsa-b")
	chainA := []*x509.Certificate{inter2.issue(t, ka, "a", []string{"a.example.org"}, validFrom, validUntil), inter2.cert, inter.cert}
	chainB := []*x509.Certificate{inter2.issue(t, kb, "b", []string{"b.example.org"}, validFrom, validUntil), inter2.cert, inter.cert}
	p := newPair(t, side{tweak: certSide(chainA, ka, root.cert)}, side{tweak: certSide(chainB, kb, root.cert)}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatalf("%v\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
	}
	p.established(t)
	fa, fb, annA, annB := p.skfSent()
	if fa < 2 || fb < 2 || !annA || !annB {
		t.Errorf("fragments sent: a %d, b %d; announced: a %v, b %v", fa, fb, annA, annB)
	}
	if !p.a.logged("peer authenticated with its certificate") || !p.b.logged("peer authenticated with its certificate") {
		t.Error("no certificate authentication logged")
	}
	p.net.mu.Lock()
	defer p.net.mu.Unlock()
	for _, pk := range p.net.log {
		if len(pk.data)+20+8+4 > DefaultFragmentSize {
			t.Errorf("a datagram of %d octets over the default fragment size", len(pk.data))
		}
	}
}
