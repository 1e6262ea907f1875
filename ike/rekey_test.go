package ike

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/goipsec/goipsec/sad"
)

// rekeyPair establishes a pair for rekey tests, with PFS (a key exchange
// in the ESP proposal) or without, and turns on the make-before-break
// checks of the fake installers.
func rekeyPair(t *testing.T, pfs bool) *pair {
	t.Helper()
	esp := []string{"aes128gcm16"}
	if pfs {
		esp = []string{"aes128gcm16-x25519"}
	}
	sa := side{esp: esp, localTS: []string{"10.1.0.0/24"}, remoteTS: []string{"10.2.0.0/24"}}
	sb := side{esp: esp, localTS: []string{"10.2.0.0/24"}, remoteTS: []string{"10.1.0.0/24"}}
	p := newPair(t, sa, sb, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatalf("initiate: %v\n--- a:\n%s--- b:\n%s", err, p.a.dumpLogs(), p.b.dumpLogs())
	}
	p.established(t)
	p.a.inst.peer, p.b.inst.peer = p.b.inst, p.a.inst
	return p
}

// snapshot is one end's current Child SA.
type snapshot struct {
	id       sad.ChildID
	in, out  uint32
	outKey   []byte
	inbounds int
}

func (p *peer) snap(t *testing.T) snapshot {
	t.Helper()
	l := p.inst.list()
	if len(l) != 1 {
		t.Fatalf("%d children installed, want 1", len(l))
	}
	c := l[0]
	return snapshot{id: c.ID, in: c.In.SPI, out: c.Out.SPI, outKey: clone(c.Out.EncKey), inbounds: len(p.inst.inSAs(c.ID))}
}

// converged checks that each end has exactly one inbound SA, the one the
// other sends on, with the same keys, one Child SA in its state and no
// make-before-break violation.
func (p *pair) converged(t *testing.T) (snapshot, snapshot) {
	t.Helper()
	a, b := p.a.snap(t), p.b.snap(t)
	for _, x := range []struct {
		name     string
		from, to *peer
	}{{"a->b", p.a, p.b}, {"b->a", p.b, p.a}} {
		out := x.from.inst.list()[0].Out
		ins := x.to.inst.inSAs(x.to.inst.list()[0].ID)
		if len(ins) != 1 {
			t.Errorf("%s: the receiver has %d inbound SAs, want 1\n--- a:\n%s--- b:\n%s", x.name, len(ins), p.a.dumpLogs(), p.b.dumpLogs())
		}
		in, ok := ins[out.SPI]
		if !ok {
			t.Errorf("%s: sending on %08x, which the receiver does not have", x.name, out.SPI)
			continue
		}
		if !bytes.Equal(in.EncKey, out.EncKey) {
			t.Errorf("%s: keys differ", x.name)
		}
	}
	for _, pp := range []*peer{p.a, p.b} {
		if v := pp.inst.violations; len(v) > 0 {
			t.Errorf("make-before-break violated: %v", v)
		}
		sas := pp.m.IKESAs()
		if len(sas) != 1 || len(sas[0].Children) != 1 {
			t.Errorf("IKE SAs %+v, want one with one child", sas)
		}
		pp.m.lock()
		n := 0
		for _, sa := range pp.m.sas {
			n += len(sa.children) + len(sa.retired)
		}
		pp.m.mu.Unlock()
		if n != 1 {
			t.Errorf("%d Child SAs in the Manager's state, want 1", n)
		}
	}
	return a, b
}

func changed(t *testing.T, before, after snapshot) {
	t.Helper()
	if before.id != after.id {
		t.Errorf("child ID changed %d -> %d", before.id, after.id)
	}
	if before.in == after.in || before.out == after.out {
		t.Errorf("SPIs did not change: in %08x -> %08x, out %08x -> %08x", before.in, after.in, before.out, after.out)
	}
	if bytes.Equal(before.outKey, after.outKey) {
		t.Error("keys did not change")
	}
}

