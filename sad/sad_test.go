package sad

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/replay"
	"github.com/goipsec/goipsec/internal/xform"
)

// fakeEngine is an Engine that records Zero.
type fakeEngine struct {
	spi    uint32
	zeroed atomic.Bool
}

func (e *fakeEngine) SPI() uint32    { return e.spi }
func (e *fakeEngine) Zero()          { e.zeroed.Store(true) }
func (e *fakeEngine) Name() string   { return "fake" }
func (e *fakeEngine) isZeroed() bool { return e.zeroed.Load() }

// clock is a manual clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestDB(c *clock, buf int) *DB {
	return New(Options{Now: c.Now, Grace: time.Second, EventBuffer: buf})
}

func inCfg(spi uint32, child ChildID) Config {
	return Config{Proto: ESP, Dir: Inbound, Mode: Tunnel, Engine: &fakeEngine{spi: spi}, Child: child, Selector: AnyTraffic,
		Peer: netip.MustParseAddrPort("198.51.100.7:4500")}
}

func outCfg(spi uint32, child ChildID) Config {
	return Config{Proto: ESP, Dir: Outbound, Mode: Tunnel, Engine: &fakeEngine{spi: spi}, Child: child,
		Peer: netip.MustParseAddrPort("198.51.100.7:4500")}
}

func mustAdd(t testing.TB, db *DB, cfg Config) *SA {
	t.Helper()
	sa, err := db.Add(cfg)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	return sa
}

func drain(db *DB) []Event {
	var evs []Event
	for {
		select {
		case ev := <-db.Events():
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

func TestAddValidation(t *testing.T) {
	good := inCfg(0x1000, 1)
	aead, _ := xform.LookupEnc("aes128gcm16")
	espSA, err := esp.NewSA(&esp.Config{SPI: 0x2000, Enc: aead, EncKey: make([]byte, aead.KeyLen())})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no engine", func(c *Config) { c.Engine = nil }},
		{"bad proto", func(c *Config) { c.Proto = 17 }},
		{"bad dir", func(c *Config) { c.Dir = 0 }},
		{"bad mode", func(c *Config) { c.Mode = 9 }},
		{"inbound without selector", func(c *Config) { c.Selector = nil }},
		{"outbound without child", func(c *Config) { c.Dir, c.Child = Outbound, 0 }},
		{"reserved spi", func(c *Config) { c.Engine = &fakeEngine{spi: 255} }},
		{"esp engine on ah", func(c *Config) { c.Proto, c.Engine = AH, espSA }},
		{"peer and endpoint", func(c *Config) { c.Endpoint = NewEndpoint(c.Peer) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := New(Options{})
			cfg := good
			tt.mod(&cfg)
			if sa, err := db.Add(cfg); err == nil {
				t.Fatalf("Add succeeded: %+v", sa.Snapshot())
			}
			if _, _, err := db.Replace(cfg); err == nil {
				t.Fatal("Replace succeeded")
			}
		})
	}
	db := New(Options{})
	cfg := good
	cfg.Engine = espSA
	sa := mustAdd(t, db, cfg)
	if sa.ESP() != espSA || sa.Snapshot().Transform != "aes128gcm16" {
		t.Errorf("ESP() = %p, transform %q", sa.ESP(), sa.Snapshot().Transform)
	}
}

func TestLookup(t *testing.T) {
	db := New(Options{})
	inESP := mustAdd(t, db, inCfg(0x1001, 1))
	ahCfg := inCfg(0x1001, 2) // same SPI, other protocol
	ahCfg.Proto = AH
	inAH := mustAdd(t, db, ahCfg)
	out1 := mustAdd(t, db, outCfg(0x2002, 1))
	out2 := mustAdd(t, db, outCfg(0x1001, 2)) // an outbound SPI may equal an inbound one

	tests := []struct {
		name string
		got  *SA
		want *SA
	}{
		{"inbound esp", db.Inbound(ESP, 0x1001), inESP},
		{"inbound ah", db.Inbound(AH, 0x1001), inAH},
		{"inbound unknown spi", db.Inbound(ESP, 0x1002), nil},
		{"outbound spi is not inbound", db.Inbound(ESP, 0x2002), nil},
		{"outbound child 1", db.Outbound(1), out1},
		{"outbound child 2", db.Outbound(2), out2},
		{"outbound unknown child", db.Outbound(3), nil},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %p, want %p", tt.name, tt.got, tt.want)
		}
	}
	if in, out := db.Len(); in != 2 || out != 2 {
		t.Errorf("Len = %d, %d", in, out)
	}
	if _, err := db.Add(inCfg(0x1001, 5)); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate inbound: %v", err)
	}
	if _, err := db.Add(outCfg(0x3003, 1)); !errors.Is(err, ErrExists) {
		t.Errorf("second outbound for child: %v", err)
	}
	l := db.List()
	var keys []string
	for _, s := range l {
		keys = append(keys, fmt.Sprintf("%d/%s/%s/%#x", s.Child, s.Dir, s.Proto, s.SPI))
	}
	want := []string{"1/in/esp/0x1001", "1/out/esp/0x2002", "2/in/ah/0x1001", "2/out/esp/0x1001"}
	if !slices.Equal(keys, want) {
		t.Errorf("List = %v, want %v", keys, want)
	}
}

