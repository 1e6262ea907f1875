package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestStdlibCeilings checks the reference ceilings: planned (seal and open)
// only for AES-GCM and AES-GMAC transforms, reported among the ceilings,
// and never the base of a row's ratio, which stays the ceiling of the AEAD
// ESP and AH use.
func TestStdlibCeilings(t *testing.T) {
	cfg := DefaultConfig()
	var err error
	if cfg.Transforms, err = ParseTransforms("aes128gcm16,chacha20poly1305,aes128gmac,ah-aes128gmac,aes128-sha256"); err != nil {
		t.Fatal(err)
	}
	if cfg.Sizes, err = ParseSizes("64"); err != nil {
		t.Fatal(err)
	}
	cfg.Goroutines, cfg.Ops, cfg.Sharing = []int{1}, []Op{OpSeal, OpOpen}, []Sharing{Own}
	cfg.Reps, cfg.Duration, cfg.Warmup, cfg.RingBytes = 2, 4*time.Millisecond, time.Millisecond, 32<<10
	cfg.StdlibCeilings = true
	refs := map[string]int{}
	for _, grp := range cfg.plan() {
		for _, p := range grp {
			if p.ref {
				if !p.isCeil || p.ceil != ceilingKind(p.t)+stdlibSuffix {
					t.Errorf("reference point %v", p)
				}
				refs[p.t.Name]++
			}
		}
	}
	want := map[string]int{"aes128gcm16": 2, "aes128gmac": 2, "ah-aes128gmac": 2}
	if len(refs) != len(want) {
		t.Errorf("reference ceilings for %v, want %v", refs, want)
	}
	for k, n := range want {
		if refs[k] != n {
			t.Errorf("%s: %d reference ceilings, want %d", k, refs[k], n)
		}
	}

	rep, err := RunDatapath(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]float64{} // transform/op -> its (non-reference) ceiling's median
	nref := 0
	for _, c := range rep.Ceilings {
		if strings.HasSuffix(c.Transform, stdlibSuffix) {
			nref++
			if !(c.Gbps.Median > 0) {
				t.Errorf("reference ceiling %s %s measured nothing", c.Transform, c.Op)
			}
			continue
		}
		base[c.With+"/"+string(c.Op)] = c.Gbps.Median
	}
	if nref != 6 {
		t.Errorf("%d reference ceilings reported, want 6", nref)
	}
	for _, r := range rep.Results {
		if b := base[r.Transform+"/"+string(r.Op)]; b <= 0 || r.CeilingGbps != b || strings.HasSuffix(r.Ceiling, stdlibSuffix) {
			t.Errorf("%s %s: ceiling %q %v, want the xform AEAD's %v", r.Op, r.Transform, r.Ceiling, r.CeilingGbps, b)
		}
	}
}
