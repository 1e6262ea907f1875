package ikecrypto

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/goipsec/goipsec/ike/message"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "kat", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func mustPRF(t testing.TB, id PRFID) *PRF {
	t.Helper()
	p, err := LookupPRF(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPRFRFC4868 checks the HMAC-SHA2 PRFs against RFC 4868 section 2.7.1.
func TestPRFRFC4868(t *testing.T) {
	var f struct {
		PRF []map[string]string `json:"prf_vectors"`
	}
	loadJSON(t, "rfc4868.json", &f)
	if len(f.PRF) != 6 {
		t.Fatalf("%d PRF vectors, want 6", len(f.PRF))
	}
	for _, v := range f.PRF {
		for field, id := range map[string]PRFID{"prf_hmac_sha_256": PRFHMACSHA256, "prf_hmac_sha_384": PRFHMACSHA384, "prf_hmac_sha_512": PRFHMACSHA512} {
			p := mustPRF(t, id)
			if got := p.Sum(unhex(t, v["key"]), unhex(t, v["data"])); !bytes.Equal(got, unhex(t, v[field])) {
				t.Errorf("%s %s: got %x", v["id"], p.Name, got)
			}
			// The data may arrive in pieces.
			d := unhex(t, v["data"])
			if got := p.Sum(unhex(t, v["key"]), d[:len(d)/2], nil, d[len(d)/2:]); !bytes.Equal(got, unhex(t, v[field])) {
				t.Errorf("%s %s split: got %x", v["id"], p.Name, got)
			}
		}
	}
}

// TestXCBC checks AES-XCBC-MAC (RFC 3566) and AES-XCBC-PRF-128 (RFC 4434).
func TestXCBC(t *testing.T) {
	var f struct {
		Vectors []struct {
			ID, Key, Msg, MAC string
			Zero              int `json:"msg_zero_octets"`
		}
	}
	loadJSON(t, "xcbc.json", &f)
	p := mustPRF(t, PRFAES128XCBC)
	for _, v := range f.Vectors {
		msg := unhex(t, v.Msg)
		if v.Zero > 0 {
			msg = make([]byte, v.Zero)
		}
		if got := p.Sum(unhex(t, v.Key), msg); !bytes.Equal(got, unhex(t, v.MAC)) {
			t.Errorf("%s: got %x want %s", v.ID, got, v.MAC)
		}
	}
}

type kdfVector struct {
	ID                   string
	PRF                  PRFID
	Ni, Nr, Gir, GirNew  string
	SPIi, SPIr           string
	SKEYSEED, DKM        string
	DKMChild, DKMChildDH string
	SKEYSEEDRekey        string
}

func (v *kdfVector) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	s := func(k string) string { x, _ := m[k].(string); return x }
	*v = kdfVector{ID: s("id"), PRF: PRFID(m["prf"].(float64)), Ni: s("ni"), Nr: s("nr"), Gir: s("gir"),
		GirNew: s("gir_new"), SPIi: s("spii"), SPIr: s("spir"), SKEYSEED: s("skeyseed"), DKM: s("dkm"),
		DKMChild: s("dkm_child"), DKMChildDH: s("dkm_child_dh"), SKEYSEEDRekey: s("skeyseed_rekey")}
	return nil
}

