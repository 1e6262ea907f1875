package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/sad"
)

func TestEffectiveLimits(t *testing.T) {
	for _, tc := range []struct {
		name              string
		rekey, life, rand int64
		r, l, j           int64
	}{
		{"unset", 0, 0, 0, 0, 0, 0},
		{"strongSwan defaults", 3600, 0, 0, 3600, 3960, 360},
		{"explicit life, default rand", 100, 150, 0, 100, 150, 50},
		{"explicit rand", 100, 150, 10, 100, 150, 10},
		{"no rand", 100, 0, -1, 100, 110, 0},
		{"no life", 100, -1, 0, 100, 0, 0},
		{"life only", 0, 500, 0, 0, 500, 0},
		{"rand capped below rekey", 100, 1000, 0, 100, 1000, 99},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, l, j := effective(tc.rekey, tc.life, tc.rand)
			if r != tc.r || l != tc.l || j != tc.j {
				t.Errorf("effective(%d, %d, %d) = %d, %d, %d; want %d, %d, %d", tc.rekey, tc.life, tc.rand, r, l, j, tc.r, tc.l, tc.j)
			}
		})
	}
	for _, tc := range []struct {
		name                 string
		rekey, over, rand    time.Duration
		wRekey, wOver, wRand time.Duration
	}{
		{"defaults", 4 * time.Hour, 0, 0, 4 * time.Hour, 24 * time.Minute, 24 * time.Minute},
		{"explicit", time.Hour, time.Minute, time.Second, time.Hour, time.Minute, time.Second},
		{"none", time.Hour, -1, -1, time.Hour, 0, 0},
		{"off", 0, 0, 0, 0, 0, 0},
	} {
		t.Run("ike/"+tc.name, func(t *testing.T) {
			c := &Connection{RekeyTime: tc.rekey, OverTime: tc.over, RandTime: tc.rand}
			r, o, j := c.ikeTimes()
			if r != tc.wRekey || o != tc.wOver || j != tc.wRand {
				t.Errorf("ikeTimes = %v, %v, %v; want %v, %v, %v", r, o, j, tc.wRekey, tc.wOver, tc.wRand)
			}
		})
	}
}

func TestRandomLess(t *testing.T) {
	for range 1000 {
		if d := randomLess(10*time.Second, 3*time.Second); d < 7*time.Second || d > 10*time.Second {
			t.Fatalf("randomLess(10s, 3s) = %v", d)
		}
	}
	if d := randomLess(10*time.Second, 0); d != 10*time.Second {
		t.Errorf("randomLess without jitter = %v", d)
	}
	if l := softLimit(1000, 100); l < 900 || l > 1000 {
		t.Errorf("softLimit(1000, 100) = %d", l)
	}
	if l := softLimit(0, 100); l != 0 {
		t.Errorf("softLimit without a limit = %d", l)
	}
}

func TestLifetimeValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		ch   Child
		ok   bool
	}{
		{"defaults", Child{RekeyTime: time.Hour}, true},
		{"rekey at life", Child{RekeyTime: time.Hour, LifeTime: time.Hour}, false},
		{"rand at rekey", Child{RekeyTime: time.Hour, RandTime: time.Hour}, false},
		{"bytes", Child{RekeyBytes: 1000, LifeBytes: 900}, false},
		{"packets", Child{RekeyPackets: 100, LifePackets: 200, RandPackets: 50}, true},
		{"packet rand", Child{RekeyPackets: 100, RandPackets: 100}, false},
		{"close action", Child{CloseAction: "restart"}, false},
		{"dpd action", Child{DPDAction: "hold"}, false},
		{"dpd restart", Child{DPDAction: DPDRestart, CloseAction: CloseStart}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := tc.ch
			ch.Name = "c"
			cfg := &Config{Connections: []*Connection{{Name: "conn", LocalID: "a.example.org",
				RemoteAddrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Children: []*Child{&ch}}}}
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestChildSALifetime checks the SAD limits handed over with a Child SA.
func TestChildSALifetime(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	ch := p.a.m.cfg.Connections[0].Children[0]
	ch.RekeyTime, ch.LifeTime = time.Hour, 2*time.Hour
	ch.RekeyBytes, ch.RandBytes = 1000, -1
	ch.RekeyPackets, ch.LifePackets, ch.RandPackets = 100, 300, 50
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	a, _ := p.established(t)
	l := a.Lifetime
	if l.Soft.Bytes != 1000 || l.Hard.Bytes != 1100 || l.Soft.Packets < 50 || l.Soft.Packets > 100 || l.Hard.Packets != 300 {
		t.Errorf("volume limits %+v", l)
	}
	if l.Hard.Time < 2*time.Hour || l.Hard.Time > 2*time.Hour+10*time.Minute || l.Soft.Time != 0 {
		t.Errorf("time limits %+v: want the hard one a moment after life_time, no soft one (the Manager rekeys)", l)
	}
}

// TestChildLifeTimeExpires checks that a Child SA that cannot be rekeyed
// (the peer stopped answering) goes at life_time, from the dataplane at
// once.
func TestChildLifeTimeExpires(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	ch := p.a.m.cfg.Connections[0].Children[0]
	ch.RekeyTime, ch.LifeTime = time.Minute, 90*time.Second
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	p.established(t)
	p.net.drop = func(packet) bool { return true }
	p.clock.Advance(80*time.Second, p.net)
	if !p.a.logged("rekeying CHILD_SA") || len(p.a.inst.list()) != 1 {
		t.Fatalf("a did not try to rekey, or lost the child before life_time:\n%s", p.a.dumpLogs())
	}
	p.clock.Advance(10*time.Second, p.net)
	if n := len(p.a.inst.list()); n != 0 || !p.a.logged("expired (hard lifetime)") {
		t.Errorf("%d children installed at life_time:\n%s", n, p.a.dumpLogs())
	}
}

// TestSAEventHardExpire checks that a hard limit of the SAD removes the
// child and tells the peer, which removes it too.
func TestSAEventHardExpire(t *testing.T) {
	p := rekeyPair(t, false)
	a0, _ := p.converged(t)
	p.a.m.SAEvent(sad.Event{Kind: sad.HardExpire, Child: a0.id, SPI: a0.out, Reason: sad.ReasonPackets})
	if n := len(p.a.inst.list()); n != 0 {
		t.Fatalf("a keeps %d children after the hard limit", n)
	}
	p.net.Pump()
	if n := len(p.b.inst.list()); n != 0 {
		t.Errorf("b keeps %d children after a's DELETE", n)
	}
	if sas := p.a.m.IKESAs(); len(sas) != 1 || sas[0].State != "ESTABLISHED" {
		t.Errorf("a's IKE SA: %+v, want it to stay", sas)
	}
}

// TestIKEOverTime checks that an IKE SA that cannot be rekeyed goes at
// rekey_time + over_time.
func TestIKEOverTime(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	p.established(t)
	// The timers of the IKE SA are armed when it is established: set the
	// times on a new SA.
	for _, x := range []*peer{p.a, p.b} {
		c := x.m.cfg.Connections[0]
		c.RekeyTime, c.OverTime, c.RandTime = 10*time.Minute, time.Minute, -1
	}
	// b stops answering: the rekey cannot complete.
	p.net.drop = func(pk packet) bool { return pk.src.Addr() == addrB }
	p.a.m.mu.Lock()
	for _, sa := range p.a.m.sas {
		sa.armIKERekey()
	}
	p.a.m.mu.Unlock()
	p.clock.Advance(10*time.Minute+50*time.Second, p.net)
	if sas := p.a.m.IKESAs(); len(sas) != 1 || !p.a.logged("rekeying IKE SA") {
		t.Fatalf("before over_time: IKE SAs %+v:\n%s", sas, p.a.dumpLogs())
	}
	p.clock.Advance(20*time.Second, p.net)
	if !p.a.logged("IKE SA expired") || len(p.a.inst.list()) != 0 {
		t.Errorf("no expiry at rekey_time + over_time:\n%s", p.a.dumpLogs())
	}
	p.clock.Advance(5*time.Minute, p.net)
	p.a.noState(t, "a")
}

// TestDPDAction checks dpd_action: clear leaves nothing, trap installs the
// trap policies, restart initiates again until the peer answers.
func TestDPDAction(t *testing.T) {
	for _, action := range []string{DPDClear, DPDTrap, DPDRestart} {
		t.Run(action, func(t *testing.T) {
			p := newPair(t, side{dpd: 10 * time.Second}, side{}, Options{RetransmitTries: 2, RetransmitTimeout: time.Second})
			p.a.m.cfg.Connections[0].Children[0].DPDAction = action
			if err := p.initiate("conn"); err != nil {
				t.Fatal(err)
			}
			p.established(t)
			p.net.drop = func(packet) bool { return true }
			// The check comes at most 2 dpd_delay after the last packet and
			// is given up after 1 + 1.8 + 3.24 s.
			p.clock.Advance(20*time.Second+6100*time.Millisecond, p.net)
			if !p.a.logged("dead peer") {
				t.Fatalf("no dead peer:\n%s", p.a.dumpLogs())
			}
			if n := len(p.a.inst.list()); n != 0 {
				t.Fatalf("%d children left after the dead peer", n)
			}
			p.a.inst.mu.Lock()
			traps := len(p.a.inst.traps)
			p.a.inst.mu.Unlock()
			if want := map[string]int{DPDTrap: 1}[action]; traps != want {
				t.Errorf("%d trap policies, want %d", traps, want)
			}
			// The peer answers again (it kept its state: the restart makes
			// a new IKE SA, with INITIAL_CONTACT).
			p.net.drop = nil
			p.clock.Advance(time.Minute, p.net)
			up := len(p.a.inst.list())
			if want := map[string]int{DPDRestart: 1}[action]; up != want {
				t.Errorf("%d children up after the peer returned, want %d:\n%s", up, want, p.a.dumpLogs())
			}
			if action == DPDRestart {
				if !p.a.logged("connection re-established") || !p.b.logged("INITIAL_CONTACT from the peer") {
					t.Errorf("restart not logged, or no INITIAL_CONTACT at b:\n%s", p.a.dumpLogs())
				}
				if sas := p.b.m.IKESAs(); len(sas) != 1 {
					t.Errorf("b has %d IKE SAs, want the new one only", len(sas))
				}
			}
		})
	}
}

// TestCloseAction checks close_action when the peer deletes the child.
func TestCloseAction(t *testing.T) {
	for _, action := range []string{CloseNone, CloseTrap, CloseStart} {
		t.Run(action, func(t *testing.T) {
			p := newPair(t, side{}, side{}, Options{})
			p.a.m.cfg.Connections[0].Children[0].CloseAction = action
			if err := p.initiate("conn"); err != nil {
				t.Fatal(err)
			}
			p.established(t)
			if _, err := p.b.m.Terminate("conn.net"); err != nil {
				t.Fatal(err)
			}
			p.net.Pump()
			p.a.inst.mu.Lock()
			traps := len(p.a.inst.traps)
			p.a.inst.mu.Unlock()
			up := len(p.a.inst.list())
			want := map[string][2]int{CloseNone: {0, 0}, CloseTrap: {1, 0}, CloseStart: {0, 1}}[action]
			if traps != want[0] || up != want[1] {
				t.Errorf("%d traps and %d children after the peer closed the child, want %v:\n%s", traps, up, want, p.a.dumpLogs())
			}
		})
	}
}

// TestDuplicateIKESA checks that when both ends initiate at once, the
// duplicate IKE SA is deleted and one IKE SA with one Child SA is left.
func TestDuplicateIKESA(t *testing.T) {
	p := newPair(t, side{}, side{}, Options{})
	if _, err := p.a.m.Initiate("conn"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.m.Initiate("conn"); err != nil {
		t.Fatal(err)
	}
	p.net.Pump()
	p.clock.Advance(DefaultRekeyGrace+time.Second, p.net)
	for _, x := range []*peer{p.a, p.b} {
		sas := x.m.IKESAs()
		if len(sas) != 1 || len(sas[0].Children) != 1 || len(x.inst.list()) != 1 {
			t.Errorf("IKE SAs %+v, %d children installed: want one with one child\n%s", sas, len(x.inst.list()), x.dumpLogs())
		}
	}
	// The end that checks first deletes the duplicate or waits for the
	// other to, which may then never see two.
	if !p.a.logged("duplicate IKE SA") && !p.b.logged("duplicate IKE SA") {
		t.Error("no duplicate detected")
	}
	p.established(t)
}

// TestInitialContact checks that a peer that lost its state and comes
// back with INITIAL_CONTACT replaces its old IKE SA, which is deleted
// (with a DELETE, in case) along with its children.
func TestInitialContact(t *testing.T) {
	p := newPair(t, side{start: StartStart}, side{}, Options{})
	p.a.m.Start()
	p.net.Pump()
	p.established(t)
	// a restarts a moment later: a new Manager without state.
	p.clock.Advance(time.Second, p.net)
	cfg := side{id: "a.example.org", peerID: "b.example.org", start: StartStart}.config(t, addrA, addrB)
	p.a = newPeer(t, p.net, p.clock, cfg, addrA, "a2", Options{})
	t.Cleanup(p.a.m.Close)
	p.a.m.Start()
	p.net.Pump()
	if !p.b.logged("INITIAL_CONTACT from the peer") {
		t.Fatalf("b did not act on INITIAL_CONTACT:\n%s", p.b.dumpLogs())
	}
	sas := p.b.m.IKESAs()
	if len(sas) != 1 || len(p.b.inst.list()) != 1 {
		t.Errorf("b: IKE SAs %+v and %d children, want the new ones only", sas, len(p.b.inst.list()))
	}
	deletes := 0
	for _, h := range p.net.sent() {
		if h.Exchange == message.Informational && !h.IsResponse() {
			deletes++
		}
	}
	if deletes != 1 {
		t.Errorf("%d INFORMATIONAL requests, want b's one DELETE of the old IKE SA", deletes)
	}
	p.established(t)
}

// TestReauth checks reauthentication: a new IKE SA from scratch takes over
// the Child SA make-before-break (a's fake installer checks that a sends on
// nothing b does not accept yet, and removes no inbound SA b still sends
// on), and the old IKE SA is deleted at both ends, three times over.
func TestReauth(t *testing.T) {
	p := rekeyPair(t, true)
	// b, the responder, installs the new Child SA under a new ID whose
	// policies come after the old one's, which keep carrying b's packets
	// until the old IKE SA is deleted: the fake installer, which knows no
	// policies, would take the new SA for one b sends on at once.
	p.b.inst.peer = nil
	a0, _ := p.converged(t)
	old := p.a.m.IKESAs()[0]
	p.a.m.mu.Lock()
	p.a.m.cfg.Connections[0].ReauthTime = 10 * time.Minute
	for _, sa := range p.a.m.sas {
		sa.armIKERekey()
	}
	p.a.m.mu.Unlock()
	for range 3 {
		p.clock.Advance(10*time.Minute+time.Second, p.net)
		p.clock.Advance(DefaultRekeyGrace+2*time.Second, p.net)
		a1, _ := p.converged(t)
		changed(t, a0, a1)
		if a1.id != a0.id {
			t.Errorf("child ID %d after the reauthentication, was %d: the policies must stay", a1.id, a0.id)
		}
		sas := p.a.m.IKESAs()
		if len(sas) != 1 || sas[0].SPIi == old.SPIi {
			t.Fatalf("IKE SAs %+v after reauth_time, want one new one:\n%s", sas, p.a.dumpLogs())
		}
		a0, old = a1, sas[0]
	}
	if !p.a.logged("IKE SA reauthenticated") || p.a.logged("rekeying IKE SA") {
		t.Errorf("no reauthentication logged, or a rekey instead:\n%s", p.a.dumpLogs())
	}
}

// TestKeyingTries checks start_action start with keyingtries: retried
// until the peer answers (swanctl's 0, here negative), or given up after
// the configured number of attempts.
func TestKeyingTries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tries int
		up    bool
	}{{"until-up", -1, true}, {"two", 2, false}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, side{start: StartStart}, side{}, Options{RetransmitTries: 2, RetransmitTimeout: time.Second})
			p.a.m.cfg.Connections[0].KeyingTries = tc.tries
			p.net.drop = func(packet) bool { return true }
			p.a.m.Start()
			// Two attempts of 6.04 s each, a delay of 1 to 1.25 s between.
			p.clock.Advance(15*time.Second, p.net)
			if n := len(p.a.inst.list()); n != 0 || !p.a.logged("initiating failed: trying again") {
				t.Fatalf("%d children up with the peer away, or no retry:\n%s", n, p.a.dumpLogs())
			}
			p.net.drop = nil
			p.clock.Advance(time.Minute, p.net)
			if up := len(p.a.inst.list()) == 1; up != tc.up {
				t.Errorf("child up %v once the peer answers, want %v:\n%s", up, tc.up, p.a.dumpLogs())
			}
			if !tc.up && !p.a.logged("giving up (keyingtries)") {
				t.Errorf("no giving up logged:\n%s", p.a.dumpLogs())
			}
		})
	}
}
