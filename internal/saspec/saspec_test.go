package saspec

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/replay"
	"github.com/goipsec/goipsec/internal/xform"
)

// hexKey returns "0x" and n bytes of key material 01 02 03 ...
func hexKey(n int) string { return "0x" + hex.EncodeToString(keyBytes(n)) }

func keyBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		spec  string
		want  Spec
		canon string
	}{
		{
			spec:  "spi=0x1234,proto=esp,enc=aes128gcm16,key=" + hexKey(20),
			want:  Spec{SPI: 0x1234, Proto: ESP, Enc: enc("aes128gcm16"), Key: keyBytes(20), Window: replay.DefaultSize, Seq: 1},
			canon: "spi=0x00001234,proto=esp,enc=aes128gcm16",
		},
		{
			spec:  "spi=4660,proto=ESP,enc=aes256,key=" + hexKey(32) + ",integ=sha256,authkey=" + hexKey(32) + ",esn,window=0,seq=0x100000000",
			want:  Spec{SPI: 4660, Proto: ESP, Enc: enc("aes256"), Key: keyBytes(32), Integ: integ("sha256"), AuthKey: keyBytes(32), ESN: true, Window: 0, Seq: 1 << 32},
			canon: "spi=0x00001234,proto=esp,enc=aes256,integ=sha256,esn,window=0,seq=4294967296",
		},
		{
			spec:  " spi = 0x100 , proto=esp , enc=null , integ=sha1 , authkey=0X" + strings.ToUpper(hexKey(20)[2:]) + " , window=65536, seq=4294967295, esn=no",
			want:  Spec{SPI: 0x100, Proto: ESP, Enc: enc("null"), Integ: integ("sha1"), AuthKey: keyBytes(20), Window: 65536, Seq: 1<<32 - 1},
			canon: "spi=0x00000100,proto=esp,enc=null,integ=sha1,window=65536,seq=4294967295",
		},
		{
			spec:  "spi=0xffffffff,proto=esp,enc=aes128gmac,key=" + hexKey(20),
			want:  Spec{SPI: 0xffffffff, Proto: ESP, Enc: enc("aes128gmac"), Key: keyBytes(20), Window: replay.DefaultSize, Seq: 1},
			canon: "spi=0xffffffff,proto=esp,enc=aes128gmac",
		},
		{
			spec:  "spi=0x2000,proto=esp,enc=chacha20poly1305,key=" + hexKey(36) + ",esn=yes",
			want:  Spec{SPI: 0x2000, Proto: ESP, Enc: enc("chacha20poly1305"), Key: keyBytes(36), ESN: true, Window: replay.DefaultSize, Seq: 1},
			canon: "spi=0x00002000,proto=esp,enc=chacha20poly1305,esn",
		},
		{
			spec:  "spi=0x2000,proto=esp,enc=3des,key=" + hexKey(24) + ",integ=md5,authkey=" + hexKey(16),
			want:  Spec{SPI: 0x2000, Proto: ESP, Enc: enc("3des"), Key: keyBytes(24), Integ: integ("md5"), AuthKey: keyBytes(16), Window: replay.DefaultSize, Seq: 1},
			canon: "spi=0x00002000,proto=esp,enc=3des,integ=md5",
		},
		{
			spec:  "SPI=0x3000,proto=ah,integ=sha512,authkey=" + hexKey(64),
			want:  Spec{SPI: 0x3000, Proto: AH, Integ: integ("sha512"), AuthKey: keyBytes(64), Window: replay.DefaultSize, Seq: 1},
			canon: "spi=0x00003000,proto=ah,integ=sha512",
		},
		{
			spec:  "spi=0x3000,proto=ah,integ=aes256gmac,authkey=" + hexKey(36),
			want:  Spec{SPI: 0x3000, Proto: AH, Integ: integ("aes256gmac"), AuthKey: keyBytes(36), Window: replay.DefaultSize, Seq: 1},
			canon: "spi=0x00003000,proto=ah,integ=aes256gmac",
		},
	}
	for _, tt := range tests {
		got, err := Parse(tt.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.spec, err)
			continue
		}
		if got.SPI != tt.want.SPI || got.Proto != tt.want.Proto || got.Enc != tt.want.Enc ||
			got.Integ != tt.want.Integ || !bytes.Equal(got.Key, tt.want.Key) ||
			!bytes.Equal(got.AuthKey, tt.want.AuthKey) || got.ESN != tt.want.ESN ||
			got.Window != tt.want.Window || got.Seq != tt.want.Seq {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.spec, got, tt.want)
		}
		if s := got.String(); s != tt.canon {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.spec, s, tt.canon)
		}
	}
}