// TestKDF checks SKEYSEED, prf+, Child SA KEYMAT with and without PFS and the
// rekeyed SKEYSEED against NIST CAVP vectors (and NSS's AES-XCBC ones).
func TestKDF(t *testing.T) {
	var f struct{ Vectors []kdfVector }
	loadJSON(t, "ikev2_kdf.json", &f)
	checked := map[string]int{}
	for _, v := range f.Vectors {
		p := mustPRF(t, v.PRF)
		ni, nr := unhex(t, v.Ni), unhex(t, v.Nr)
		skeyseed := SKEYSEED(p, ni, nr, unhex(t, v.Gir))
		if !bytes.Equal(skeyseed, unhex(t, v.SKEYSEED)) {
			t.Errorf("%s: SKEYSEED %x", v.ID, skeyseed)
		}
		checked["SKEYSEED"]++
		if v.DKM == "" {
			continue
		}
		want := unhex(t, v.DKM)
		seed := append(append(append(append([]byte(nil), ni...), nr...), unhex(t, v.SPIi)...), unhex(t, v.SPIr)...)
		dkm, err := p.Plus(skeyseed, seed, len(want))
		if err != nil || !bytes.Equal(dkm, want) {
			t.Errorf("%s: DKM %x, %v", v.ID, dkm, err)
		}
		checked["DKM"]++
		// A shorter prf+ output is a prefix of the longer one.
		if short, _ := p.Plus(skeyseed, seed, 15); !bytes.Equal(short, want[:15]) {
			t.Errorf("%s: 15-octet prf+ %x", v.ID, short)
		}
		skd := dkm[:p.KeyLen]
		if v.DKMChild != "" {
			want := unhex(t, v.DKMChild)
			got, _ := p.Plus(skd, append(append([]byte(nil), ni...), nr...), len(want))
			if !bytes.Equal(got, want) {
				t.Errorf("%s: DKM(Child SA) %x", v.ID, got)
			}
			checked["child"]++
		}
		if v.DKMChildDH != "" {
			want := unhex(t, v.DKMChildDH)
			seed := append(append(unhex(t, v.GirNew), ni...), nr...)
			got, _ := p.Plus(skd, seed, len(want))
			if !bytes.Equal(got, want) {
				t.Errorf("%s: DKM(Child SA D-H) %x", v.ID, got)
			}
			checked["childDH"]++
		}
		if v.SKEYSEEDRekey != "" {
			got := RekeySKEYSEED(p, skd, ni, nr, unhex(t, v.GirNew))
			if !bytes.Equal(got, unhex(t, v.SKEYSEEDRekey)) {
				t.Errorf("%s: SKEYSEED(Rekey) %x", v.ID, got)
			}
			checked["rekey"]++
		}
		// DeriveIKEKeys must split exactly this keying material.
		spii, spir := binary.BigEndian.Uint64(unhex(t, v.SPIi)), binary.BigEndian.Uint64(unhex(t, v.SPIr))
		for _, s := range testSuites(t, p) {
			k, err := DeriveIKEKeys(s, skeyseed, ni, nr, spii, spir)
			if err != nil {
				t.Fatal(err)
			}
			var cat []byte
			for _, part := range [][]byte{k.D, k.Ai, k.Ar, k.Ei, k.Er, k.Pi, k.Pr} {
				cat = append(cat, part...)
			}
			if len(cat) > len(want) {
				continue
			}
			if !bytes.Equal(cat, want[:len(cat)]) || len(k.D) != p.KeyLen || len(k.Pr) != p.KeyLen || len(k.Ei) != s.Encr.KeyLen() {
				t.Errorf("%s %s: IKE keys do not split prf+ output", v.ID, s.Encr.Name)
			}
		}
	}
	if checked["DKM"] < 4 || checked["child"] < 1 || checked["childDH"] < 1 || checked["rekey"] < 3 {
		t.Errorf("too few vectors ran: %v", checked)
	}
}

func testSuites(t testing.TB, p *PRF) []*Suite {
	gcm, _ := LookupEncr(20, 128)
	cbc, _ := LookupEncr(12, 256)
	sha, _ := LookupInteg(12)
	return []*Suite{{Encr: gcm, PRF: p}, {Encr: cbc, Integ: sha, PRF: p}}
}

// TestRFC7634IKEv2 seals and opens the IKEv2 example of RFC 7634 Appendix
// B: an INFORMATIONAL request with one Notify inside ChaCha20-Poly1305.
func TestRFC7634IKEv2(t *testing.T) {
	var f struct {
		Vectors []map[string]any
	}
	loadJSON(t, "rfc7634.json", &f)
	var v map[string]any
	for _, x := range f.Vectors {
		if x["id"] == "rfc7634-B" {
			v = x
		}
	}
	if v == nil {
		t.Fatal("rfc7634-B missing")
	}
	h := func(k string) []byte { return unhex(t, v[k].(string)) }
	encr, err := LookupEncr(28, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCipher(encr, h("keymat"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wire := h("ike_message")

	m, err := Decrypt(wire, c)
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if m.SPIi != 0xc0c1c2c3c4c5c6c7 || m.SPIr != 0xd0d1d2d3d4d5d6d7 || m.Exchange != message.Informational || m.MessageID != 9 {
		t.Errorf("header %+v", m)
	}
	if len(m.Payloads) != 1 {
		t.Fatalf("payloads %v", m.Payloads)
	}
	n, ok := m.Payloads[0].(*message.Notify)
	if !ok || n.NotifyType != message.SetWindowSize || !bytes.Equal(n.Data, []byte{0, 0, 0, 10}) {
		t.Errorf("notify %+v", m.Payloads[0])
	}

	// Sealing the same payload with the example's IV reproduces the message.
	first, plain, err := message.MarshalPayloads(m.Payloads)
	if err != nil {
		t.Fatal(err)
	}
	outer := *m
	outer.Payloads = []message.Payload{&message.Encrypted{NextPayload: first, Body: make([]byte, c.SealedLen(len(plain)))}}
	out, err := outer.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	body := out[len(out)-c.SealedLen(len(plain)):]
	if !bytes.Equal(out[:len(out)-len(body)], h("aad")) {
		t.Errorf("AAD %x", out[:len(out)-len(body)])
	}
	if err := c.sealIV(body, out[:len(out)-len(body)], plain, h("iv")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, wire) {
		t.Errorf("sealed\n%x\nwant\n%x", out, wire)
	}
	// Any change is detected.
	for i := message.HeaderLen; i < len(wire); i++ {
		bad := bytes.Clone(wire)
		bad[i] ^= 0x40
		if _, err := Decrypt(bad, c); err == nil {
			t.Errorf("flipped octet %d accepted", i)
		}
	}
}
