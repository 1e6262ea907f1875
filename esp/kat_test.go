package esp

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/goipsec/goipsec/internal/xform"
)

// Known-answer tests from draft-mcgrew-gcm-test-01, RFC 7634 Appendix A,
// RFC 3602 section 4 and RFC 4868 section 2.7, transcribed in testdata/kat
// (see its README for sources).

type hexb []byte

func (h *hexb) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

type espVector struct {
	ID         string `json:"id"`
	Algorithm  string `json:"algorithm"`
	Keymat     hexb   `json:"keymat"`
	Key        hexb   `json:"key"`
	SPI        hexb   `json:"spi"`
	Seq        hexb   `json:"seq"`
	ESN        bool   `json:"esn"`
	IV         hexb   `json:"iv"`
	Plaintext  hexb   `json:"plaintext"`
	ESPPacket  hexb   `json:"esp_packet"`
	Ciphertext hexb   `json:"ciphertext"`
	Mode       string `json:"mode"`
}

func loadKAT(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "kat", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func be(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// checkVector opens the vector's ESP packet and, where the vector's padding
// is the minimal padding Seal writes, seals the plaintext with the vector's
// IV and compares the packets byte for byte.
func checkVector(t *testing.T, v espVector, enc *xform.Enc, integ *xform.Integ, integKey []byte) (sealed bool) {
	t.Helper()
	seq := be(v.Seq)
	cfg := Config{SPI: uint32(be(v.SPI)), Enc: enc, EncKey: v.Keymat, Integ: integ, IntegKey: integKey, ESN: v.ESN, NextSeq: seq}
	spi := cfg.SPI
	cfg.SPI = 0x100 // NewSA refuses reserved SPIs; one vector uses SPI 0
	in, err := NewSA(&cfg)
	if err != nil {
		t.Fatalf("%s: %v", v.ID, err)
	}
	in.spi = spi
	if seq > 1 {
		// Make the receiver's window infer the vector's high bits.
		if err := in.window.Accept(seq - 1); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64+len(v.ESPPacket)+ScratchLen)
	copy(buf[64:], v.ESPPacket)
	end := 64 + len(v.ESPPacket)
	ps, pe, nh, gotSeq, err := in.Open(buf, 64, end)
	icvLen := in.icvLen
	decrypted := buf[64+in.hdrLen : end-icvLen]
	pt := v.Plaintext
	if !bytes.Equal(decrypted, pt) {
		t.Fatalf("%s: decrypted\n%x\nwant\n%x\n(err %v)", v.ID, decrypted, pt, err)
	}
	padLen := int(pt[len(pt)-2])
	validTrailer := padLen+2 <= len(pt) && monotonicPad(pt[:len(pt)-2], padLen)
	switch {
	case validTrailer && pt[len(pt)-1] == NextHeaderNone:
		if !errors.Is(err, ErrDummy) {
			t.Fatalf("%s: dummy packet: %v", v.ID, err)
		}
	case validTrailer:
		if err != nil || gotSeq != seq || nh != pt[len(pt)-1] || pe-ps != len(pt)-2-padLen {
			t.Fatalf("%s: open: seq %d nh %d len %d err %v", v.ID, gotSeq, nh, pe-ps, err)
		}
	default:
		// The vector's last bytes are not an RFC 4303 trailer (see the
		// vector's notes): the ICV and decryption are what it checks.
		if !errors.Is(err, ErrBadPadding) && !errors.Is(err, ErrBadLength) {
			t.Fatalf("%s: want a padding error for a vector without a trailer, got %v", v.ID, err)
		}
	}
	if !validTrailer || padLen != in.padLen(len(pt)-2-padLen) {
		return false
	}
	out, err := NewSA(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	out.spi = spi
	payload := pt[:len(pt)-2-padLen]
	sbuf := make([]byte, 64+len(payload), 64+len(v.ESPPacket)+ScratchLen+64)
	copy(sbuf[64:], payload)
	out.fixedIV = v.IV
	start, send, err := out.seal(sbuf, 64, 64+len(payload), pt[len(pt)-1], seq)
	if err != nil {
		t.Fatal(err)
	}
	if got := sbuf[start:send]; !bytes.Equal(got, v.ESPPacket) {
		t.Fatalf("%s: sealed\n%x\nwant\n%x", v.ID, got, v.ESPPacket)
	}
	return true
}

func TestKATGCM(t *testing.T) {
	var f struct{ Vectors []espVector }
	loadKAT(t, "gcm_test_01.json", &f)
	opened, sealed := 0, 0
	for _, v := range f.Vectors {
		name := map[int]string{16: "aes128gcm16", 24: "aes192gcm16", 32: "aes256gcm16"}[len(v.Key)]
		if v.Algorithm == "AES-GMAC-ESP" {
			name = map[int]string{16: "aes128gmac", 24: "aes192gmac", 32: "aes256gmac"}[len(v.Key)]
		}
		enc, err := xform.LookupEnc(name)
		if err != nil {
			t.Fatalf("%s: %v", v.ID, err)
		}
		if enc.Kind == xform.KindGMAC {
			// Nothing is encrypted: the "plaintext" is the packet's payload.
			v.Plaintext = v.ESPPacket[HeaderLen+enc.IVLen : len(v.ESPPacket)-enc.ICVLen]
		}
		if checkVector(t, v, enc, nil, nil) {
			sealed++
		}
		opened++
	}
	if opened != 17 || sealed < 5 {
		t.Fatalf("opened %d vectors (want 17), sealed %d", opened, sealed)
	}
	t.Logf("opened %d, sealed and matched %d", opened, sealed)
}

func TestKATChaCha20Poly1305(t *testing.T) {
	var f struct {
		Vectors []struct {
			espVector
			ESPPacketFull hexb `json:"esp_packet"`
		}
	}
	loadKAT(t, "rfc7634.json", &f)
	enc, _ := xform.LookupEnc("chacha20poly1305")
	v := f.Vectors[0].espVector
	if v.ID != "rfc7634-A" {
		t.Fatalf("first vector is %s", v.ID)
	}
	v.ESPPacket = f.Vectors[0].ESPPacketFull[20:] // strip the outer IPv4 header
	if !checkVector(t, v, enc, nil, nil) {
		t.Fatal("RFC 7634 example was not sealed")
	}
}

// TestKATCBC checks the CBC code with RFC 3602's raw cases, and its ESP
// packets (encryption-only, which goipsec refuses to configure) by
// decrypting them with the SA's CBC routine directly.
func TestKATCBC(t *testing.T) {
	var f struct {
		CBC []struct {
			ID                             string
			Key, IV, Plaintext, Ciphertext hexb
		} `json:"cbc_vectors"`
		ESP []struct {
			ID         string `json:"id"`
			Key        hexb   `json:"key"`
			IV         hexb   `json:"iv"`
			Plaintext  hexb   `json:"plaintext"`
			Ciphertext hexb   `json:"ciphertext"`
		} `json:"esp_vectors"`
	}
	loadKAT(t, "rfc3602.json", &f)
	enc, _ := xform.LookupEnc("aes128")
	n := 0
	check := func(id string, key, iv, pt, ct []byte) {
		b, err := xform.NewBlock(enc, key)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		buf := append([]byte(nil), pt...)
		cbcEncrypt(b, iv, buf)
		if !bytes.Equal(buf, ct) {
			t.Fatalf("%s: encrypt\n%x\nwant\n%x", id, buf, ct)
		}
		cbcDecrypt(b, iv, buf)
		if !bytes.Equal(buf, pt) {
			t.Fatalf("%s: decrypt mismatch", id)
		}
		n++
	}
	for _, v := range f.CBC {
		check(v.ID, v.Key, v.IV, v.Plaintext, v.Ciphertext)
	}
	for _, v := range f.ESP {
		check(v.ID, v.Key, v.IV, v.Plaintext, v.Ciphertext)
	}
	if n != 8 {
		t.Fatalf("ran %d vectors, want 8", n)
	}
}

// TestKATHMAC checks the RFC 4868 authenticator vectors (truncated ICVs).
func TestKATHMAC(t *testing.T) {
	var f struct {
		Auth []struct {
			ID      string `json:"id"`
			Hash    string `json:"hash"`
			Key     hexb   `json:"key"`
			Data    hexb   `json:"data"`
			ICV     hexb   `json:"icv"`
			Erratum *struct {
				Status       string `json:"status"`
				CorrectedKey hexb   `json:"corrected_key"`
			} `json:"erratum"`
		} `json:"auth_vectors"`
	}
	loadKAT(t, "rfc4868.json", &f)
	scratch := make([]byte, 64)
	for _, v := range f.Auth {
		alg, err := xform.LookupInteg(v.Hash)
		if err != nil {
			t.Fatal(err)
		}
		key := v.Key
		if v.Erratum != nil && v.Erratum.Status == "Verified" {
			key = v.Erratum.CorrectedKey
		}
		if len(key) != alg.KeyLen {
			// RFC 4868 also tests keys of other lengths; IPsec keys are
			// exactly the hash length, and the HMAC itself is checked by
			// the Wycheproof vectors in internal/xform.
			continue
		}
		m, err := xform.NewMAC(alg, key)
		if err != nil {
			t.Fatalf("%s: %v", v.ID, err)
		}
		icv := make([]byte, alg.ICVLen)
		s := m.Begin()
		s.Write(v.Data)
		m.Finish(s, icv, scratch)
		if !bytes.Equal(icv, v.ICV) {
			t.Errorf("%s: icv %x, want %x", v.ID, icv, v.ICV)
		}
	}
}