func TestTableGrowShrink(t *testing.T) {
	db := New(Options{Grace: -1})
	const n = 5000
	sas := make([]*SA, n)
	for i := range sas {
		sas[i] = mustAdd(t, db, inCfg(uint32(0x10000+i*7919), 1))
	}
	if got := len(db.in.cur.Load().b); got < n {
		t.Errorf("%d buckets for %d entries", got, n)
	}
	for i, sa := range sas {
		if db.Inbound(ESP, uint32(0x10000+i*7919)) != sa {
			t.Fatalf("lookup %d failed", i)
		}
	}
	for i, sa := range sas {
		if !db.Delete(sa) {
			t.Fatalf("delete %d failed", i)
		}
		if i+1 < n && db.Inbound(ESP, sas[n-1].SPI()) != sas[n-1] {
			t.Fatalf("lookup of the last SA failed after %d deletes", i+1)
		}
	}
	if db.in.n != 0 || len(db.in.cur.Load().b) != minBuckets {
		t.Errorf("after deleting all: n %d, %d buckets", db.in.n, len(db.in.cur.Load().b))
	}
}

func TestReplaceOutbound(t *testing.T) {
	c := newClock()
	db := newTestDB(c, 16)
	oldIn := mustAdd(t, db, inCfg(0x1001, 7))
	oldOut := mustAdd(t, db, outCfg(0x2001, 7))

	// Rekey: new inbound first, then swap the outbound.
	newIn := mustAdd(t, db, inCfg(0x1002, 7))
	newOut, displaced, err := db.Replace(outCfg(0x2002, 7))
	if err != nil || displaced != oldOut {
		t.Fatalf("Replace: %v, displaced %p want %p", err, displaced, oldOut)
	}
	if db.Outbound(7) != newOut {
		t.Error("Outbound does not return the new SA")
	}
	if db.Inbound(ESP, 0x1001) != oldIn || db.Inbound(ESP, 0x1002) != newIn {
		t.Error("both inbound SAs must be found during the overlap")
	}
	// The displaced SA still serves packets in flight, but raises nothing.
	if !oldOut.Count(100) {
		t.Error("displaced SA refused a packet in flight")
	}
	if !oldOut.Snapshot().Removed || !oldOut.Alive() {
		t.Errorf("displaced SA: %+v alive %v", oldOut.Snapshot(), oldOut.Alive())
	}
	db.Sweep()
	if oldOut.engine.(*fakeEngine).isZeroed() {
		t.Error("displaced SA zeroed before the grace")
	}
	c.Advance(time.Second)
	db.Sweep()
	if !oldOut.engine.(*fakeEngine).isZeroed() {
		t.Error("displaced SA not zeroed after the grace")
	}
	// End of overlap.
	if !db.Delete(oldIn) || db.Inbound(ESP, 0x1001) != nil {
		t.Error("Delete of the old inbound SA")
	}
	if evs := drain(db); len(evs) != 0 {
		t.Errorf("unexpected events %v", evs)
	}
	// Replace with nothing to replace adds.
	sa, old, err := db.Replace(outCfg(0x2003, 8))
	if err != nil || old != nil || db.Outbound(8) != sa {
		t.Errorf("Replace into an empty place: %v %p", err, old)
	}
}