func TestChildRekey(t *testing.T) {
	for _, pfs := range []bool{false, true} {
		for _, by := range []string{"a", "b"} {
			t.Run(fmt.Sprintf("pfs=%v/by=%s", pfs, by), func(t *testing.T) {
				p := rekeyPair(t, pfs)
				a0, b0 := p.converged(t)
				init, resp := p.a, p.b
				if by == "b" {
					init, resp = p.b, p.a
				}
				for round := range 3 {
					if n, err := init.m.Rekey("conn"); err != nil || n != 1 {
						t.Fatalf("Rekey: %d, %v", n, err)
					}
					p.net.Pump()
					// The old inbound SAs stay for the grace period.
					if s := init.snap(t); s.inbounds != 2 {
						t.Errorf("round %d: initiator has %d inbound SAs during the grace period, want 2", round, s.inbounds)
					}
					if s := resp.snap(t); s.inbounds != 2 {
						t.Errorf("round %d: responder has %d inbound SAs during the grace period, want 2", round, s.inbounds)
					}
					p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
					a1, b1 := p.converged(t)
					changed(t, a0, a1)
					changed(t, b0, b1)
					a0, b0 = a1, b1
				}
				if !init.logged("CHILD_SA rekeyed") || !resp.logged("CHILD_SA rekeyed") {
					t.Error("no rekey logged")
				}
				if pfs && len(init.keys) < 4 {
					t.Errorf("%d keys derived", len(init.keys))
				}
			})
		}
	}
}

func TestChildRekeyTime(t *testing.T) {
	p := rekeyPair(t, true)
	a0, b0 := p.converged(t)
	p.a.m.cfg.Connections[0].Children[0].RekeyTime = time.Minute
	p.b.m.cfg.Connections[0].Children[0].RekeyTime = 3 * time.Minute
	// The timers of the first Child SA were armed with rekey_time 0.
	p.a.m.Rekey("conn")
	p.net.Pump()
	p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
	a0, b0 = p.converged(t)
	// a rekeys within rekey_time less up to 10 % (rand_time defaults to
	// life_time - rekey_time, life_time to 110 % of rekey_time), every
	// time before b. Time goes in steps of a second until a has rekeyed,
	// then by the grace period, after which the old inbound SAs are gone.
	for range 5 {
		// The Child SA was made DefaultRekeyGrace+1s ago.
		waited := DefaultRekeyGrace + time.Second
		for p.a.snap(t).out == a0.out {
			if waited > time.Minute+time.Second {
				t.Fatalf("a did not rekey within %v", waited)
			}
			p.clock.Advance(time.Second, p.net)
			waited += time.Second
		}
		// It rekeyed within the last second waited.
		if waited < 54*time.Second || waited > time.Minute+time.Second {
			t.Errorf("a rekeyed %v after the Child SA was made, want rekey_time less up to 10 %%", waited)
		}
		p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
		a1, b1 := p.converged(t)
		changed(t, a0, a1)
		changed(t, b0, b1)
		a0, b0 = a1, b1
	}
	if p.b.logged("rekeying CHILD_SA") {
		t.Error("b rekeyed, though its rekey_time is longer")
	}
}

func TestChildRekeySoftExpire(t *testing.T) {
	p := rekeyPair(t, false)
	a0, b0 := p.converged(t)
	// An event of another SPI does nothing.
	p.b.m.SAEvent(sad.Event{Kind: sad.SoftExpire, Child: b0.id, SPI: 1234})
	p.net.Pump()
	if p.b.logged("rekeying CHILD_SA") {
		t.Fatal("rekeyed on an event of another SA")
	}
	p.b.m.SAEvent(sad.Event{Kind: sad.SoftExpire, Child: b0.id, SPI: b0.out, Reason: sad.ReasonBytes})
	p.net.Pump()
	p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
	a1, b1 := p.converged(t)
	changed(t, a0, a1)
	changed(t, b0, b1)
	if !p.b.logged("soft lifetime") {
		t.Error("no soft lifetime rekey logged")
	}
}

// TestChildRekeyDeleteLost checks that a responder whose peer never
// deletes the old SA switches to the new one by itself.
func TestChildRekeyDeleteLost(t *testing.T) {
	p := rekeyPair(t, false)
	a0, b0 := p.converged(t)
	p.a.m.Rekey("conn")
	dropped := 0
	p.net.drop = func(pk packet) bool {
		// Drop every INFORMATIONAL from a for a while: the DELETE.
		if pk.src.Addr() == addrA && len(pk.data) > 18 && pk.data[18] == 37 && dropped < 2 {
			dropped++
			return true
		}
		return false
	}
	p.net.Pump()
	p.clock.Advance(30*time.Second, p.net)
	a1, b1 := p.converged(t)
	changed(t, a0, a1)
	changed(t, b0, b1)
}

func TestChildRekeyCollision(t *testing.T) {
	for _, pfs := range []bool{false, true} {
		for i := range 12 {
			t.Run(fmt.Sprintf("pfs=%v/%d", pfs, i), func(t *testing.T) {
				p := rekeyPair(t, pfs)
				a0, b0 := p.converged(t)
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
				if !p.a.logged("collision") || !p.b.logged("collision") {
					t.Error("no collision logged")
				}
				// Still rekeyable afterwards.
				p.b.m.Rekey("conn")
				p.net.Pump()
				p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
				a2, b2 := p.converged(t)
				changed(t, a1, a2)
				changed(t, b1, b2)
			})
		}
	}
}

