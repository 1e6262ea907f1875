package esp

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/goipsec/goipsec/internal/aesgcm"
	"github.com/goipsec/goipsec/internal/xform"
)

// suite is one ESP transform combination under test.
type suite struct{ enc, integ string }

var suites = []suite{
	{"aes128gcm16", ""}, {"aes192gcm16", ""}, {"aes256gcm16", ""},
	{"chacha20poly1305", ""},
	{"aes128gmac", ""}, {"aes256gmac", ""},
	{"aes128", "sha256"}, {"aes192", "sha384"}, {"aes256", "sha512"},
	{"aes128", "sha1"}, {"3des", "md5"},
	{"null", "sha256"},
}

func (s suite) String() string {
	if s.integ == "" {
		return s.enc
	}
	return s.enc + "-" + s.integ
}

func randKey(t testing.TB, n int) []byte {
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// newPair returns an outbound and an inbound SA sharing the same keys.
func newPair(t testing.TB, s suite, esn bool, window int) (out, in *SA) {
	t.Helper()
	enc, err := xform.LookupEnc(s.enc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{SPI: 0x1234, Enc: enc, ESN: esn, ReplayWindow: window}
	if enc.Kind != xform.KindNull {
		cfg.EncKey = randKey(t, enc.KeyLen())
	}
	if s.integ != "" {
		if cfg.Integ, err = xform.LookupInteg(s.integ); err != nil {
			t.Fatal(err)
		}
		cfg.IntegKey = randKey(t, cfg.Integ.KeyLen)
	}
	if out, err = NewSA(&cfg); err != nil {
		t.Fatal(err)
	}
	if in, err = NewSA(&cfg); err != nil {
		t.Fatal(err)
	}
	return out, in
}

const headroom = 128

// bufWith returns a buffer holding p at offset headroom, with tailroom.
func bufWith(p []byte) ([]byte, int, int) {
	buf := make([]byte, headroom+len(p), headroom+len(p)+256)
	copy(buf[headroom:], p)
	return buf, headroom, headroom + len(p)
}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, s := range suites {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/esn=%v", s, esn), func(t *testing.T) {
				out, in := newPair(t, s, esn, 0)
				for _, n := range []int{0, 1, 2, 3, 15, 16, 17, 64, 1400} {
					payload := randKey(t, n)
					buf, off, end := bufWith(payload)
					start, pend, err := out.Seal(buf, off, end, 4)
					if err != nil {
						t.Fatal(err)
					}
					if got, want := pend-start, n+out.Overhead(n); got != want {
						t.Errorf("n=%d: sealed %d bytes, Overhead says %d", n, got, want)
					}
					if (pend-start-out.HeaderLen()-out.icvLen)%out.align != 0 {
						t.Errorf("n=%d: encrypted part not aligned to %d", n, out.align)
					}
					if out.enc.Kind == xform.KindAEAD && n >= 16 && bytes.Contains(buf[start:pend], payload) {
						t.Errorf("n=%d: payload visible in ciphertext", n)
					}
					ps, pe, nh, _, err := in.Open(buf[:pend], start, pend)
					if err != nil {
						t.Fatalf("n=%d: open: %v", n, err)
					}
					if nh != 4 || !bytes.Equal(buf[ps:pe], payload) {
						t.Fatalf("n=%d: got nh %d payload %x, want %x", n, nh, buf[ps:pe], payload)
					}
				}
			})
		}
	}
}