func TestDelete(t *testing.T) {
	c := newClock()
	db := newTestDB(c, 16)
	in := mustAdd(t, db, inCfg(0x1001, 3))
	out := mustAdd(t, db, outCfg(0x2001, 3))
	other := mustAdd(t, db, inCfg(0x1002, 4))

	if !db.Delete(in) {
		t.Fatal("Delete failed")
	}
	if db.Delete(in) {
		t.Error("second Delete succeeded")
	}
	if db.Inbound(ESP, 0x1001) != nil {
		t.Error("deleted SA still found")
	}
	if in.Count(10) || in.Drops(DropExpired) != 1 || in.Alive() {
		t.Error("a deleted SA must refuse packets")
	}
	// A stale Delete must not remove a newer SA in the same place.
	repl, _, _ := db.Replace(outCfg(0x2002, 3))
	if db.Delete(out) || db.Outbound(3) != repl {
		t.Error("Delete of a displaced SA removed its successor")
	}
	if n := db.DeleteChild(3); n != 1 || db.Outbound(3) != nil {
		t.Errorf("DeleteChild removed %d", n)
	}
	if db.Inbound(ESP, 0x1002) != other {
		t.Error("DeleteChild removed another child's SA")
	}
	if New(Options{}).Delete(other) {
		t.Error("Delete from another database succeeded")
	}
	c.Advance(time.Second)
	db.Sweep()
	for _, sa := range []*SA{in, out, repl} {
		if !sa.engine.(*fakeEngine).isZeroed() {
			t.Errorf("SA %#x not zeroed", sa.SPI())
		}
	}
	if other.engine.(*fakeEngine).isZeroed() {
		t.Error("live SA zeroed")
	}
	if len(db.retired) != 0 {
		t.Errorf("%d retired SAs kept", len(db.retired))
	}
	if evs := drain(db); len(evs) != 0 {
		t.Errorf("unexpected events %v", evs)
	}
}

// step is one action of a lifetime test: count packets of a size, or
// advance the clock; a sweep follows each step.
type step struct {
	packets int
	size    int
	advance time.Duration
	refused int // packets Count must refuse in this step
}

func TestLifetimes(t *testing.T) {
	soft := SoftExpire
	hard := HardExpire
	ev := func(k EventKind, r Reason) string { return k.String() + "/" + r.String() }
	tests := []struct {
		name    string
		dir     Dir
		life    Lifetime
		steps   []step
		events  []string
		removed bool
		packets uint64
	}{
		{"no limits", Inbound, Lifetime{},
			[]step{{packets: 1000, size: 1500}, {advance: 1000 * time.Hour}}, nil, false, 1000},
		{"soft time", Outbound, Lifetime{Soft: Limits{Time: time.Hour}, Hard: Limits{Time: 2 * time.Hour}},
			[]step{{advance: 59 * time.Minute}, {advance: time.Minute}, {advance: 30 * time.Minute}}, []string{ev(soft, ReasonTime)}, false, 0},
		{"soft then hard time", Outbound, Lifetime{Soft: Limits{Time: time.Hour}, Hard: Limits{Time: 2 * time.Hour}},
			[]step{{advance: time.Hour}, {advance: time.Hour}}, []string{ev(soft, ReasonTime), ev(hard, ReasonTime)}, true, 0},
		{"hard time only", Inbound, Lifetime{Hard: Limits{Time: time.Hour}},
			[]step{{advance: time.Hour}, {packets: 1, size: 10, refused: 1}}, []string{ev(hard, ReasonTime)}, true, 0},
		{"time jump past both", Inbound, Lifetime{Soft: Limits{Time: time.Hour}, Hard: Limits{Time: 2 * time.Hour}},
			[]step{{advance: 3 * time.Hour}}, []string{ev(hard, ReasonTime)}, true, 0},
		{"soft packets", Inbound, Lifetime{Soft: Limits{Packets: 10}},
			[]step{{packets: 9, size: 1}, {packets: 1, size: 1}, {packets: 100, size: 1}}, []string{ev(soft, ReasonPackets)}, false, 110},
		{"hard packets", Outbound, Lifetime{Soft: Limits{Packets: 5}, Hard: Limits{Packets: 10}},
			[]step{{packets: 4, size: 1}, {packets: 6, size: 1}, {packets: 3, size: 1, refused: 3}},
			[]string{ev(soft, ReasonPackets), ev(hard, ReasonPackets)}, true, 10},
		{"hard packets mid batch", Outbound, Lifetime{Hard: Limits{Packets: 10}},
			[]step{{packets: 15, size: 1, refused: 5}}, []string{ev(hard, ReasonPackets)}, true, 10},
		{"soft bytes", Outbound, Lifetime{Soft: Limits{Bytes: 1000}, Hard: Limits{Bytes: 10000}},
			[]step{{packets: 3, size: 300}, {packets: 1, size: 300}, {packets: 10, size: 300}}, []string{ev(soft, ReasonBytes)}, false, 14},
		{"hard bytes refuses the packet that would pass it", Inbound, Lifetime{Hard: Limits{Bytes: 1000}},
			[]step{{packets: 3, size: 300}, {packets: 2, size: 300, refused: 2}}, []string{ev(hard, ReasonBytes)}, true, 3},
		{"hard bytes reached exactly", Inbound, Lifetime{Hard: Limits{Bytes: 900}},
			[]step{{packets: 3, size: 300}, {packets: 1, size: 1, refused: 1}}, []string{ev(hard, ReasonBytes)}, true, 3},
		{"soft above hard never fires", Inbound, Lifetime{Soft: Limits{Packets: 20}, Hard: Limits{Packets: 10}},
			[]step{{packets: 12, size: 1, refused: 2}}, []string{ev(hard, ReasonPackets)}, true, 10},
		{"bytes then time", Outbound, Lifetime{Soft: Limits{Bytes: 100, Time: time.Hour}, Hard: Limits{Time: 2 * time.Hour}},
			[]step{{packets: 1, size: 100}, {advance: time.Hour}, {advance: time.Hour}}, []string{ev(soft, ReasonBytes), ev(hard, ReasonTime)}, true, 1},
	}
	for _, run := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if run {
				name += " (CountRun)"
			}
			t.Run(name, func(t *testing.T) {
				c := newClock()
				db := newTestDB(c, 64)
				cfg := inCfg(0x1234, 9)
				if tt.dir == Outbound {
					cfg = outCfg(0x1234, 9)
				}
				cfg.Lifetime = tt.life
				sa := mustAdd(t, db, cfg)
				var got []string
				for i, s := range tt.steps {
					c.Advance(s.advance)
					refused := 0
					if run {
						sizes := make([]int, s.packets)
						for i := range sizes {
							sizes[i] = s.size
						}
						refused = len(sizes) - sa.CountRun(sizes)
					} else {
						for range s.packets {
							if !sa.Count(s.size) {
								refused++
							}
						}
					}
					if refused != s.refused {
						t.Errorf("step %d: %d packets refused, want %d", i, refused, s.refused)
					}
					db.Sweep()
					db.Sweep()
					for _, e := range drain(db) {
						if e.SPI != 0x1234 || e.Child != 9 || e.Dir != tt.dir || e.Proto != ESP || e.SA != sa {
							t.Errorf("event %v names the wrong SA", e)
						}
						got = append(got, ev(e.Kind, e.Reason))
					}
				}
				if !slices.Equal(got, tt.events) {
					t.Errorf("events %v, want %v", got, tt.events)
				}
				found := db.Inbound(ESP, 0x1234) == sa || db.Outbound(9) == sa
				if found == tt.removed {
					t.Errorf("found %v, want removed %v", found, tt.removed)
				}
				if sa.Packets() != tt.packets {
					t.Errorf("%d packets counted, want %d", sa.Packets(), tt.packets)
				}
				zeroed := sa.engine.(*fakeEngine).isZeroed()
				if zeroed {
					t.Error("zeroed before the grace")
				}
				c.Advance(time.Second)
				db.Sweep()
				if zeroed = sa.engine.(*fakeEngine).isZeroed(); zeroed != tt.removed {
					t.Errorf("zeroed %v after the grace, want %v", zeroed, tt.removed)
				}
				snap := sa.Snapshot()
				if snap.HardExpired != tt.removed || snap.Removed != tt.removed {
					t.Errorf("snapshot %+v", snap)
				}
			})
		}
	}
}