func enc(n string) *xform.Enc {
	e, err := xform.LookupEnc(n)
	if err != nil {
		panic(err)
	}
	return e
}

func integ(n string) *xform.Integ {
	i, err := xform.LookupInteg(n)
	if err != nil {
		panic(err)
	}
	return i
}

const gcm = "spi=0x1234,proto=esp,enc=aes128gcm16,key=0x0102030405060708090a0b0c0d0e0f1011121314"

func TestParseBad(t *testing.T) {
	k20, k32 := hexKey(20), hexKey(32)
	tests := []struct{ spec, want string }{
		{"", "sa spec: empty; want e.g. spi=0x1234,proto=esp,enc=aes128gcm16,key=0x<40 hex digits>"},
		{"  ", "sa spec: empty; want e.g. spi=0x1234,proto=esp,enc=aes128gcm16,key=0x<40 hex digits>"},
		{gcm + ",", "sa spec: item 5 is empty (stray comma?)"},
		{gcm + ",0x00112233", "sa spec: item 5: want key=value"},
		{gcm + ",foo=1", `sa spec: unknown key "foo" (want one of spi, proto, enc, key, integ, authkey, esn, window, seq)`},
		{gcm + ",spi=0x1235", "sa spec: spi: given twice"},
		{gcm + ",esn,esn", "sa spec: esn: given twice"},
		{gcm + ",esn=maybe", `sa spec: esn: want esn (or esn=yes / esn=no), got "maybe"`},
		{gcm + ",window", "sa spec: window: missing value (want window=...)"},
		{gcm + ",window=", "sa spec: window: missing value (want window=...)"},
		{"proto=esp,enc=aes128gcm16,key=" + k20, "sa spec: spi: missing (want spi=0x... from 0x100 to 0xffffffff)"},
		{"spi=zz,proto=esp,enc=aes128gcm16,key=" + k20, `sa spec: spi: want a number from 256 to 4294967295 (e.g. 0x1234), got "zz"`},
		{"spi=0x100000000,proto=esp,enc=aes128gcm16,key=" + k20, `sa spec: spi: want a number from 256 to 4294967295 (e.g. 0x1234), got "0x100000000"`},
		{"spi=0xff,proto=esp,enc=aes128gcm16,key=" + k20, "sa spec: spi: 0xff is reserved (0 to 255); want 256 (0x100) or more"},
		{"spi=0,proto=esp,enc=aes128gcm16,key=" + k20, "sa spec: spi: 0x0 is reserved (0 to 255); want 256 (0x100) or more"},
		{"spi=0x1234,enc=aes128gcm16,key=" + k20, "sa spec: proto: missing (want proto=esp or proto=ah)"},
		{"spi=0x1234,proto=ipcomp,enc=aes128gcm16,key=" + k20, `sa spec: proto: want esp or ah, got "ipcomp"`},
		{"spi=0x1234,proto=esp,key=" + k20, "sa spec: enc: missing: proto=esp needs enc=... (one of aes128gcm16, aes192gcm16, aes256gcm16, chacha20poly1305, aes128gmac, aes192gmac, aes256gmac, aes128, aes192, aes256, 3des, null)"},
		{"spi=0x1234,proto=esp,enc=aes129,key=" + k20, `sa spec: enc: unknown algorithm "aes129" (want one of aes128gcm16, aes192gcm16, aes256gcm16, chacha20poly1305, aes128gmac, aes192gmac, aes256gmac, aes128, aes192, aes256, 3des, null)`},
		{"spi=0x1234,proto=esp,enc=sha256,key=" + k20, `sa spec: enc: "sha256" is an integrity algorithm; want integ=sha256 with an encryption algorithm (one of aes128gcm16, aes192gcm16, aes256gcm16, chacha20poly1305, aes128gmac, aes192gmac, aes256gmac, aes128, aes192, aes256, 3des, null)`},
		{"spi=0x1234,proto=esp,enc=aes128gcm16", "sa spec: key: missing: enc=aes128gcm16 wants 20 bytes (16-byte key + 4-byte salt, 0x and 40 hex digits)"},
		{"spi=0x1234,proto=esp,enc=aes128gcm16,key=" + hexKey(16), "sa spec: key: enc=aes128gcm16 wants 20 bytes (16-byte key + 4-byte salt, 0x and 40 hex digits), got 16 bytes"},
		{"spi=0x1234,proto=esp,enc=aes256gcm16,key=" + hexKey(32), "sa spec: key: enc=aes256gcm16 wants 36 bytes (32-byte key + 4-byte salt, 0x and 72 hex digits), got 32 bytes"},
		{"spi=0x1234,proto=esp,enc=chacha20poly1305,key=" + hexKey(32), "sa spec: key: enc=chacha20poly1305 wants 36 bytes (32-byte key + 4-byte salt, 0x and 72 hex digits), got 32 bytes"},
		{"spi=0x1234,proto=esp,enc=aes192gmac,key=" + hexKey(24), "sa spec: key: enc=aes192gmac wants 28 bytes (24-byte key + 4-byte salt, 0x and 56 hex digits), got 24 bytes"},
		{"spi=0x1234,proto=esp,enc=aes128,key=" + hexKey(20) + ",integ=sha256,authkey=" + k32, "sa spec: key: enc=aes128 wants 16 bytes (0x and 32 hex digits), got 20 bytes"},
		{"spi=0x1234,proto=esp,enc=3des,key=" + hexKey(16) + ",integ=sha256,authkey=" + k32, "sa spec: key: enc=3des wants 24 bytes (0x and 48 hex digits), got 16 bytes"},
		{"spi=0x1234,proto=esp,enc=aes128gcm16,key=0102030405060708090a0b0c0d0e0f1011121314", "sa spec: key: want 0x followed by hex digits"},
		{"spi=0x1234,proto=esp,enc=aes128gcm16,key=0x", "sa spec: key: no hex digits after 0x"},
		{"spi=0x1234,proto=esp,enc=aes128gcm16,key=0x01020g", "sa spec: key: not a hex digit at position 6 after 0x"},
		{"spi=0x1234,proto=esp,enc=aes128gcm16,key=0x01020", "sa spec: key: odd number of hex digits (5)"},
		{gcm + ",integ=sha256,authkey=" + k32, "sa spec: integ: not allowed with enc=aes128gcm16, a combined-mode algorithm with its own ICV"},
		{gcm + ",authkey=" + k32, "sa spec: authkey: not allowed with enc=aes128gcm16, a combined-mode algorithm keyed by key= alone"},
		{"spi=0x1234,proto=esp,enc=aes128gmac,key=" + k20 + ",integ=sha256", "sa spec: integ: not allowed with enc=aes128gmac, a combined-mode algorithm with its own ICV"},
		{"spi=0x1234,proto=esp,enc=aes128,key=" + hexKey(16), "sa spec: integ: missing: enc=aes128 needs an integrity algorithm (one of sha256, sha384, sha512, sha1, md5)"},
		{"spi=0x1234,proto=esp,enc=null,integ=sha257,authkey=" + k32, `sa spec: integ: unknown algorithm "sha257" (want one of sha256, sha384, sha512, sha1, md5)`},
		{"spi=0x1234,proto=esp,enc=null,integ=aes128gmac,authkey=" + k20, "sa spec: integ: aes128gmac is not an ESP integrity algorithm; for ESP with AES-GMAC (ENCR_NULL_AUTH_AES_GMAC) write enc=aes128gmac,key=0x<40 hex digits> without integ"},
		{"spi=0x1234,proto=esp,enc=aes128,key=" + hexKey(16) + ",integ=aes256gmac,authkey=" + hexKey(36), "sa spec: integ: aes256gmac is not an ESP integrity algorithm (want one of sha256, sha384, sha512, sha1, md5); AES-GMAC is ESP's enc=aes256gmac, integrity only"},
		{"spi=0x1234,proto=esp,enc=null,key=" + hexKey(16) + ",integ=sha256,authkey=" + k32, "sa spec: key: not allowed with enc=null, which takes no key"},
		{"spi=0x1234,proto=esp,enc=null,integ=sha256", "sa spec: authkey: missing: integ=sha256 wants 32 bytes (0x and 64 hex digits)"},
		{"spi=0x1234,proto=esp,enc=null,integ=sha384,authkey=" + k32, "sa spec: authkey: integ=sha384 wants 48 bytes (0x and 96 hex digits), got 32 bytes"},
		{"spi=0x1234,proto=esp,enc=null,integ=sha1,authkey=0xabc", "sa spec: authkey: odd number of hex digits (3)"},
		{"spi=0x1234,proto=ah,enc=aes128gcm16,integ=sha256,authkey=" + k32, "sa spec: enc: not allowed with proto=ah: AH authenticates only (want integ=... and authkey=...)"},
		{"spi=0x1234,proto=ah,key=" + k32 + ",integ=sha256", "sa spec: key: not allowed with proto=ah: AH's key is authkey="},
		{"spi=0x1234,proto=ah,authkey=" + k32, "sa spec: integ: missing: proto=ah needs integ=... (one of sha256, sha384, sha512, sha1, md5, aes128gmac, aes192gmac, aes256gmac)"},
		{"spi=0x1234,proto=ah,integ=aes128gcm16,authkey=" + k20, `sa spec: integ: unknown algorithm "aes128gcm16" (want one of sha256, sha384, sha512, sha1, md5, aes128gmac, aes192gmac, aes256gmac)`},
		{"spi=0x1234,proto=ah,integ=aes128gmac,authkey=" + hexKey(16), "sa spec: authkey: integ=aes128gmac wants 20 bytes (16-byte key + 4-byte salt, 0x and 40 hex digits), got 16 bytes"},
		{"spi=0x1234,proto=ah,integ=sha256", "sa spec: authkey: missing: integ=sha256 wants 32 bytes (0x and 64 hex digits)"},
		{gcm + ",window=65537", `sa spec: window: want a number of packets from 0 (anti-replay off) to 65536, got "65537"`},
		{gcm + ",window=-1", `sa spec: window: want a number of packets from 0 (anti-replay off) to 65536, got "-1"`},
		{gcm + ",seq=0", `sa spec: seq: want a first sequence number from 1 to 4294967295, got "0"`},
		{gcm + ",seq=4294967296", `sa spec: seq: want a first sequence number from 1 to 4294967295 (larger values need esn), got "4294967296"`},
		{gcm + ",esn,seq=18446744073709551616", `sa spec: seq: want a first sequence number from 1 to 18446744073709551615, got "18446744073709551616"`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.spec)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want %q", tt.spec, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Parse(%q):\n got %q\nwant %q", tt.spec, err.Error(), tt.want)
		}
		if _, ok := err.(*Error); !ok {
			t.Errorf("Parse(%q) error is %T, want *Error", tt.spec, err)
		}
	}
}