// TestESNHighBits checks that with ESN the high 32 bits enter the ICV: a
// packet sealed with sequence number 2^32+5 opens only on a receiver whose
// window infers the same high bits.
func TestESNHighBits(t *testing.T) {
	for _, s := range []suite{{"aes128gcm16", ""}, {"aes128", "sha256"}, {"aes128gmac", ""}, {"chacha20poly1305", ""}} {
		t.Run(s.String(), func(t *testing.T) {
			out, in := newPair(t, s, true, 0)
			out.seq.Store(1<<32 + 4)
			buf, off, end := bufWith([]byte("hello"))
			start, pend, err := out.Seal(buf, off, end, 4)
			if err != nil {
				t.Fatal(err)
			}
			pkt := append([]byte(nil), buf[start:pend]...)
			// A fresh receiver infers high bits 0: the ICV must fail.
			if _, _, _, _, err := in.Open(buf, start, pend); !errors.Is(err, ErrAuth) {
				t.Fatalf("fresh receiver: got %v, want ErrAuth", err)
			}
			// A receiver that has seen 2^32+1 infers high bits 1.
			if err := in.window.Accept(1<<32 + 1); err != nil {
				t.Fatal(err)
			}
			copy(buf[:cap(buf)][start:], pkt)
			_, _, _, seq, err := in.Open(buf, start, pend)
			if err != nil || seq != 1<<32+5 {
				t.Fatalf("got seq %d err %v, want %d", seq, err, uint64(1<<32+5))
			}
		})
	}
}

func TestSeqOverflow(t *testing.T) {
	out, _ := newPair(t, suite{"aes128gcm16", ""}, false, 0)
	out.seq.Store(1<<32 - 2)
	buf, off, end := bufWith([]byte("x"))
	if _, _, err := out.Seal(buf, off, end, 4); err != nil {
		t.Fatalf("last sequence number: %v", err)
	}
	for i := 0; i < 3; i++ {
		buf, off, end = bufWith([]byte("x"))
		if _, _, err := out.Seal(buf, off, end, 4); !errors.Is(err, ErrSeqOverflow) {
			t.Fatalf("after 2^32-1: got %v, want ErrSeqOverflow", err)
		}
	}
	esnOut, _ := newPair(t, suite{"aes128gcm16", ""}, true, 0)
	esnOut.seq.Store(1<<32 - 1)
	buf, off, end = bufWith([]byte("x"))
	if _, _, err := esnOut.Seal(buf, off, end, 4); err != nil {
		t.Fatalf("ESN past 2^32: %v", err)
	}
}

// TestRejections covers every rejection path of Open with its typed error,
// and checks that a rejected packet does not move the replay window.
func TestRejections(t *testing.T) {
	for _, s := range []suite{{"aes128gcm16", ""}, {"aes128", "sha256"}, {"aes128gmac", ""}, {"null", "sha256"}} {
		t.Run(s.String(), func(t *testing.T) {
			out, in := newPair(t, s, false, 64)
			seal := func(payload []byte) []byte {
				buf, off, end := bufWith(payload)
				start, pend, err := out.Seal(buf, off, end, 4)
				if err != nil {
					t.Fatal(err)
				}
				return append([]byte(nil), buf[start:pend]...)
			}
			open := func(pkt []byte) error {
				buf, off, end := bufWith(pkt)
				_, _, _, _, err := in.Open(buf, off, end)
				return err
			}
			good := seal([]byte("payload payload payload"))
			tamperICV := append([]byte(nil), good...)
			tamperICV[len(tamperICV)-1] ^= 1
			tamperCT := append([]byte(nil), good...)
			tamperCT[out.HeaderLen()] ^= 0x80
			tamperSeq := append([]byte(nil), good...)
			tamperSeq[7] ^= 2
			wrongSPI := append([]byte(nil), good...)
			wrongSPI[3] ^= 1
			for _, tc := range []struct {
				name string
				pkt  []byte
				want error
			}{
				{"empty", nil, ErrTruncated},
				{"header only", good[:8], ErrTruncated},
				{"truncated", good[:out.HeaderLen()+2], ErrTruncated},
				{"icv", tamperICV, ErrAuth},
				{"ciphertext", tamperCT, ErrAuth},
				{"seq", tamperSeq, ErrAuth},
				{"spi", wrongSPI, ErrSPI},
				{"cut one byte", good[:len(good)-1], nil}, // ErrAuth or ErrBadLength
			} {
				err := open(tc.pkt)
				if err == nil {
					t.Errorf("%s: accepted", tc.name)
					continue
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
				}
			}
			if in.window.Highest() != 0 {
				t.Fatalf("rejected packets moved the window to %d", in.window.Highest())
			}
			if err := open(good); err != nil {
				t.Fatalf("good packet after rejections: %v", err)
			}
			if err := open(good); !errors.Is(err, ErrReplay) {
				t.Errorf("replay: got %v", err)
			}
			var last []byte
			for i := 0; i < 70; i++ {
				last = seal([]byte("later"))
			}
			if err := open(last); err != nil {
				t.Fatal(err)
			}
			old := seal([]byte("x"))
			old[4], old[5], old[6], old[7] = 0, 0, 0, 2
			if err := open(old); !errors.Is(err, ErrTooOld) {
				t.Errorf("too old: got %v", err)
			}
			zero := append([]byte(nil), old...)
			zero[7] = 0
			if err := open(zero); !errors.Is(err, ErrSeqZero) && !errors.Is(err, ErrTooOld) {
				t.Errorf("seq 0: got %v", err)
			}
		})
	}
}

