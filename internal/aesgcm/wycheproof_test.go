package aesgcm

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

type wycheproofFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		IVSize  int `json:"ivSize"`
		KeySize int `json:"keySize"`
		TagSize int `json:"tagSize"`
		Tests   []struct {
			TcID   int      `json:"tcId"`
			Key    string   `json:"key"`
			IV     string   `json:"iv"`
			AAD    string   `json:"aad"`
			Msg    string   `json:"msg"`
			CT     string   `json:"ct"`
			Tag    string   `json:"tag"`
			Result string   `json:"result"`
			Flags  []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWycheproof runs Wycheproof's AES-GCM vectors. The 96-bit-IV groups
// must seal to the expected ciphertext and tag (valid) and open only the
// valid ones; other IV lengths must be refused (a panic, as
// crypto/cipher.NewGCM's AEAD does), by the vector and the generic path.
func TestWycheproof(t *testing.T) {
	// The vectors live once in the repository, with their licence, beside
	// internal/xform's tests.
	b, err := os.ReadFile(filepath.Join("..", "xform", "testdata", "wycheproof", "aes_gcm_test.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var run, valid, invalid, refused int
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			run++
			key, iv, aad := unhex(t, tc.Key), unhex(t, tc.IV), unhex(t, tc.AAD)
			msg, ct, tag := unhex(t, tc.Msg), unhex(t, tc.CT), unhex(t, tc.Tag)
			sealed := append(bytes.Clone(ct), tag...)
			for name, a := range implementations(t, key) {
				if g.IVSize != 96 || g.TagSize != 128 {
					mustPanic(t, "Seal with a nonstandard IV", func() { a.Seal(nil, iv, msg, aad) })
					mustPanic(t, "Open with a nonstandard IV", func() { a.Open(nil, iv, sealed, aad) })
					mustPanic(t, "stdlib Seal with a nonstandard IV", func() { stdGCM(t, key).Seal(nil, iv, msg, aad) })
					refused++
					continue
				}
				got, err := a.Open(nil, iv, sealed, aad)
				switch tc.Result {
				case "valid", "acceptable":
					valid++
					if err != nil || !bytes.Equal(got, msg) {
						t.Errorf("%s: tcId %d (%v): Open = %x, %v; want %x", name, tc.TcID, tc.Flags, got, err, msg)
					}
					if s := a.Seal(nil, iv, msg, aad); !bytes.Equal(s, sealed) {
						t.Errorf("%s: tcId %d (%v): Seal = %x, want %x", name, tc.TcID, tc.Flags, s, sealed)
					}
				default:
					invalid++
					if err == nil {
						t.Errorf("%s: tcId %d (%v): Open accepted an invalid message", name, tc.TcID, tc.Flags)
					}
				}
			}
		}
	}
	if run != f.NumberOfTests {
		t.Errorf("ran %d of %d tests", run, f.NumberOfTests)
	}
	if valid == 0 || invalid == 0 || refused == 0 {
		t.Errorf("valid %d, invalid %d, refused %d: a class of vectors is missing", valid, invalid, refused)
	}
	t.Logf("%d vectors: %d valid and %d invalid checks, %d refused (IV not 96 bits)", run, valid, invalid, refused)
}
