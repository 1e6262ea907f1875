package bench

import (
	"runtime"
	"slices"
	"strings"
	"testing"
)

func names[T any](xs []T, f func(T) string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

func TestParseTransforms(t *testing.T) {
	got, err := ParseTransforms(DefaultTransforms)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes128gmac", "aes128-sha256", "null-sha256", "ah-sha256"}
	if n := names(got, Transform.String); !slices.Equal(n, want) {
		t.Fatalf("default transforms %v, want %v", n, want)
	}
	if !got[6].AH || got[0].AH {
		t.Errorf("AH flags wrong: %+v", got)
	}
	// Aliases and case are canonicalised; duplicates dropped; spaces ignored.
	got, err = ParseTransforms(" AES128GCM128 , aes128cbc-sha2_256,aes128gcm16,ah-SHA2_256,ah-aes128gmac,")
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"aes128gcm16", "aes128-sha256", "ah-sha256", "ah-aes128gmac"}
	if n := names(got, Transform.String); !slices.Equal(n, want) {
		t.Errorf("got %v, want %v", n, want)
	}
	for _, bad := range []string{
		"", ",", "aes999gcm16", "aes128", "null", "aes128gcm16-sha256", "aes128-aes128gmac",
		"aes128-sha999", "ah-", "ah-bogus", "ah-aes128gcm16",
	} {
		if _, err := ParseTransforms(bad); err == nil {
			t.Errorf("ParseTransforms(%q) accepted", bad)
		}
	}
}

func TestParseSizes(t *testing.T) {
	got, err := ParseSizes(DefaultSizes)
	if err != nil {
		t.Fatal(err)
	}
	if n := names(got, Size.String); !slices.Equal(n, []string{"64", "512", "1400", "8192", "imix"}) {
		t.Fatalf("default sizes %v", n)
	}
	imix := got[4]
	if imix.Max() != 1500 || len(imix.Pattern) != 12 {
		t.Errorf("imix %+v", imix)
	}
	count := map[int]int{}
	for _, n := range imix.Pattern {
		count[n]++
	}
	if count[64] != 7 || count[576] != 4 || count[1500] != 1 {
		t.Errorf("imix mix %v, want 7:4:1 of 64/576/1500", count)
	}
	if m := imix.Mean(); m < 354.3 || m > 354.4 { // (7*64 + 4*576 + 1500) / 12
		t.Errorf("imix mean %v", m)
	}
	got, err = ParseSizes("1400, IMIX,1400,28,65000")
	if err != nil {
		t.Fatal(err)
	}
	if n := names(got, Size.String); !slices.Equal(n, []string{"1400", "imix", "28", "65000"}) {
		t.Errorf("got %v", n)
	}
	for _, bad := range []string{"", "27", "65001", "-64", "1k", "64,x"} {
		if _, err := ParseSizes(bad); err == nil {
			t.Errorf("ParseSizes(%q) accepted", bad)
		}
	}
}

func TestParseGoroutines(t *testing.T) {
	got, err := ParseGoroutines("1,cpus,4,1")
	if err != nil {
		t.Fatal(err)
	}
	want := []int{1, runtime.NumCPU(), 4}
	want = slices.Compact(want) // NumCPU may be 1 or 4
	if runtime.NumCPU() == 1 {
		want = []int{1, 4}
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "0", "-1", "two", "257", "1,,x"} {
		if _, err := ParseGoroutines(bad); err == nil {
			t.Errorf("ParseGoroutines(%q) accepted", bad)
		}
	}
}

func TestParseOpsAndSharing(t *testing.T) {
	ops, err := ParseOps("pipeline, SEAL,open,seal")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ops, []Op{OpSeal, OpOpen, OpPipeline}) {
		t.Errorf("ops %v: want display order, no duplicates", ops)
	}
	if _, err := ParseOps("seal,encrypt"); err == nil || !strings.Contains(err.Error(), "encrypt") {
		t.Errorf("bad op: %v", err)
	}
	sh, err := ParseSharing("shared,own")
	if err != nil || !slices.Equal(sh, []Sharing{Own, Shared}) {
		t.Errorf("sharing %v, %v", sh, err)
	}
	for _, bad := range []string{"", "both", "own,none"} {
		if _, err := ParseSharing(bad); err == nil {
			t.Errorf("ParseSharing(%q) accepted", bad)
		}
	}
}

func TestPlan(t *testing.T) {
	c := DefaultConfig()
	c.Goroutines = []int{1, 2}
	plan := c.plan()
	if want := 2 * 5 * 7; len(plan) != want {
		t.Fatalf("%d groups, want %d", len(plan), want)
	}
	rows, ceilings := 0, 0
	seen := map[string]bool{}
	for _, grp := range plan {
		first := grp[0]
		var gc []point
		for _, p := range grp {
			if p.g != first.g || p.size.Name != first.size.Name || p.t.Name != first.t.Name {
				t.Fatalf("group mixes points: %v and %v", first, p)
			}
			if seen[p.String()] {
				t.Fatalf("%v planned twice", p)
			}
			seen[p.String()] = true
			if p.isCeil {
				gc = append(gc, p)
				ceilings++
				continue
			}
			rows++
			if p.sa == Shared && p.g == 1 {
				t.Errorf("%v: shared with one goroutine", p)
			}
			if p.op == OpPipeline && p.t.AH {
				t.Errorf("%v: the pipeline has no AH path", p)
			}
			if p.ceil != ceilingKind(p.t) {
				t.Errorf("%v compared with %q", p, p.ceil)
			}
		}
		if len(gc) != 2 || !grp[0].isCeil || !grp[1].isCeil || gc[0].op != OpSeal || gc[1].op != OpOpen {
			t.Errorf("group %v: ceilings %v, want seal and open first", first, gc)
		}
	}
	// Per size: G=1: 6 ESP x 3 ops + AH x 2; G=2: 6 x 6 + AH x 4.
	if want := 5 * (6*3 + 2 + 6*6 + 4); rows != want {
		t.Errorf("%d rows, want %d", rows, want)
	}
	if ceilings != 2*len(plan) {
		t.Errorf("%d ceilings, want %d", ceilings, 2*len(plan))
	}
	// Only seal: no open ceiling.
	c.Ops = []Op{OpSeal}
	c.Sharing = []Sharing{Shared}
	for _, grp := range c.plan() {
		for _, p := range grp {
			if p.isCeil && p.op != OpSeal || !p.isCeil && (p.op != OpSeal || p.sa != Shared || p.g != 2) {
				t.Errorf("seal-only shared plan has %v", p)
			}
		}
	}
}

func TestCeilingKind(t *testing.T) {
	for in, want := range map[string]string{
		"aes128gcm16": "aes128gcm16", "chacha20poly1305": "chacha20poly1305", "aes256gmac": "gmac-aes256",
		"aes128-sha256": "aes128cbc+hmac-sha256", "null-sha512": "hmac-sha512", "ah-sha256": "hmac-sha256",
		"ah-aes128gmac": "gmac-aes128",
	} {
		tr, err := ParseTransform(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := ceilingKind(tr); got != want {
			t.Errorf("ceilingKind(%s) = %q, want %q", in, got, want)
		}
	}
}