// TestCountRunMatchesCount feeds random runs of random sizes to two SAs
// with the same random limits, one packet by packet through Count, the
// other through CountRun, and compares what was refused, the counters,
// the drops and the events.
func TestCountRunMatchesCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(n uint64) uint64 {
		if rng.IntN(3) == 0 {
			return 0 // no limit
		}
		return 1 + rng.Uint64N(n)
	}
	for iter := range 300 {
		life := Lifetime{Soft: Limits{Packets: pick(200), Bytes: pick(100000)}, Hard: Limits{Packets: pick(300), Bytes: pick(150000)}}
		c := newClock()
		db1, db2 := newTestDB(c, 64), newTestDB(c, 64)
		cfg1, cfg2 := inCfg(0x1234, 9), inCfg(0x1234, 9)
		cfg1.Lifetime, cfg2.Lifetime = life, life
		one, run := mustAdd(t, db1, cfg1), mustAdd(t, db2, cfg2)
		var ev1, ev2 []string
		for step := 0; step < 40 && (one.Alive() || run.Alive()); step++ {
			sizes := make([]int, rng.IntN(70))
			for i := range sizes {
				sizes[i] = 20 + rng.IntN(1500)
			}
			n1 := 0
			for _, s := range sizes {
				if one.Count(s) {
					n1++
				}
			}
			n2 := run.CountRun(sizes)
			if n1 != n2 {
				t.Fatalf("iter %d step %d %+v: Count accepted %d of %d, CountRun %d", iter, step, life, n1, len(sizes), n2)
			}
			for _, e := range drain(db1) {
				ev1 = append(ev1, e.Kind.String()+"/"+e.Reason.String())
			}
			for _, e := range drain(db2) {
				ev2 = append(ev2, e.Kind.String()+"/"+e.Reason.String())
			}
		}
		s1, s2 := one.Snapshot(), run.Snapshot()
		if s1.Packets != s2.Packets || s1.Bytes != s2.Bytes || s1.Drops != s2.Drops || s1.SoftExpired != s2.SoftExpired || s1.HardExpired != s2.HardExpired {
			t.Fatalf("iter %d %+v: Count %+v, CountRun %+v", iter, life, s1, s2)
		}
		if !slices.Equal(ev1, ev2) {
			t.Fatalf("iter %d %+v: events %v vs %v", iter, life, ev1, ev2)
		}
	}
}