// TestErrorsHideKeys checks that no message repeats key material.
func TestErrorsHideKeys(t *testing.T) {
	const secret = "deadbeefcafe"
	for _, spec := range []string{
		"spi=0x1234,proto=esp,enc=aes128gcm16,key=0x" + secret,
		"spi=0x1234,proto=esp,enc=aes128gcm16,key=0x" + secret + "zz",
		"spi=0x1234,proto=esp,enc=aes128gcm16,key=" + secret,
		"spi=0x1234,proto=esp,enc=aes128gcm16,0x" + secret,
		"spi=0x1234,proto=esp,enc=null,integ=sha256,authkey=0x" + secret,
		"spi=0x1234,proto=esp,enc=aes128gcm16,key=0x" + secret + ",key=0x" + secret,
	} {
		_, err := Parse(spec)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", spec)
		}
		if strings.Contains(strings.ToLower(err.Error()), secret) {
			t.Errorf("Parse(%q): error %q shows the key", spec, err)
		}
	}
}

func TestESPConfig(t *testing.T) {
	sp, err := Parse("spi=0x1234,proto=esp,enc=aes128,key=" + hexKey(16) + ",integ=sha256,authkey=" + hexKey(32) + ",esn,window=0,seq=7")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := sp.ESPConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SPI != 0x1234 || cfg.Enc.Name != "aes128" || cfg.Integ.Name != "sha256" || !cfg.ESN ||
		cfg.ReplayWindow >= 0 || cfg.NextSeq != 7 ||
		!bytes.Equal(cfg.EncKey, keyBytes(16)) || !bytes.Equal(cfg.IntegKey, keyBytes(32)) {
		t.Fatalf("ESPConfig = %+v", cfg)
	}
	cfg.EncKey[0] ^= 0xff
	if sp.Key[0] != 1 {
		t.Error("ESPConfig shares the key with the spec")
	}
	cfg.EncKey[0] ^= 0xff
	sa, err := esp.NewSA(cfg)
	if err != nil {
		t.Fatalf("esp.NewSA: %v", err)
	}
	if sa.Window().Size() != 0 || sa.LastSeq() != 6 {
		t.Errorf("window %d, last seq %d; want 0 and 6", sa.Window().Size(), sa.LastSeq())
	}

	sp, _ = Parse(gcm + ",window=100")
	cfg, _ = sp.ESPConfig()
	if cfg.ReplayWindow != 100 || cfg.NextSeq != 1 || cfg.Integ != nil || cfg.IntegKey != nil {
		t.Errorf("ESPConfig = %+v", cfg)
	}

	ahSpec, err := Parse("spi=0x1234,proto=ah,integ=sha256,authkey=" + hexKey(32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ahSpec.ESPConfig(); err == nil || err.Error() != "saspec: spi 0x1234: proto=ah has no ESP configuration" {
		t.Errorf("ESPConfig on AH: %v", err)
	}
}

func TestAHConfig(t *testing.T) {
	sp, err := Parse("spi=0x4321,proto=ah,integ=sha384,authkey=" + hexKey(48) + ",esn,window=0,seq=0x100000007")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := sp.AHConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SPI != 0x4321 || cfg.Integ.Name != "sha384" || !cfg.ESN || cfg.ReplayWindow >= 0 ||
		cfg.NextSeq != 1<<32+7 || !bytes.Equal(cfg.IntegKey, keyBytes(48)) {
		t.Fatalf("AHConfig = %+v", cfg)
	}
	cfg.IntegKey[0] ^= 0xff
	if sp.AuthKey[0] != 1 {
		t.Error("AHConfig shares the key with the spec")
	}
	cfg.IntegKey[0] ^= 0xff
	sa, err := ah.NewSA(cfg)
	if err != nil {
		t.Fatalf("ah.NewSA: %v", err)
	}
	if sa.Window().Size() != 0 || sa.LastSeq() != 1<<32+6 || !sa.ESN() || sa.SPI() != 0x4321 {
		t.Errorf("window %d, last seq %d, esn %v; want 0, 2^32+6, true", sa.Window().Size(), sa.LastSeq(), sa.ESN())
	}

	// The default window, and an explicit one.
	for _, tt := range []struct {
		extra  string
		window int
	}{{"", replay.DefaultSize}, {",window=100", 100}} {
		sp, _ := Parse("spi=0x4321,proto=ah,integ=aes128gmac,authkey=" + hexKey(20) + tt.extra)
		cfg, err := sp.AHConfig()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ReplayWindow != tt.window || cfg.NextSeq != 1 || cfg.ESN {
			t.Errorf("%q: AHConfig = %+v", tt.extra, cfg)
		}
		sa, err := ah.NewSA(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if sa.Window().Size() < tt.window || sa.LastSeq() != 0 { // rounded up to 64s
			t.Errorf("%q: window %d, last seq %d", tt.extra, sa.Window().Size(), sa.LastSeq())
		}
	}

	espSpec, err := Parse(gcm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := espSpec.AHConfig(); err == nil || err.Error() != "saspec: spi 0x1234: proto=esp has no AH configuration" {
		t.Errorf("AHConfig on ESP: %v", err)
	}
}

// TestEveryAHAlgorithmBuilds checks that every spec Parse accepts for each
// AH integrity algorithm also satisfies ah.NewSA.
func TestEveryAHAlgorithmBuilds(t *testing.T) {
	for _, i := range xform.Integs() {
		for _, extra := range []string{"", ",esn", ",window=0", ",esn,seq=0xffffffffffffffff"} {
			spec := "spi=0x1234,proto=ah,integ=" + i.Name + ",authkey=" + hexKey(i.KeyLen) + extra
			sp, err := Parse(spec)
			if err != nil {
				t.Errorf("%s: %v", spec, err)
				continue
			}
			cfg, err := sp.AHConfig()
			if err != nil {
				t.Errorf("%s: %v", spec, err)
				continue
			}
			if _, err := ah.NewSA(cfg); err != nil {
				t.Errorf("%s: ah.NewSA: %v", spec, err)
			}
		}
	}
}

// TestEveryTransformBuilds checks that every spec Parse accepts for each
// ESP transform also satisfies esp.NewSA.
func TestEveryTransformBuilds(t *testing.T) {
	for _, e := range xform.Encs() {
		spec := "spi=0x1234,proto=esp,enc=" + e.Name
		if e.KeyLen() > 0 {
			spec += ",key=" + hexKey(e.KeyLen())
		}
		if e.Kind == xform.KindCBC || e.Kind == xform.KindNull {
			spec += ",integ=sha256,authkey=" + hexKey(32)
		}
		for _, esn := range []string{"", ",esn"} {
			sp, err := Parse(spec + esn)
			if err != nil {
				t.Errorf("%s: %v", e.Name, err)
				continue
			}
			cfg, err := sp.ESPConfig()
			if err != nil {
				t.Errorf("%s: %v", e.Name, err)
				continue
			}
			if _, err := esp.NewSA(cfg); err != nil {
				t.Errorf("%s: esp.NewSA: %v", e.Name, err)
			}
		}
	}
}

func TestZero(t *testing.T) {
	sp, err := Parse("spi=0x1234,proto=esp,enc=aes128,key=" + hexKey(16) + ",integ=sha256,authkey=" + hexKey(32))
	if err != nil {
		t.Fatal(err)
	}
	sp.Zero()
	if !bytes.Equal(sp.Key, make([]byte, 16)) || !bytes.Equal(sp.AuthKey, make([]byte, 32)) {
		t.Error("Zero left key material")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		",",
		"=",
		"esn",
		gcm,
		gcm + ",esn,window=64,seq=5",
		"spi=0x1234,proto=esp,enc=aes128,key=" + hexKey(16) + ",integ=sha256,authkey=" + hexKey(32),
		"spi=0x1234,proto=esp,enc=null,integ=aes128gmac,authkey=" + hexKey(20),
		"spi=0x1234,proto=ah,integ=sha1,authkey=" + hexKey(20),
		"spi=0x1234,proto=ah,integ=aes128gmac,authkey=" + hexKey(20),
		"spi=1,proto=esp,enc=3des,key=0x,esn=on",
		"SPI=0X1234,PROTO=AH,INTEG=MD5,AUTHKEY=0X00112233445566778899AABBCCDDEEFF",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := Parse(s)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if sp.SPI < 256 || (sp.Proto != ESP && sp.Proto != AH) || sp.Seq == 0 {
			t.Fatalf("accepted bad spec %+v", sp)
		}
		_ = sp.String()
		if sp.Proto == ESP {
			cfg, err := sp.ESPConfig()
			if err != nil {
				t.Fatalf("ESPConfig: %v", err)
			}
			if _, err := esp.NewSA(cfg); err != nil {
				t.Fatalf("spec %q accepted but esp.NewSA: %v", s, err)
			}
		} else {
			cfg, err := sp.AHConfig()
			if err != nil {
				t.Fatalf("AHConfig: %v", err)
			}
			if _, err := ah.NewSA(cfg); err != nil {
				t.Fatalf("spec %q accepted but ah.NewSA: %v", s, err)
			}
		}
		// The canonical form without keys parses back to the same
		// algorithms once the keys are appended.
		again := sp.String()
		if len(sp.Key) > 0 {
			again += ",key=0x" + hex.EncodeToString(sp.Key)
		}
		if len(sp.AuthKey) > 0 {
			again += ",authkey=0x" + hex.EncodeToString(sp.AuthKey)
		}
		sp2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", again, err)
		}
		if sp2.String() != sp.String() {
			t.Fatalf("re-parse: %q != %q", sp2.String(), sp.String())
		}
	})
}