func TestBadPaddingAndDummy(t *testing.T) {
	// NULL encryption lets the test write any trailer and still sign it.
	out, in := newPair(t, suite{"null", "sha256"}, false, 0)
	for i, tc := range []struct {
		name    string
		payload []byte // payload including hand-made padding
		padLen  byte
		nh      uint8
		want    error
	}{
		{"good hand-made pad", []byte{9, 9, 1, 2}, 2, 4, nil},
		{"non-monotonic pad", []byte{9, 9, 1, 3}, 2, 4, ErrBadPadding},
		{"pad longer than payload", []byte{9, 9}, 200, 4, ErrBadLength},
		{"dummy", []byte{0, 0}, 0, NextHeaderNone, ErrDummy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Seal payload||padLen||nh as a payload of its own with next
			// header nh, then strip the trailer Seal added by re-signing.
			buf := make([]byte, headroom+64, headroom+512)
			p := append(append([]byte(nil), tc.payload...), tc.padLen, tc.nh)
			copy(buf[headroom:], p)
			start := headroom - out.HeaderLen()
			putHeader(buf[start:], out.spi, uint32(i+1))
			end := headroom + len(p)
			s := out.mac.Begin()
			s.Write(buf[start:end])
			out.mac.Finish(s, buf[end:end+out.icvLen], buf[end+out.icvLen:end+out.icvLen+64])
			end += out.icvLen
			_, _, nh, _, err := in.Open(buf[:end], start, end)
			if tc.want == nil {
				if err != nil || nh != tc.nh {
					t.Fatalf("got nh %d err %v", nh, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func putHeader(b []byte, spi, seq uint32) {
	b[0], b[1], b[2], b[3] = byte(spi>>24), byte(spi>>16), byte(spi>>8), byte(spi)
	b[4], b[5], b[6], b[7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
}

func TestNoRoom(t *testing.T) {
	out, in := newPair(t, suite{"aes128gcm16", ""}, false, 0)
	buf := make([]byte, 100)
	if _, _, err := out.Seal(buf, 4, 50, 4); !errors.Is(err, ErrNoRoom) {
		t.Errorf("no headroom: %v", err)
	}
	if _, _, err := out.Seal(buf, 50, 100, 4); !errors.Is(err, ErrNoRoom) {
		t.Errorf("no tailroom: %v", err)
	}
	if _, _, _, _, err := in.Open(buf, 0, 100); !errors.Is(err, ErrNoRoom) {
		t.Errorf("open without scratch: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	gcm, _ := xform.LookupEnc("aes128gcm16")
	cbc, _ := xform.LookupEnc("aes128")
	sha, _ := xform.LookupInteg("sha256")
	gmac, _ := xform.LookupInteg("aes128gmac")
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no enc", Config{SPI: 0x1000}},
		{"reserved spi", Config{SPI: 5, Enc: gcm, EncKey: make([]byte, 20)}},
		{"aead with integ", Config{SPI: 0x1000, Enc: gcm, EncKey: make([]byte, 20), Integ: sha, IntegKey: make([]byte, 32)}},
		{"cbc without integ", Config{SPI: 0x1000, Enc: cbc, EncKey: make([]byte, 16)}},
		{"cbc with gmac", Config{SPI: 0x1000, Enc: cbc, EncKey: make([]byte, 16), Integ: gmac, IntegKey: make([]byte, 20)}},
		{"short key", Config{SPI: 0x1000, Enc: gcm, EncKey: make([]byte, 16)}},
		{"window too big", Config{SPI: 0x1000, Enc: gcm, EncKey: make([]byte, 20), ReplayWindow: 1 << 30}},
	} {
		if _, err := NewSA(&tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestBatch(t *testing.T) {
	out, in := newPair(t, suite{"aes128gcm16", ""}, false, 0)
	pkts := make([]Packet, 8)
	want := make([][]byte, len(pkts))
	for i := range pkts {
		want[i] = randKey(t, 100+i)
		buf, off, end := bufWith(want[i])
		pkts[i] = Packet{Buf: buf, Off: off, End: end, NextHeader: 41}
	}
	out.SealBatch(pkts)
	for i, p := range pkts {
		if p.Err != nil || p.Seq != uint64(i+1) {
			t.Fatalf("packet %d: seq %d err %v", i, p.Seq, p.Err)
		}
	}
	// Deliver in reverse order, with a duplicate.
	rev := make([]Packet, 0, len(pkts)+1)
	for i := len(pkts) - 1; i >= 0; i-- {
		rev = append(rev, pkts[i])
	}
	dup := pkts[3]
	dup.Buf = append([]byte(nil), pkts[3].Buf[:cap(pkts[3].Buf)]...)[:len(pkts[3].Buf)]
	rev = append(rev, dup)
	in.OpenBatch(rev)
	for i, p := range rev[:len(pkts)] {
		j := len(pkts) - 1 - i
		if p.Err != nil || p.NextHeader != 41 || !bytes.Equal(p.Buf[p.Off:p.End], want[j]) {
			t.Fatalf("packet %d: err %v", j, p.Err)
		}
	}
	if !errors.Is(rev[len(pkts)].Err, ErrReplay) {
		t.Fatalf("duplicate: %v", rev[len(pkts)].Err)
	}
}

func TestZero(t *testing.T) {
	out, in := newPair(t, suite{"aes128gcm16", ""}, false, 0)
	buf, off, end := bufWith([]byte("x"))
	start, pend, err := out.Seal(buf, off, end, 4)
	if err != nil {
		t.Fatal(err)
	}
	in.Zero()
	if _, _, _, _, err := in.Open(buf, start, pend); !errors.Is(err, ErrDead) {
		t.Fatalf("open on a zeroed SA: %v", err)
	}
	// On the vector path the AEAD's expanded key goes too: the object
	// no longer seals as it did.
	a, nonce := out.aead, make([]byte, 12)
	before := a.Seal(nil, nonce, []byte("probe"), nil)
	out.Zero()
	if _, wipes := a.(aesgcm.Wiper); wipes && bytes.Equal(a.Seal(nil, nonce, []byte("probe"), nil), before) {
		t.Fatal("the AEAD's key survived Zero")
	}
	if _, _, err := out.Seal(buf, off, end, 4); !errors.Is(err, ErrDead) {
		t.Fatalf("seal on a zeroed SA: %v", err)
	}
	if in.salt != [4]byte{} {
		t.Fatal("salt not wiped")
	}
}

// TestRejectNoAlloc checks that rejecting a packet does not allocate, so a
// flood of forged packets costs no garbage.
func TestRejectNoAlloc(t *testing.T) {
	out, in := newPair(t, suite{"aes128gcm16", ""}, false, 0)
	buf, off, end := bufWith(make([]byte, 100))
	start, pend, _ := out.Seal(buf, off, end, 4)
	buf[:cap(buf)][pend-1] ^= 1
	pkt := append([]byte(nil), buf[:cap(buf)][start:pend]...)
	allocs := testing.AllocsPerRun(100, func() {
		copy(buf[:cap(buf)][start:], pkt)
		if _, _, _, _, err := in.Open(buf, start, pend); !errors.Is(err, ErrAuth) {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per rejected packet", allocs)
	}
	if got := (&Error{SPI: 0x1234, Reason: ErrAuth}).Error(); got != "esp: spi 0x1234: integrity check failed" {
		t.Fatalf("message %q", got)
	}
}

// TestScratchLeftClean checks that Seal and Open leave no trace (salt,
// nonce, AAD, digests) in the scratch space after the packet, for every
// suite with and without ESN, although they clear only what they used, and
// that Open puts back the bytes before the packet it borrows.
func TestScratchLeftClean(t *testing.T) {
	for _, s := range suites {
		for _, esn := range []bool{false, true} {
			out, in := newPair(t, s, esn, 0)
			const n = 77
			buf := make([]byte, 64+n+out.Tailroom())
			for i := 64; i < 64+n; i++ {
				buf[i] = byte(i)
			}
			start, end, err := out.Seal(buf, 64, 64+n, 4)
			if err != nil {
				t.Fatal(err)
			}
			if tail := buf[end : end+ScratchLen]; !bytes.Equal(tail, make([]byte, ScratchLen)) {
				t.Errorf("%s esn=%v: Seal left % x", s, esn, tail)
			}
			// Open may build its nonce in the bytes before the packet: it
			// must put them back, whether the packet opens or not.
			for i := range buf[:start] {
				buf[i] = byte(0xa0 + i)
			}
			before := bytes.Clone(buf[:start])
			bad := bytes.Clone(buf)
			bad[end-1] ^= 1
			if _, _, _, _, err := in.Open(bad, start, end); err == nil {
				t.Fatalf("%s esn=%v: a bad ICV opened", s, esn)
			}
			if !bytes.Equal(bad[:start], before) {
				t.Errorf("%s esn=%v: a failed Open changed the bytes before the packet: % x", s, esn, bad[:start])
			}
			if _, _, _, _, err := in.Open(buf, start, end); err != nil {
				t.Fatalf("%s esn=%v: %v", s, esn, err)
			}
			if tail := buf[end : end+ScratchLen]; !bytes.Equal(tail, make([]byte, ScratchLen)) {
				t.Errorf("%s esn=%v: Open left % x", s, esn, tail)
			}
			if !bytes.Equal(buf[:start], before) {
				t.Errorf("%s esn=%v: Open changed the bytes before the packet: % x", s, esn, buf[:start])
			}
		}
	}
}

// TestMonotonicPad checks the padding check against the definition, for
// valid padding of every length up to 20 and every single-byte corruption,
// with 0 to 9 bytes before the padding (so both the one-word check and the
// loop run), whose values must not matter.
func TestMonotonicPad(t *testing.T) {
	for n := 0; n <= 20; n++ {
		for before := 0; before <= 9; before++ {
			for _, fill := range []byte{0x00, 0xaa, 0x01, 0xff} {
				buf := make([]byte, before+n)
				for i := range before {
					buf[i] = fill
				}
				pad := buf[before:]
				for i := range pad {
					pad[i] = byte(i + 1)
				}
				if !monotonicPad(buf, n) {
					t.Errorf("pad %d after %d bytes of %#x: valid padding refused", n, before, fill)
				}
				for i := range pad {
					for _, bad := range []byte{0, byte(i), byte(i + 2), 0xff} {
						if bad == byte(i+1) {
							continue
						}
						old := pad[i]
						pad[i] = bad
						if monotonicPad(buf, n) {
							t.Errorf("pad %d after %d bytes: byte %d = %d accepted", n, before, i, bad)
						}
						pad[i] = old
					}
				}
			}
		}
	}
}

// TestSealFast checks the usual SA's short path against the general one:
// the same ESP packet, byte for byte, for every payload length that gives
// each padding, both next headers, and the same refusals of short
// buffers.
func TestSealFast(t *testing.T) {
	for _, enc := range []string{"aes128gcm16", "aes256gcm16", "aes128gmac"} {
		t.Run(enc, func(t *testing.T) { testSealFast(t, enc) })
	}
}

func testSealFast(t *testing.T, enc string) {
	fast, in := newPair(t, suite{enc, ""}, false, 0)
	if !fast.fast {
		t.Skip("no vector AES-GCM on this CPU: the short path is not taken")
	}
	general, _ := newPair(t, suite{enc, ""}, false, 0)
	general.ivAEAD, general.fast = nil, false
	general.aead, general.salt = fast.aead, fast.salt
	general.spi = fast.spi
	for n := 0; n <= 40; n++ {
		for _, nh := range []uint8{4, 41} {
			var pkts [2][]byte
			for i, sa := range []*SA{fast, general} {
				payload := bytes.Repeat([]byte{byte(n)}, n)
				buf, off, end := bufWith(payload)
				for j := end; j < cap(buf); j++ {
					buf[:cap(buf)][j] = 0xee // what the trailer word runs over
				}
				s, e, err := sa.seal(buf, off, end, nh, uint64(1000+n))
				if err != nil {
					t.Fatalf("len %d: %v", n, err)
				}
				pkts[i] = bytes.Clone(buf[:cap(buf)][s:e])
			}
			if !bytes.Equal(pkts[0], pkts[1]) {
				t.Fatalf("len %d nh %d: short path\n%x\ngeneral\n%x", n, nh, pkts[0], pkts[1])
			}
			// Sealed into another buffer (the GSO arena's path).
			if nh == 4 && !fast.isGMAC {
				var to [2][]byte
				for i, sa := range []*SA{fast, general} {
					src := make([]byte, n+20, n+20+sa.Tailroom())
					src[0] = 0x45
					dst := make([]byte, sa.Overhead(n+20)+n+20)
					m, err := sa.EncapTunnelToAt(dst, src, 0, n+20, uint64(2000+n))
					if err != nil {
						t.Fatalf("len %d: EncapTunnelToAt: %v", n, err)
					}
					to[i] = dst[:m]
				}
				if !bytes.Equal(to[0], to[1]) {
					t.Fatalf("len %d: EncapTunnelToAt short path\n%x\ngeneral\n%x", n, to[0], to[1])
				}
			}
			buf := make([]byte, 256)
			copy(buf[64:], pkts[0])
			_ = in.window.Init(0)
			_, pend, gotNH, _, err := in.Open(buf, 64, 64+len(pkts[0]))
			if err != nil || gotNH != nh || pend-64-in.hdrLen != n {
				t.Fatalf("len %d: opened to %d bytes, nh %d, %v", n, pend-64-in.hdrLen, gotNH, err)
			}
		}
	}
	// Too little room before or after: refused like the general path.
	buf := make([]byte, 100)
	for _, c := range []struct{ off, end int }{{15, 20}, {16, 100 - ScratchLen - 16 - 1}, {40, 39}} {
		if _, _, err := fast.seal(buf, c.off, c.end, 4, 1); !errors.Is(err, ErrNoRoom) {
			t.Errorf("off %d end %d: %v, want ErrNoRoom", c.off, c.end, err)
		}
	}
}

func TestTrailerWord(t *testing.T) {
	for pad := range 4 {
		var want [8]byte
		for i := range pad {
			want[i] = byte(i + 1)
		}
		want[pad], want[pad+1] = byte(pad), 99
		var got [8]byte
		binary.LittleEndian.PutUint64(got[:], trailerWord(pad, 99))
		if got != want {
			t.Errorf("pad %d: %x, want %x", pad, got, want)
		}
	}
}
