package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
)

// hybridPair starts two netstack daemons over loopback with the given
// proposals; init names the initiating end ("a", "b", or "none").
func hybridPair(t *testing.T, ikeA, ikeB, esp, init string) *ikeDaemons {
	t.Helper()
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pa, remotePort: pb, ike: ikeA, esp: esp,
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: "pq secret"}
	b := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pb, remotePort: pa, ike: ikeB, esp: esp,
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: "pq secret"}
	if init != "a" {
		a.start = "none"
	}
	p := startDaemons(t, a, b)
	if init == "b" {
		// Once both listen: b started first would wait for a
		// retransmission.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.b.Initiate(ctx, "link"); err != nil {
			t.Fatalf("initiate from b: %v", err)
		}
	}
	return p
}

// ikeSPIs returns the SPIs of d's single IKE SA.
func ikeSPIs(t *testing.T, d *Daemon) (uint64, uint64, string) {
	t.Helper()
	sas := d.IKE().IKESAs()
	if len(sas) != 1 {
		return 0, 0, ""
	}
	return sas[0].SPIi, sas[0].SPIr, sas[0].Proposal
}

// TestIKEDaemonsHybrid runs two goipsec daemons with ML-KEM as an RFC 9370
// additional key exchange, started by either end: traffic through the
// Child SA, a Child SA rekey with hybrid PFS and an IKE SA rekey with the
// additional key exchange, each followed by traffic.
func TestIKEDaemonsHybrid(t *testing.T) {
	for _, tc := range []struct{ ike, esp string }{
		{"aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16-x25519-ke1_mlkem768"},
		{"aes256gcm16-prfsha384-x25519-ke1_mlkem1024", "aes256gcm16-x25519-ke1_mlkem1024"},
		{"aes256gcm16-prfsha384-mlkem768", "aes256gcm16-mlkem768"},
	} {
		for _, init := range []string{"a", "b"} {
			t.Run(tc.ike+"/init="+init, func(t *testing.T) {
				p := hybridPair(t, tc.ike, tc.ike, tc.esp, init)
				waitChild(t, p.a, true)
				waitChild(t, p.b, true)
				for _, d := range []*Daemon{p.a, p.b} {
					if _, _, prop := ikeSPIs(t, d); prop != tc.ike {
						t.Fatalf("IKE SA proposal %q, want %q", prop, tc.ike)
					}
				}
				if sas := p.a.IKE().IKESAs(); len(sas) != 1 || sas[0].Initiator != (init == "a") {
					t.Errorf("a's IKE SA %+v: the initiator should be %s", sas, init)
				}
				exchange(t, p, 256<<10)

				// Child SA rekey with x25519 + ML-KEM PFS.
				ctx := context.Background()
				oldA, oldB := outSPI(p.a), outSPI(p.b)
				if err := p.b.Rekey(ctx, "link"); err != nil {
					t.Fatalf("rekey: %v", err)
				}
				waitSPIChange(t, p.a, oldA)
				waitSPIChange(t, p.b, oldB)
				sas := p.a.IKE().IKESAs()
				wantESP, err := proposal.Parse(message.ProtoESP, tc.esp)
				if err != nil {
					t.Fatal(err)
				}
				if len(sas) != 1 || len(sas[0].Children) != 1 || sas[0].Children[0].Proposal != proposal.Format(&wantESP) {
					t.Errorf("after the Child SA rekey: %+v", sas)
				}
				exchange(t, p, 256<<10)

				// IKE SA rekey with the additional key exchange.
				i0, r0, _ := ikeSPIs(t, p.a)
				if n, err := p.a.IKE().RekeyIKE("link"); err != nil || n != 1 {
					t.Fatalf("RekeyIKE: %d, %v", n, err)
				}
				deadline := time.Now().Add(10 * time.Second)
				for {
					i1, r1, prop := ikeSPIs(t, p.a)
					bi, br, _ := ikeSPIs(t, p.b)
					if i1 != 0 && i1 != i0 && r1 != r0 && bi == i1 && br == r1 {
						if prop != tc.ike {
							t.Errorf("rekeyed IKE SA proposal %q", prop)
						}
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("IKE SA not rekeyed: a %+v, b %+v", p.a.IKE().IKESAs(), p.b.IKE().IKESAs())
					}
					time.Sleep(10 * time.Millisecond)
				}
				exchange(t, p, 256<<10)
				// And a Child SA rekey over the new IKE SA.
				oldA = outSPI(p.a)
				if err := p.a.Rekey(ctx, "link"); err != nil {
					t.Fatalf("rekey: %v", err)
				}
				waitSPIChange(t, p.a, oldA)
				exchange(t, p, 64<<10)
			})
		}
	}
}

// TestIKEDaemonsHybridFallback: a peer without additional key exchanges
// gets a classic IKE SA when the initiator offers one too, and
// NO_PROPOSAL_CHOSEN, with no state left on either end, when it does not.
func TestIKEDaemonsHybridFallback(t *testing.T) {
	const (
		hybrid  = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
		classic = "aes256gcm16-prfsha384-x25519"
	)
	t.Run("fallback", func(t *testing.T) {
		p := hybridPair(t, hybrid+", "+classic, classic, "aes256gcm16", "a")
		waitChild(t, p.a, true)
		waitChild(t, p.b, true)
		for _, d := range []*Daemon{p.a, p.b} {
			if _, _, prop := ikeSPIs(t, d); prop != classic {
				t.Errorf("IKE SA proposal %q, want %q", prop, classic)
			}
		}
		exchange(t, p, 64<<10)
	})
	t.Run("mismatch", func(t *testing.T) {
		p := hybridPair(t, hybrid, classic, "aes256gcm16", "none")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := p.a.Initiate(ctx, "link")
		if err == nil || !strings.Contains(err.Error(), "NO_PROPOSAL_CHOSEN") {
			t.Fatalf("initiate: %v, want NO_PROPOSAL_CHOSEN", err)
		}
		for _, d := range []*Daemon{p.a, p.b} {
			if sas := d.IKE().IKESAs(); len(sas) != 0 {
				t.Errorf("IKE SAs left: %+v", sas)
			}
			if in, out := d.SAD.Len(); in+out != 0 {
				t.Errorf("%d Child SAs left", in+out)
			}
		}
	})
}

// waitSPIChange waits until d's outbound SPI is no longer old.
func waitSPIChange(t *testing.T, d *Daemon, old uint32) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); outSPI(d) == old; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("outbound SPI %08x did not change", old)
		}
	}
}
