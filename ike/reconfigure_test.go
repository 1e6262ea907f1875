package ike

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"testing"

	"github.com/goipsec/goipsec/ike/message"
)

// reconfSide builds one end's configuration for the reload tests: the
// pair's connection "conn" plus extra connections given as name -> secret
// (identities <name>-a/<name>-b.example.org, child selectors per name) and
// start actions.
func reconfSide(t *testing.T, local, remote netip.Addr, initiator bool, extra map[string]string, start map[string]string) *Config {
	t.Helper()
	s := side{id: "a.example.org", peerID: "b.example.org", localTS: []string{"10.1.0.0/24"}, remoteTS: []string{"10.2.0.0/24"}}
	if !initiator {
		s = side{id: "b.example.org", peerID: "a.example.org", localTS: []string{"10.2.0.0/24"}, remoteTS: []string{"10.1.0.0/24"}}
	}
	cfg := s.config(t, local, remote)
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		me, them := n+"-a.example.org", n+"-b.example.org"
		lts, rts := fmt.Sprintf("10.1.%d.0/24", 10+len(n)), fmt.Sprintf("10.2.%d.0/24", 10+len(n)) // distinct names have distinct lengths here
		if !initiator {
			me, them, lts, rts = them, me, rts, lts
		}
		ch := &Child{Name: "net", LocalTS: mustTS(t, []string{lts}), RemoteTS: mustTS(t, []string{rts}),
			Proposals: mustList(t, message.ProtoESP, []string{"aes128gcm16"}), StartAction: start[n]}
		cfg.Connections = append(cfg.Connections, &Connection{Name: n, LocalAddrs: []netip.Addr{local},
			RemoteAddrs: []netip.Prefix{netip.PrefixFrom(remote, 32)}, LocalID: me, RemoteID: them, Children: []*Child{ch}})
		cfg.Secrets = append(cfg.Secrets, &Secret{IDs: []string{me, them}, Key: []byte(extra[n])})
	}
	return cfg
}

// saSPIs returns the IKE SPIs and Child SA SPIs of p's established IKE SAs
// by connection.
func saSPIs(p *peer) map[string]string {
	out := map[string]string{}
	for _, sa := range p.m.IKESAs() {
		if sa.State != "ESTABLISHED" {
			continue
		}
		s := fmt.Sprintf("%016x_%016x", sa.SPIi, sa.SPIr)
		for _, c := range sa.Children {
			s += fmt.Sprintf(" %08x/%08x", c.SPIIn, c.SPIOut)
		}
		out[sa.Connection] += s
	}
	return out
}