func TestIdle(t *testing.T) {
	c := newClock()
	db := newTestDB(c, 16)
	cfg := inCfg(0x1001, 1)
	cfg.Lifetime.Idle = 10 * time.Second
	sa := mustAdd(t, db, cfg)
	busy := mustAdd(t, db, Config{Proto: ESP, Dir: Inbound, Mode: Transport, Engine: &fakeEngine{spi: 0x1002}, Child: 2,
		Selector: AnyTraffic, Lifetime: Lifetime{Idle: 10 * time.Second}})

	var idles []time.Duration
	start := c.Now()
	for range 60 {
		c.Advance(time.Second)
		busy.Count(100)
		if c.Now().Sub(start) == 25*time.Second {
			sa.Count(100) // traffic resumes once
		}
		db.Sweep()
		for _, e := range drain(db) {
			if e.Kind != Idle || e.SPI != 0x1001 || e.Reason != ReasonIdle {
				t.Errorf("unexpected event %v", e)
			}
			idles = append(idles, c.Now().Sub(start))
		}
	}
	// Idle at 10 s; traffic at 25 s re-arms; idle again 10 s after the sweep that saw it.
	want := []time.Duration{10 * time.Second, 35 * time.Second}
	if !slices.Equal(idles, want) {
		t.Errorf("idle events at %v, want %v", idles, want)
	}
	if db.Inbound(ESP, 0x1001) != sa {
		t.Error("idle removed the SA")
	}
}