func (p *peer) ikeSPIs(t *testing.T) (uint64, uint64) {
	t.Helper()
	sas := p.m.IKESAs()
	if len(sas) != 1 {
		t.Fatalf("%d IKE SAs, want 1: %+v", len(sas), sas)
	}
	p.m.lock()
	defer p.m.mu.Unlock()
	for _, sa := range p.m.sas {
		return sa.spiI, sa.spiR
	}
	return 0, 0
}

func TestIKERekey(t *testing.T) {
	for _, by := range []string{"a", "b"} {
		t.Run("by="+by, func(t *testing.T) {
			p := rekeyPair(t, true)
			a0, b0 := p.converged(t)
			init := p.a
			if by == "b" {
				init = p.b
			}
			i0, r0 := p.a.ikeSPIs(t)
			nkeys := len(init.keys)
			for round := range 3 {
				if n, err := init.m.RekeyIKE("conn"); err != nil || n != 1 {
					t.Fatalf("RekeyIKE: %d, %v", n, err)
				}
				p.net.Pump()
				i1, r1 := p.a.ikeSPIs(t)
				if bi, br := p.b.ikeSPIs(t); bi != i1 || br != r1 || i1 == i0 || r1 == r0 {
					t.Fatalf("round %d: IKE SPIs a %x/%x, b %x/%x, before %x/%x", round, i1, r1, bi, br, i0, r0)
				}
				i0, r0 = i1, r1
				// The Child SA moved over untouched.
				a1, b1 := p.converged(t)
				if a1.in != a0.in || b1.in != b0.in {
					t.Error("the Child SA changed with the IKE SA rekey")
				}
				// The new IKE SA works: a Child SA rekey over it.
				p.a.m.Rekey("conn")
				p.net.Pump()
				p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
				a0, b0 = p.converged(t)
			}
			if len(init.keys) <= nkeys {
				t.Error("no keys derived")
			}
			var ka, kb *KeyMaterial
			for i := range p.a.keys {
				if p.a.keys[i].IKE != nil {
					ka = &p.a.keys[i]
				}
			}
			for i := range p.b.keys {
				if p.b.keys[i].IKE != nil {
					kb = &p.b.keys[i]
				}
			}
			if ka == nil || kb == nil || !bytes.Equal(ka.IKE.D, kb.IKE.D) || bytes.Equal(ka.IKE.D, p.a.keys[0].IKE.D) {
				t.Error("the rekeyed IKE SA's keys do not match or did not change")
			}
			if !init.logged("IKE SA rekeyed") {
				t.Error("no IKE SA rekey logged")
			}
			for _, pp := range []*peer{p.a, p.b} {
				if s := pp.m.Stats(); s.Established != 1 {
					t.Errorf("Established %d", s.Established)
				}
			}
		})
	}
}

func TestIKERekeyTimeAndCollision(t *testing.T) {
	p := rekeyPair(t, false)
	p.converged(t)
	i0, _ := p.a.ikeSPIs(t)
	// Both at once: the nonce rule picks one new IKE SA.
	for round := range 10 {
		p.a.m.RekeyIKE("conn")
		p.b.m.RekeyIKE("conn")
		p.net.Pump()
		i1, _ := p.a.ikeSPIs(t)
		if bi, _ := p.b.ikeSPIs(t); bi != i1 || i1 == i0 {
			t.Fatalf("round %d: IKE SPIs after the collision: a %x, b %x, before %x\n--- a:\n%s--- b:\n%s", round, i1, bi, i0, p.a.dumpLogs(), p.b.dumpLogs())
		}
		i0 = i1
		p.converged(t)
		// The Child SAs work over the survivor.
		p.b.m.Rekey("conn")
		p.net.Pump()
		p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
		p.converged(t)
	}
	if !p.a.logged("IKE SA rekey collision: our rekey wins") && !p.b.logged("IKE SA rekey collision: our rekey wins") {
		t.Error("no IKE SA collision resolved")
	}
	p.clock.Advance(time.Minute, p.net)
	p.converged(t)
	// rekey_time.
	p.a.m.cfg.Connections[0].RekeyTime = 10 * time.Minute
	p.a.m.RekeyIKE("conn")
	p.net.Pump()
	i2, _ := p.a.ikeSPIs(t)
	p.clock.Advance(11*time.Minute, p.net)
	if i3, _ := p.a.ikeSPIs(t); i3 == i2 {
		t.Error("the IKE SA was not rekeyed after rekey_time")
	}
	p.converged(t)
}