func TestReconfigure(t *testing.T) {
	p := newPair(t, side{localTS: []string{"10.1.0.0/24"}, remoteTS: []string{"10.2.0.0/24"}},
		side{localTS: []string{"10.2.0.0/24"}, remoteTS: []string{"10.1.0.0/24"}}, Options{})
	if err := p.initiate("conn"); err != nil {
		t.Fatal(err)
	}
	keepA, keepB := saSPIs(p.a)["conn"], saSPIs(p.b)["conn"]
	if keepA == "" || keepB == "" {
		t.Fatalf("conn not up: %v %v", saSPIs(p.a), saSPIs(p.b))
	}
	reload := func(who *peer, initiator bool, extra, start map[string]string) ReconfigureResult {
		t.Helper()
		local, remote := addrA, addrB
		if !initiator {
			local, remote = addrB, addrA
		}
		res, err := who.m.Reconfigure(reconfSide(t, local, remote, initiator, extra, start))
		if err != nil {
			t.Fatal(err)
		}
		p.net.Pump()
		return res
	}
	want := func(res ReconfigureResult, unchanged, added, changed, removed []string) {
		t.Helper()
		exp := ReconfigureResult{unchanged, added, changed, removed}
		if !reflect.DeepEqual(res, exp) {
			t.Errorf("result %+v, want %+v", res, exp)
		}
	}
	unchanged := func(step string) {
		t.Helper()
		if a, b := saSPIs(p.a)["conn"], saSPIs(p.b)["conn"]; a != keepA || b != keepB {
			t.Errorf("%s: the unchanged connection's SAs changed: a %q -> %q, b %q -> %q", step, keepA, a, keepB, b)
		}
	}

	// Add "two" (started by a) and "trapped" (a trap at a).
	want(reload(p.b, false, map[string]string{"two": "s2"}, nil), []string{"conn"}, []string{"two"}, nil, nil)
	res := reload(p.a, true, map[string]string{"two": "s2", "trapped": "s3"}, map[string]string{"two": StartStart, "trapped": StartTrap})
	want(res, []string{"conn"}, []string{"trapped", "two"}, nil, nil)
	unchanged("add")
	twoA, twoB := saSPIs(p.a)["two"], saSPIs(p.b)["two"]
	if twoA == "" || twoB == "" || len(p.a.inst.list()) != 2 {
		t.Fatalf("added connection not up: a %v, b %v\n%s", saSPIs(p.a), saSPIs(p.b), p.a.dumpLogs())
	}
	if n := len(p.a.inst.traps); n != 1 {
		t.Errorf("%d trap policies, want 1", n)
	}

	// Change two's secret at both ends (b first): two restarts, conn stays.
	want(reload(p.b, false, map[string]string{"two": "new secret"}, nil), []string{"conn"}, nil, []string{"two"}, nil)
	if _, ok := saSPIs(p.a)["two"]; ok {
		t.Error("a keeps two after b deleted it")
	}
	res = reload(p.a, true, map[string]string{"two": "new secret", "trapped": "s3"}, map[string]string{"two": StartStart, "trapped": StartTrap})
	want(res, []string{"conn", "trapped"}, nil, []string{"two"}, nil)
	unchanged("secret change")
	if a := saSPIs(p.a)["two"]; a == "" || a == twoA {
		t.Errorf("two after its secret changed: %q (before %q)", a, twoA)
	}

	// A changed setting of the child (start_action) restarts it too; an
	// unrelated secret does not.
	res = reload(p.a, true, map[string]string{"two": "new secret", "trapped": "s3", "other": "s4"},
		map[string]string{"two": StartNone, "trapped": StartTrap})
	want(res, []string{"conn", "trapped"}, []string{"other"}, []string{"two"}, nil)
	unchanged("start_action change")
	if _, ok := saSPIs(p.a)["two"]; ok {
		t.Error("two with start_action none is still up")
	}

	// Remove everything but conn at a: the trap goes, b hears nothing of
	// conn.
	res = reload(p.a, true, nil, nil)
	want(res, []string{"conn"}, nil, nil, []string{"other", "trapped", "two"})
	unchanged("remove")
	if n := len(p.a.inst.traps); n != 0 {
		t.Errorf("%d trap policies left", n)
	}
	if l := p.a.inst.list(); len(l) != 1 {
		t.Errorf("a has %d Child SAs, want 1", len(l))
	}

	// An invalid configuration is refused and changes nothing.
	bad := reconfSide(t, addrA, addrB, true, nil, nil)
	bad.Connections[0].Children[0].StartAction = "sometimes"
	if _, err := p.a.m.Reconfigure(bad); err == nil {
		t.Error("an invalid configuration was accepted")
	}
	unchanged("refused")

	// Removing conn at a deletes it at b as well (DELETE).
	res, err := p.a.m.Reconfigure(&Config{Connections: reconfSide(t, addrA, addrB, true, map[string]string{"x": "y"}, nil).Connections[1:],
		Secrets: reconfSide(t, addrA, addrB, true, map[string]string{"x": "y"}, nil).Secrets})
	if err != nil {
		t.Fatal(err)
	}
	p.net.Pump()
	want(res, nil, []string{"x"}, nil, []string{"conn"})
	p.a.noState(t, "a")
	p.b.noState(t, "b")
}