func TestEventsExactlyOnce(t *testing.T) {
	db := New(Options{EventBuffer: 64})
	cfg := outCfg(0x1001, 1)
	cfg.Lifetime = Lifetime{Soft: Limits{Packets: 1000}, Hard: Limits{Packets: 5000}}
	sa := mustAdd(t, db, cfg)
	var wg sync.WaitGroup
	var accepted atomic.Uint64
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if sa.Count(64) {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	db.Sweep()
	evs := drain(db)
	if len(evs) != 2 || evs[0].Kind != SoftExpire || evs[1].Kind != HardExpire {
		t.Errorf("events %v", evs)
	}
	if accepted.Load() != 5000 || sa.Packets() != 5000 || sa.Bytes() != 5000*64 || sa.Drops(DropExpired) != 3000 {
		t.Errorf("accepted %d, counted %d packets %d bytes, %d refused", accepted.Load(), sa.Packets(), sa.Bytes(), sa.Drops(DropExpired))
	}
	if db.Outbound(1) != nil {
		t.Error("hard-expired SA still found")
	}
}

func TestEventChannelFull(t *testing.T) {
	c := newClock()
	db := newTestDB(c, 1)
	a := mustAdd(t, db, Config{Proto: ESP, Dir: Outbound, Mode: Tunnel, Engine: &fakeEngine{spi: 0x1001}, Child: 1,
		Lifetime: Lifetime{Soft: Limits{Packets: 1}}})
	bCfg := outCfg(0x1002, 2)
	bCfg.Lifetime = Lifetime{Soft: Limits{Packets: 1}, Hard: Limits{Packets: 2}}
	b := mustAdd(t, db, bCfg)

	a.Count(1) // soft for a: fills the channel
	b.Count(1) // soft for b: dropped
	b.Count(1) // hard for b: dropped
	if db.DroppedEvents() != 2 {
		t.Fatalf("DroppedEvents = %d", db.DroppedEvents())
	}
	db.Sweep() // channel still full: b is removed anyway, its events stay pending
	if db.Outbound(2) != nil {
		t.Error("hard-expired SA not removed while its event was pending")
	}
	var got []Event
	for range 10 {
		got = append(got, drain(db)...)
		c.Advance(time.Second)
		db.Sweep()
	}
	want := []Event{
		{Kind: SoftExpire, Reason: ReasonPackets, Proto: ESP, SPI: 0x1001, Dir: Outbound, Child: 1, SA: a},
		{Kind: SoftExpire, Reason: ReasonPackets, Proto: ESP, SPI: 0x1002, Dir: Outbound, Child: 2, SA: b},
		{Kind: HardExpire, Reason: ReasonPackets, Proto: ESP, SPI: 0x1002, Dir: Outbound, Child: 2, SA: b},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if !b.engine.(*fakeEngine).isZeroed() || len(db.retired) != 0 {
		t.Errorf("b zeroed %v, %d retired kept", b.engine.(*fakeEngine).isZeroed(), len(db.retired))
	}
}

func TestCounters(t *testing.T) {
	db := New(Options{})
	local := netip.MustParsePrefix("10.1.0.0/24")
	cfg := inCfg(0x1001, 1)
	cfg.Selector = prefixSelector{remote: netip.MustParsePrefix("10.2.0.0/24"), local: local}
	sa := mustAdd(t, db, cfg)
	for i := range 10 {
		sa.Count(100 + i)
	}
	sa.Drop(DropBadICV)
	sa.Drop(DropReplay)
	sa.Drop(DropReplay)
	sa.Drop(200) // out of range: other
	sa.DropErr(fmt.Errorf("esp: spi 0x1001 seq 5: %w", esp.ErrBadPadding))
	ok := packet.Flow{Src: netip.MustParseAddr("10.2.0.9"), Dst: netip.MustParseAddr("10.1.0.1"), Proto: 6}
	bad := packet.Flow{Src: netip.MustParseAddr("10.3.0.9"), Dst: netip.MustParseAddr("10.1.0.1"), Proto: 6}
	if !sa.CheckInbound(ok) || sa.CheckInbound(bad) {
		t.Error("CheckInbound")
	}
	s := sa.Snapshot()
	want := [NumDropReasons]uint64{DropBadICV: 1, DropReplay: 2, DropPolicy: 1, DropBadPadding: 1, DropOther: 1}
	if s.Packets != 10 || s.Bytes != 1045 || s.Drops != want {
		t.Errorf("snapshot %+v", s)
	}
	if s.Proto != ESP || s.SPI != 0x1001 || s.Dir != Inbound || s.Mode != Tunnel || s.Child != 1 || s.Transform != "fake" ||
		s.Peer != cfg.Peer || s.SoftExpired || s.HardExpired || s.Idle || s.Removed || s.Created.IsZero() {
		t.Errorf("snapshot %+v", s)
	}
	for r := range NumDropReasons {
		if sa.Drops(r) != want[r] {
			t.Errorf("Drops(%s) = %d", r, sa.Drops(r))
		}
	}
}

func TestDropReasonOf(t *testing.T) {
	tests := []struct {
		err  error
		want DropReason
	}{
		{esp.ErrAuth, DropBadICV},
		{fmt.Errorf("esp: spi 0x1 seq 2: %w", esp.ErrReplay), DropReplay},
		{replay.ErrReplay, DropReplay},
		{fmt.Errorf("x: %w", esp.ErrTooOld), DropTooOld},
		{replay.ErrTooOld, DropTooOld},
		{esp.ErrTruncated, DropBadLength},
		{esp.ErrBadLength, DropBadLength},
		{esp.ErrBadPadding, DropBadPadding},
		{esp.ErrSeqZero, DropOther},
		{errors.New("other"), DropOther},
	}
	for _, tt := range tests {
		if got := DropReasonOf(tt.err); got != tt.want {
			t.Errorf("DropReasonOf(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

type prefixSelector struct{ remote, local netip.Prefix }

func (s prefixSelector) AllowsInbound(f packet.Flow) bool {
	return s.remote.Contains(f.Src) && s.local.Contains(f.Dst)
}

func TestPeer(t *testing.T) {
	db := New(Options{})
	in := mustAdd(t, db, inCfg(0x1001, 1))
	outCfg := outCfg(0x2001, 1)
	outCfg.Peer = netip.AddrPort{}
	outCfg.Endpoint = in.Endpoint()
	out := mustAdd(t, db, outCfg)
	nat := netip.MustParseAddrPort("203.0.113.5:61000")
	if in.UpdatePeer(in.Peer()) {
		t.Error("UpdatePeer with the same endpoint reported a change")
	}
	if !in.UpdatePeer(nat) || out.Peer() != nat || in.Peer() != nat {
		t.Errorf("peer after rebinding: in %v out %v", in.Peer(), out.Peer())
	}
	if (&Endpoint{}).Load().IsValid() {
		t.Error("zero Endpoint is valid")
	}
}

func TestSeqSpaceCap(t *testing.T) {
	aead, _ := xform.LookupEnc("aes128gcm16")
	mk := func(esn bool, next uint64) *esp.SA {
		sa, err := esp.NewSA(&esp.Config{SPI: 0x3000, Enc: aead, EncKey: make([]byte, aead.KeyLen()), ESN: esn, NextSeq: next})
		if err != nil {
			t.Fatal(err)
		}
		return sa
	}
	tests := []struct {
		name      string
		dir       Dir
		esn       bool
		next      uint64
		life      Limits
		soft      uint64
		hard      uint64
		lastCount bool // whether the (hard+1)th Count is refused
	}{
		{"32-bit outbound", Outbound, false, 0, Limits{}, 0xffffffff - 0xffffffff/8, 0xffffffff, false},
		{"32-bit outbound near the end", Outbound, false, 0xffffff00, Limits{}, 0xe0, 0x100, true},
		{"lower hard kept", Outbound, false, 0, Limits{Packets: 1000}, 0, 1000, false},
		{"soft kept if lower", Outbound, false, 0xffffff00, Limits{Packets: 10}, 10, 0x100, true},
		{"esn", Outbound, true, 0, Limits{}, 0, 0, false},
		{"inbound", Inbound, false, 0xffffff00, Limits{}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := New(Options{})
			cfg := Config{Proto: ESP, Dir: tt.dir, Mode: Tunnel, Engine: mk(tt.esn, tt.next), Child: 1, Selector: AnyTraffic}
			cfg.Lifetime.Hard = tt.life
			if tt.name == "soft kept if lower" {
				cfg.Lifetime.Soft, cfg.Lifetime.Hard = tt.life, Limits{}
			}
			sa := mustAdd(t, db, cfg)
			l := sa.Lifetime()
			if l.Soft.Packets != tt.soft || l.Hard.Packets != tt.hard {
				t.Errorf("soft %d hard %d, want %d %d", l.Soft.Packets, l.Hard.Packets, tt.soft, tt.hard)
			}
			if tt.lastCount {
				e := sa.ESP()
				for i := range tt.hard {
					if !sa.Count(1) {
						t.Fatalf("packet %d refused", i)
					}
					buf := make([]byte, 64, 64+esp.ScratchLen+64)
					if _, _, err := e.Seal(buf, e.Headroom(), 40, 4); err != nil {
						t.Fatalf("Seal of counted packet %d: %v", i, err)
					}
				}
				if sa.Count(1) {
					t.Error("packet beyond the sequence space accepted")
				}
			}
		})
	}
}

func TestRunRemovesPromptly(t *testing.T) {
	db := New(Options{SweepInterval: time.Hour, Grace: time.Millisecond})
	cfg := outCfg(0x1001, 1)
	cfg.Lifetime.Hard.Packets = 3
	sa := mustAdd(t, db, cfg)
	done := make(chan struct{})
	go func() {
		db.Run(t.Context())
		close(done)
	}()
	for range 3 {
		sa.Count(1)
	}
	deadline := time.Now().Add(5 * time.Second)
	for db.Outbound(1) != nil {
		if time.Now().After(deadline) {
			t.Fatal("hard-expired SA not removed by Run")
		}
		time.Sleep(time.Millisecond)
	}
	if ev := <-db.Events(); ev.Kind != HardExpire {
		t.Errorf("event %v", ev)
	}
	db.Close()
	<-done
}

func TestClose(t *testing.T) {
	db := New(Options{})
	in := mustAdd(t, db, inCfg(0x1001, 1))
	out := mustAdd(t, db, outCfg(0x2001, 1))
	_, old, _ := db.Replace(outCfg(0x2002, 1))
	db.Close()
	for _, sa := range []*SA{in, out, old} {
		if !sa.engine.(*fakeEngine).isZeroed() {
			t.Errorf("SA %#x not zeroed by Close", sa.SPI())
		}
	}
	if db.Inbound(ESP, 0x1001) != nil || db.Outbound(1) != nil {
		t.Error("SAs found after Close")
	}
	if _, err := db.Add(inCfg(0x1003, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	db.Close()
	db.Sweep()
}

// TestConcurrent runs updates, lookups, counting and sweeps at once; run it
// with -race. No lookup may return an SA whose engine was zeroed.
func TestConcurrent(t *testing.T) {
	db := New(Options{SweepInterval: time.Millisecond, Grace: 200 * time.Millisecond, EventBuffer: 4})
	go db.Run(t.Context())
	const children = 64
	for c := range ChildID(children) {
		mustAdd(t, db, outCfg(0x10000+uint32(c), c+1))
		mustAdd(t, db, inCfg(0x20000+uint32(c), c+1))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var lookups, zeroedSeen atomic.Uint64
	for r := range 4 {
		wg.Go(func() {
			var f packet.Flow
			for i := r; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := ChildID(i%children + 1)
				if sa := db.Outbound(c); sa != nil {
					if sa.engine.(*fakeEngine).isZeroed() {
						zeroedSeen.Add(1)
					}
					sa.Count(1400)
					sa.UpdatePeer(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+i%4)))
					_ = sa.Peer()
				}
				if sa := db.Inbound(ESP, 0x20000+uint32(c-1)); sa != nil {
					sa.CheckInbound(f)
					sa.Drop(DropReplay)
					_ = sa.Snapshot()
				}
				lookups.Add(1)
			}
		})
	}
	wg.Go(func() { // the consumer of events
		for {
			select {
			case <-stop:
				return
			case <-db.Events():
			}
		}
	})
	wg.Go(func() { // IKE: rekeys, deletes, re-adds
		spi := uint32(0x100000)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c := ChildID(i%children + 1)
			spi++
			cfg := outCfg(spi, c)
			cfg.Lifetime = Lifetime{Soft: Limits{Packets: 50}, Hard: Limits{Packets: 100, Time: 5 * time.Millisecond}}
			if _, _, err := db.Replace(cfg); err != nil {
				t.Error(err)
				return
			}
			switch i % 3 {
			case 0:
				if sa := db.Inbound(ESP, 0x20000+uint32(c-1)); sa != nil {
					db.Delete(sa)
				}
			case 1:
				db.Add(inCfg(0x20000+uint32(c-1), c))
			case 2:
				_ = db.List()
			}
		}
	})
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if zeroedSeen.Load() != 0 {
		t.Errorf("%d lookups returned a zeroed SA", zeroedSeen.Load())
	}
	t.Logf("%d lookups, %d events dropped", lookups.Load(), db.DroppedEvents())
	db.Close()
}

func TestZeroAllocs(t *testing.T) {
	db := New(Options{})
	for i := range 1000 {
		mustAdd(t, db, inCfg(uint32(0x1000+i), ChildID(i+1)))
		mustAdd(t, db, outCfg(uint32(0x1000+i), ChildID(i+1)))
	}
	sa := db.Inbound(ESP, 0x1001)
	ap := sa.Peer()
	f := packet.Flow{Src: netip.MustParseAddr("10.2.0.9"), Dst: netip.MustParseAddr("10.1.0.1")}
	sizes := [...]int{1400, 64, 1400}
	n := testing.AllocsPerRun(1000, func() {
		in := db.Inbound(ESP, 0x1001)
		out := db.Outbound(500)
		_ = db.Inbound(ESP, 0x99999999)
		in.Count(1000)
		out.Count(1000)
		in.CountRun(sizes[:])
		in.CheckInbound(f)
		in.Drop(DropReplay)
		in.UpdatePeer(ap)
		_ = out.Peer()
	})
	if n != 0 {
		t.Errorf("%v allocs per packet", n)
	}
}

func benchDB(b *testing.B, n int) (*DB, []uint32) {
	db := New(Options{})
	spis := make([]uint32, n)
	for i := range n {
		spis[i] = (uint32(i) + 0x1000) * 2654435761 // a bijection: all distinct
		if spis[i] < 256 {
			b.Fatal("reserved SPI")
		}
		mustAdd(b, db, inCfg(spis[i], ChildID(i+1)))
		mustAdd(b, db, outCfg(spis[i], ChildID(i+1)))
	}
	return db, spis
}

var sizes = []int{10, 1000, 100000}

func BenchmarkInbound(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db, spis := benchDB(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if db.Inbound(ESP, spis[i]) == nil {
					b.Fatal("miss")
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

func BenchmarkOutbound(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db, _ := benchDB(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if db.Outbound(ChildID(i+1)) == nil {
					b.Fatal("miss")
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

func BenchmarkInboundParallel(b *testing.B) {
	db, spis := benchDB(b, 1000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			db.Inbound(ESP, spis[i])
			if i++; i == len(spis) {
				i = 0
			}
		}
	})
}

func BenchmarkCount(b *testing.B) {
	db := New(Options{})
	sa := mustAdd(b, db, inCfg(0x1001, 1))
	b.ReportAllocs()
	for b.Loop() {
		sa.Count(1400)
	}
}

func BenchmarkCountParallelOneSA(b *testing.B) {
	db := New(Options{})
	sa := mustAdd(b, db, inCfg(0x1001, 1))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sa.Count(1400)
		}
	})
}

func BenchmarkReplace(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db, _ := benchDB(b, n)
			spi := uint32(0xf0000000)
			i := 0
			for b.Loop() {
				spi++
				db.Replace(outCfg(spi, ChildID(i+1)))
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

func BenchmarkSweep(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db := New(Options{})
			for i := range n {
				cfg := inCfg(uint32(0x1000+i), ChildID(i+1))
				cfg.Lifetime = Lifetime{Soft: Limits{Time: time.Hour}, Hard: Limits{Time: 2 * time.Hour}, Idle: time.Hour}
				mustAdd(b, db, cfg)
			}
			b.ReportAllocs()
			for b.Loop() {
				db.Sweep()
			}
		})
	}
}
