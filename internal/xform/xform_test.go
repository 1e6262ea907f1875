package xform

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

type wpFile struct {
	TestGroups []struct {
		KeySize int `json:"keySize"`
		IVSize  int `json:"ivSize"`
		TagSize int `json:"tagSize"`
		Tests   []struct {
			TcID    int    `json:"tcId"`
			Key     string `json:"key"`
			IV      string `json:"iv"`
			AAD     string `json:"aad"`
			Msg     string `json:"msg"`
			CT      string `json:"ct"`
			Tag     string `json:"tag"`
			Result  string `json:"result"`
			Comment string `json:"comment"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func loadWycheproof(t *testing.T, name string) *wpFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "wycheproof", name))
	if err != nil {
		t.Fatal(err)
	}
	var f wpFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWycheproofAEAD runs the Wycheproof AES-GCM and ChaCha20-Poly1305
// vectors with the shapes ESP uses (96-bit nonce, 128-bit tag) through
// NewAEAD, with the nonce's first four bytes given as the key's salt.
func TestWycheproofAEAD(t *testing.T) {
	for _, tc := range []struct{ file, prefix string }{
		{"aes_gcm_test.json", "aes"},
		{"chacha20_poly1305_test.json", "chacha20poly1305"},
	} {
		f := loadWycheproof(t, tc.file)
		ran := 0
		for _, g := range f.TestGroups {
			if g.IVSize != 96 || g.TagSize != 128 {
				continue
			}
			name := "chacha20poly1305"
			if tc.prefix == "aes" {
				name = map[int]string{128: "aes128gcm16", 192: "aes192gcm16", 256: "aes256gcm16"}[g.KeySize]
			}
			enc, err := LookupEnc(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range g.Tests {
				key, iv := unhex(t, v.Key), unhex(t, v.IV)
				a, salt, err := NewAEAD(enc, append(key, iv[:4]...))
				if err != nil {
					t.Fatalf("%s tc %d: %v", tc.file, v.TcID, err)
				}
				nonce := append(salt[:], iv[4:]...)
				aad, msg := unhex(t, v.AAD), unhex(t, v.Msg)
				want := append(unhex(t, v.CT), unhex(t, v.Tag)...)
				got, err := a.Open(nil, nonce, want, aad)
				switch v.Result {
				case "valid", "acceptable":
					if err != nil || !bytes.Equal(got, msg) {
						t.Errorf("%s tc %d (%s): open: %v", tc.file, v.TcID, v.Comment, err)
					}
					if sealed := a.Seal(nil, nonce, msg, aad); !bytes.Equal(sealed, want) {
						t.Errorf("%s tc %d: seal mismatch", tc.file, v.TcID)
					}
				case "invalid":
					if err == nil {
						t.Errorf("%s tc %d (%s): invalid vector opened", tc.file, v.TcID, v.Comment)
					}
				}
				ran++
			}
		}
		if ran < 50 {
			t.Errorf("%s: only %d vectors ran", tc.file, ran)
		}
	}
}

// TestWycheproofHMAC checks the truncated HMACs of RFC 4868 (and HMAC-SHA1-96)
// against the Wycheproof HMAC vectors with matching key and tag sizes.
func TestWycheproofHMAC(t *testing.T) {
	for _, tc := range []struct {
		file, integ  string
		truncateOnly bool // vectors carry the full tag: check valid ones' prefix
	}{
		{"hmac_sha256_test.json", "sha256", false},
		{"hmac_sha384_test.json", "sha384", false},
		{"hmac_sha512_test.json", "sha512", false},
		{"hmac_sha1_test.json", "sha1", true},
	} {
		alg, err := LookupInteg(tc.integ)
		if err != nil {
			t.Fatal(err)
		}
		f := loadWycheproof(t, tc.file)
		ran := 0
		scratch := make([]byte, 64)
		icv := make([]byte, alg.ICVLen)
		for _, g := range f.TestGroups {
			if g.KeySize != alg.KeyLen*8 {
				continue
			}
			if tc.truncateOnly {
				if g.TagSize < alg.ICVLen*8 {
					continue
				}
			} else if g.TagSize != alg.ICVLen*8 {
				continue
			}
			for _, v := range g.Tests {
				if tc.truncateOnly && v.Result != "valid" {
					continue
				}
				m, err := NewMAC(alg, unhex(t, v.Key))
				if err != nil {
					t.Fatal(err)
				}
				tag := unhex(t, v.Tag)[:alg.ICVLen]
				s := m.Begin()
				s.Write(unhex(t, v.Msg))
				m.Finish(s, icv, scratch)
				s = m.Begin()
				s.Write(unhex(t, v.Msg))
				ok := m.Verify(s, tag, scratch)
				if want := v.Result == "valid"; ok != want || (want && !bytes.Equal(icv, tag)) {
					t.Errorf("%s tc %d (%s): verify %v, want %v", tc.file, v.TcID, v.Comment, ok, want)
				}
				ran++
			}
		}
		if ran < 10 {
			t.Errorf("%s: only %d vectors ran", tc.file, ran)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, n := range []string{"aes128gcm16", "AES256GCM16", "aes192gcm128", "chacha20poly1305", "aes128", "aes256cbc", "3des", "null", "aes128gmac"} {
		if _, err := LookupEnc(n); err != nil {
			t.Errorf("LookupEnc(%q): %v", n, err)
		}
	}
	for _, n := range []string{"sha256", "sha384", "sha512", "sha1", "md5", "aes256gmac", "sha2_256"} {
		if _, err := LookupInteg(n); err != nil {
			t.Errorf("LookupInteg(%q): %v", n, err)
		}
	}
	if _, err := LookupEnc("aes128ctr"); err == nil {
		t.Error("unknown algorithm accepted")
	}
	for _, n := range []string{"3des"} {
		if e, _ := LookupEnc(n); !e.Insecure {
			t.Errorf("%s not marked insecure", n)
		}
	}
	for _, n := range []string{"sha1", "md5"} {
		if i, _ := LookupInteg(n); !i.Insecure {
			t.Errorf("%s not marked insecure", n)
		}
	}
}

func TestKeyLength(t *testing.T) {
	enc, _ := LookupEnc("aes128gcm16")
	if _, _, err := NewAEAD(enc, make([]byte, 16)); err == nil {
		t.Error("AEAD key without salt accepted")
	}
	integ, _ := LookupInteg("sha256")
	if _, err := NewMAC(integ, make([]byte, 16)); err == nil {
		t.Error("short HMAC key accepted")
	}
}

func BenchmarkMAC(b *testing.B) {
	alg, _ := LookupInteg("sha256")
	m, _ := NewMAC(alg, make([]byte, 32))
	buf := make([]byte, 1400)
	scratch := make([]byte, 64)
	icv := make([]byte, 16)
	b.SetBytes(1400)
	b.ReportAllocs()
	for b.Loop() {
		s := m.Begin()
		s.Write(buf)
		m.Finish(s, icv, scratch)
	}
}

// TestMACNoAlloc checks that steady-state HMAC computations do not allocate,
// even across a garbage collection (which empties a sync.Pool).
func TestMACNoAlloc(t *testing.T) {
	alg, _ := LookupInteg("sha256")
	m, _ := NewMAC(alg, make([]byte, 32))
	buf, icv, scratch := make([]byte, 100), make([]byte, 16), make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		s := m.Begin()
		s.Write(buf)
		m.Finish(s, icv, scratch)
		runtime.GC()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per HMAC", allocs)
	}
}
