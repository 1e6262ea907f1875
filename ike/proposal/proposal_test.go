package proposal

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
)

const (
	ike = message.ProtoIKE
	esp = message.ProtoESP
	ah  = message.ProtoAH
)

// tr builds a transform: tr(type, id) or tr(type, id, keylen).
func tr(t message.TransformType, id uint16, kl ...uint16) message.Transform {
	x := message.Transform{Type: t, ID: id}
	if len(kl) > 0 {
		x.KeyLength = kl[0]
	}
	return x
}

const (
	E  = message.TransformEncr
	P  = message.TransformPRF
	I  = message.TransformInteg
	K  = message.TransformKE
	N  = message.TransformESN
	A1 = message.TransformAddKE1
	A2 = message.TransformAddKE1 + 1
)

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		proto message.ProtocolID
		in    string
		want  []message.Transform
		out   string // canonical form; "" means the input
	}{
		{ike, "aes128gcm16-prfsha256-x25519", []message.Transform{tr(E, 20, 128), tr(P, 5), tr(K, 31)}, ""},
		{ike, "aes256-sha384-ecp384", []message.Transform{tr(E, 12, 256), tr(I, 13), tr(P, 6), tr(K, 20)}, "aes256-sha384-prfsha384-ecp384"},
		{ike, "chacha20poly1305-prfsha256-modp2048", []message.Transform{tr(E, 28), tr(P, 5), tr(K, 14)}, ""},
		{ike, "aes256gcm16-prfsha384-x25519-ke1_mlkem768", []message.Transform{tr(E, 20, 256), tr(P, 6), tr(K, 31), tr(A1, 36)}, ""},
		{ike, "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024-ke1_none", []message.Transform{tr(E, 20, 256), tr(P, 6), tr(K, 31), tr(A1, 36), tr(A1, 0), tr(A2, 37)}, "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none-ke2_mlkem1024"},
		{ike, "AES128GCM16-PRFSHA256-CURVE25519", []message.Transform{tr(E, 20, 128), tr(P, 5), tr(K, 31)}, "aes128gcm16-prfsha256-x25519"},
		{ike, "aes128gcm16-aes256gcm16-prfsha256-prfsha512-x25519-ecp256-modp3072", []message.Transform{tr(E, 20, 128), tr(E, 20, 256), tr(P, 5), tr(P, 7), tr(K, 31), tr(K, 19), tr(K, 15)}, ""},
		{ike, "aes128gcm16-sha256-prfsha256-x25519", []message.Transform{tr(E, 20, 128), tr(P, 5), tr(K, 31)}, "aes128gcm16-prfsha256-x25519"},
		{ike, "aes128gcm16-prfsha256-x25519-none", []message.Transform{tr(E, 20, 128), tr(P, 5), tr(K, 31)}, "aes128gcm16-prfsha256-x25519"},
		{ike, "aes-sha1-modp2048", []message.Transform{tr(E, 12, 128), tr(I, 2), tr(P, 2), tr(K, 14)}, "aes128-sha1-prfsha1-modp2048"},
		{ike, "aes128-aes256-sha256-sha512-x25519", []message.Transform{tr(E, 12, 128), tr(E, 12, 256), tr(I, 12), tr(I, 14), tr(P, 5), tr(P, 7), tr(K, 31)}, "aes128-aes256-sha256-sha512-prfsha256-prfsha512-x25519"},
		{ike, "aes192gcm12-aes256gcm8-aes128gcm-prfaesxcbc-ecp521", []message.Transform{tr(E, 19, 192), tr(E, 18, 256), tr(E, 20, 128), tr(P, 4), tr(K, 21)}, "aes192gcm12-aes256gcm8-aes128gcm16-prfaesxcbc-ecp521"},
		{ike, "3des-sha1-prfsha1-modp4096", []message.Transform{tr(E, 3), tr(I, 2), tr(P, 2), tr(K, 16)}, ""},
		{ike, "aes128gcm16-aes128gcm16-prfsha256-x25519", []message.Transform{tr(E, 20, 128), tr(P, 5), tr(K, 31)}, "aes128gcm16-prfsha256-x25519"},
		{esp, "aes128gcm16", []message.Transform{tr(E, 20, 128), tr(N, 0)}, "aes128gcm16-noesn"},
		{esp, "aes128gcm16-x25519", []message.Transform{tr(E, 20, 128), tr(K, 31), tr(N, 0)}, "aes128gcm16-x25519-noesn"},
		{esp, "aes128gcm16-x25519-none", []message.Transform{tr(E, 20, 128), tr(K, 31), tr(K, 0), tr(N, 0)}, "aes128gcm16-x25519-none-noesn"},
		{esp, "aes256-sha256-esn", []message.Transform{tr(E, 12, 256), tr(I, 12), tr(N, 1)}, ""},
		{esp, "aes256-sha256-noesn", []message.Transform{tr(E, 12, 256), tr(I, 12), tr(N, 0)}, ""},
		{esp, "aes256-sha256-esn-noesn", []message.Transform{tr(E, 12, 256), tr(I, 12), tr(N, 1), tr(N, 0)}, ""},
		{esp, "aes128gcm16-sha256-prfsha256", []message.Transform{tr(E, 20, 128), tr(N, 0)}, "aes128gcm16-noesn"},
		{esp, "chacha20poly1305-ecp256-ke1_mlkem768", []message.Transform{tr(E, 28), tr(K, 19), tr(N, 0), tr(A1, 36)}, "chacha20poly1305-ecp256-noesn-ke1_mlkem768"},
		{esp, "aes128gmac", []message.Transform{tr(E, 21, 128), tr(N, 0)}, "aes128gmac-noesn"},
		{esp, "aes-sha", []message.Transform{tr(E, 12, 128), tr(I, 2), tr(N, 0)}, "aes128-sha1-noesn"},
		{esp, "3des-md5", []message.Transform{tr(E, 3), tr(I, 1), tr(N, 0)}, "3des-md5-noesn"},
		{esp, "null-sha512", []message.Transform{tr(E, 11), tr(I, 14), tr(N, 0)}, "null-sha512-noesn"},
		{ah, "sha256", []message.Transform{tr(I, 12), tr(N, 0)}, "sha256-noesn"},
		{ah, "aes256gmac-sha384-esn", []message.Transform{tr(I, 11), tr(I, 13), tr(N, 1)}, ""},
	} {
		p, err := Parse(tc.proto, tc.in)
		if err != nil {
			t.Errorf("%v %q: %v", tc.proto, tc.in, err)
			continue
		}
		if !reflect.DeepEqual(p.Transforms, tc.want) {
			t.Errorf("%v %q:\n got %v\nwant %v", tc.proto, tc.in, p.Transforms, tc.want)
		}
		want := tc.out
		if want == "" {
			want = tc.in
		}
		if got := Format(&p); got != want {
			t.Errorf("%v %q: format %q, want %q", tc.proto, tc.in, got, want)
		}
		again, err := Parse(tc.proto, Format(&p))
		if err != nil || !reflect.DeepEqual(again.Transforms, p.Transforms) {
			t.Errorf("%v %q: does not round-trip: %v", tc.proto, tc.in, err)
		}
		// Every proposal survives the wire.
		p.Number = 1
		if p.Protocol != ike {
			p.SPI = []byte{1, 2, 3, 4}
		}
		m := &message.Message{Payloads: []message.Payload{&message.SA{Proposals: []message.Proposal{p}}}}
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := message.ParseMessage(b)
		if err != nil || !reflect.DeepEqual(back.Payloads[0].(*message.SA).Proposals[0], p) {
			t.Errorf("%q: wire round trip: %v", tc.in, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		proto message.ProtocolID
		in    string
		want  string
	}{
		{ike, "", "empty"},
		{ike, "  ", "empty"},
		{ike, "aes128--sha256", "empty algorithm"},
		{ike, "aes128gcm16-prfsha256-x25519-", "empty algorithm"},
		{ike, "aes128gcm16-foo-x25519", `"foo" not recognized`},
		{ike, "aes128gcm16-x25519", "PRF"},
		{ike, "aes128-prfsha256-x25519", "integrity"},
		{ike, "aes128gcm16-aes128-sha256-prfsha256-x25519", "combined-mode"},
		{ike, "aes128gcm16-prfsha256", "key exchange method is mandatory"},
		{ike, "aes128gcm16-prfsha256-none", "key exchange method is mandatory"},
		{ike, "aes128gcm16-prfsha256-x25519-esn", "ESN"},
		{ike, "aes128gmac-prfsha256-x25519", "not recognized"},
		{ike, "prfsha256-x25519", "encryption algorithm is mandatory"},
		{ike, "aes128gcm16-prfsha256-x25519-ke8_mlkem768", "not recognized"},
		{ike, "aes128gcm16-prfsha256-x25519-ke1_foo", "unknown key exchange"},
		{ike, "aes128gcm16-prfsha256-modp1024", "not recognized"},
		{esp, "aes128", "integrity"},
		{esp, "sha256", "encryption algorithm is mandatory"},
		{esp, "aes128gcm8", "not recognized"},
		{ah, "aes128-sha256", "AH"},
		{ah, "esn", "integrity algorithm is mandatory"},
		{message.ProtoNone, "aes128", "protocol"},
	} {
		_, err := Parse(tc.proto, tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %q: %v, want %q", tc.proto, tc.in, err, tc.want)
		}
	}
	if _, err := ParseList(ike, nil); err == nil {
		t.Error("empty list accepted")
	}
	if _, err := ParseList(ike, []string{"aes128gcm16-prfsha256-x25519", "bad"}); err == nil {
		t.Error("bad list accepted")
	}
}

func TestParseList(t *testing.T) {
	ps, err := ParseList(ike, []string{"aes256-sha384-ecp384", "default", "chacha20poly1305-prfsha256-x25519"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2+len(defaultIKE) {
		t.Fatalf("%d proposals", len(ps))
	}
	for i, p := range ps {
		if p.Number != uint8(i+1) || p.Protocol != ike {
			t.Errorf("proposal %d numbered %d", i, p.Number)
		}
	}
	if Format(&ps[0]) != "aes256-sha384-prfsha384-ecp384" || Format(&ps[len(ps)-1]) != "chacha20poly1305-prfsha256-x25519" {
		t.Errorf("order: %s", FormatList(ps))
	}
	defer func() {
		if recover() == nil {
			t.Error("MustParseList did not panic")
		}
	}()
	MustParseList(ike, "bogus")
}

// TestDefaults checks the default proposals: they parse, resolve, include
// the RFC 8247 mandatory algorithms and nothing legacy.
func TestDefaults(t *testing.T) {
	for _, proto := range []message.ProtocolID{ike, esp, ah} {
		ps := Default(proto)
		if len(ps) == 0 {
			t.Fatalf("%v: no defaults", proto)
		}
		for _, p := range ps {
			for _, x := range p.Transforms {
				k := keyword(proto, x)
				for _, legacy := range []string{"3des", "sha1", "md5", "null", "modp1024", "prfsha1"} {
					if k == legacy {
						t.Errorf("%v default contains %s", proto, k)
					}
				}
			}
			// Each default proposal can be negotiated against itself.
			sel, err := Select([]message.Proposal{p}, []message.Proposal{p}, Options{})
			if err != nil {
				t.Fatalf("%v %s: %v", proto, Format(&p), err)
			}
			if proto == ike {
				if _, err := ResolveIKE(sel); err != nil {
					t.Error(err)
				}
			} else if _, err := ResolveChild(sel); err != nil {
				t.Error(err)
			}
		}
		t.Logf("%v defaults: %s", proto, FormatList(ps))
	}
	ikeDefaults := FormatList(Default(ike))
	for _, must := range []string{"aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes128-", "sha256", "prfsha256", "prfsha384", "x25519", "ecp256", "modp3072", "modp2048"} {
		if !strings.Contains(ikeDefaults, must) {
			t.Errorf("IKE defaults lack %s", must)
		}
	}
	if !HasKEMethod(Default(ike), uint16(kex.Curve25519)) || HasKEMethod(Default(esp), uint16(kex.Curve25519)) {
		t.Error("HasKEMethod")
	}
	if KEMethod(&Default(ike)[0]) != uint16(kex.Curve25519) || KEMethod(&Default(esp)[0]) != 0 {
		t.Error("KEMethod")
	}
}

func mustList(t *testing.T, proto message.ProtocolID, s ...string) []message.Proposal {
	t.Helper()
	ps, err := ParseList(proto, s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// TestSelect follows strongSwan's responder: our proposals in order, the
// peer's in order, our preference within each transform type.
func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		name       string
		proto      message.ProtocolID
		ours, peer []string
		opt        Options
		want       string // Format of the selection; "" for no proposal chosen
		number     uint8
	}{
		{"ours first", ike, []string{"aes128gcm16-prfsha256-x25519", "aes256-sha384-ecp384"},
			[]string{"aes256-sha384-ecp384", "aes128gcm16-prfsha256-x25519"}, Options{}, "aes128gcm16-prfsha256-x25519", 2},
		{"our order within a type", ike, []string{"aes128gcm16-aes256gcm16-prfsha256-prfsha384-x25519-ecp256"},
			[]string{"aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp256-x25519"}, Options{}, "aes128gcm16-prfsha256-x25519", 1},
		{"first peer proposal that matches", ike, []string{"aes256gcm16-aes128gcm16-prfsha256-x25519"},
			[]string{"aes128gcm16-prfsha256-x25519", "aes256gcm16-prfsha256-x25519"}, Options{}, "aes128gcm16-prfsha256-x25519", 1},
		{"second of ours", ike, []string{"chacha20poly1305-prfsha256-x25519", "aes256-sha384-ecp384"},
			[]string{"aes256-sha384-ecp384"}, Options{}, "aes256-sha384-prfsha384-ecp384", 1},
		{"key length must match", ike, []string{"aes128-sha256-x25519"}, []string{"aes256-sha256-x25519"}, Options{}, "", 0},
		{"no common group", ike, []string{"aes128gcm16-prfsha256-x25519"}, []string{"aes128gcm16-prfsha256-ecp256"}, Options{}, "", 0},
		{"no common PRF", ike, []string{"aes128gcm16-prfsha256-x25519"}, []string{"aes128gcm16-prfsha384-x25519"}, Options{}, "", 0},
		{"AEAD and classic", ike, []string{"aes128gcm16-prfsha256-x25519"}, []string{"aes128-sha256-x25519"}, Options{}, "", 0},
		{"ADDKE both", ike, []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, Options{}, "aes256gcm16-prfsha384-x25519-ke1_mlkem768", 1},
		{"ADDKE required, peer lacks it", ike, []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, []string{"aes256gcm16-prfsha384-x25519"}, Options{}, "", 0},
		{"ADDKE optional, peer lacks it", ike, []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"}, []string{"aes256gcm16-prfsha384-x25519"}, Options{}, "aes256gcm16-prfsha384-x25519", 1},
		{"ADDKE offered, we lack it", ike, []string{"aes256gcm16-prfsha384-x25519"}, []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, Options{}, "", 0},
		{"ADDKE offered optional, we lack it", ike, []string{"aes256gcm16-prfsha384-x25519"}, []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"}, Options{}, "aes256gcm16-prfsha384-x25519", 1},
		{"ADDKE fallback to second proposal", ike, []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16-prfsha384-x25519"},
			[]string{"aes256gcm16-prfsha384-x25519"}, Options{}, "aes256gcm16-prfsha384-x25519", 1},
		{"a method serves one exchange", ike, []string{"aes256gcm16-prfsha384-x25519-ke1_x25519-ke1_mlkem768"},
			[]string{"aes256gcm16-prfsha384-x25519-ke1_x25519-ke1_mlkem768"}, Options{}, "aes256gcm16-prfsha384-x25519-ke1_mlkem768", 1},
		{"ESP", esp, []string{"aes128gcm16", "aes256-sha256"}, []string{"aes256-sha256", "aes128gcm16"}, Options{}, "aes128gcm16-noesn", 2},
		{"ESP PFS both", esp, []string{"aes128gcm16-x25519"}, []string{"aes128gcm16-ecp256-x25519"}, Options{}, "aes128gcm16-x25519-noesn", 1},
		{"ESP PFS only ours", esp, []string{"aes128gcm16-x25519"}, []string{"aes128gcm16"}, Options{}, "", 0},
		{"ESP PFS only theirs", esp, []string{"aes128gcm16"}, []string{"aes128gcm16-x25519"}, Options{}, "", 0},
		{"ESP PFS optional ours", esp, []string{"aes128gcm16-x25519-none"}, []string{"aes128gcm16"}, Options{}, "aes128gcm16-noesn", 1},
		{"ESP PFS optional theirs", esp, []string{"aes128gcm16"}, []string{"aes128gcm16-x25519-none"}, Options{}, "aes128gcm16-noesn", 1},
		{"ESP PFS different groups", esp, []string{"aes128gcm16-x25519"}, []string{"aes128gcm16-modp2048"}, Options{}, "", 0},
		{"IKE_AUTH skips KE", esp, []string{"aes128gcm16-x25519"}, []string{"aes128gcm16"}, Options{SkipKE: true}, "aes128gcm16-noesn", 1},
		{"IKE_AUTH skips KE both", esp, []string{"aes128gcm16-x25519"}, []string{"aes128gcm16-ecp256"}, Options{SkipKE: true}, "aes128gcm16-noesn", 1},
		{"ESN ours preferred", esp, []string{"aes128gcm16-esn-noesn"}, []string{"aes128gcm16-noesn-esn"}, Options{}, "aes128gcm16-esn", 1},
		{"ESN only no", esp, []string{"aes128gcm16-esn-noesn"}, []string{"aes128gcm16-noesn"}, Options{}, "aes128gcm16-noesn", 1},
		{"ESN mismatch", esp, []string{"aes128gcm16-esn"}, []string{"aes128gcm16-noesn"}, Options{}, "", 0},
		{"AH", ah, []string{"sha384-sha256"}, []string{"sha256-sha384"}, Options{}, "sha384-noesn", 1},
		{"protocol mismatch", esp, []string{"sha256"}, []string{"aes128-sha256"}, Options{}, "", 0},
	} {
		oursProto := tc.proto
		if tc.name == "protocol mismatch" {
			oursProto = ah
		}
		ours := mustList(t, oursProto, tc.ours...)
		peer := mustList(t, tc.proto, tc.peer...)
		for i := range peer {
			if tc.proto != ike {
				peer[i].SPI = []byte{0xc0, 0, 0, byte(i)}
			}
		}
		sel, err := Select(ours, peer, tc.opt)
		if tc.want == "" {
			if !errors.Is(err, ErrNoProposalChosen) {
				t.Errorf("%s: selected %v", tc.name, sel)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := Format(sel); got != tc.want || sel.Number != tc.number {
			t.Errorf("%s: selected #%d %s, want #%d %s", tc.name, sel.Number, got, tc.number, tc.want)
		}
		if tc.proto != ike && (len(sel.SPI) != 4 || sel.SPI[3] != tc.number-1) {
			t.Errorf("%s: SPI %x not the peer's", tc.name, sel.SPI)
		}
		// The initiator accepts what the responder chose.
		if err := CheckSelection(peer, sel, tc.opt); err != nil {
			t.Errorf("%s: CheckSelection: %v", tc.name, err)
		}
	}
}

// TestSelectWire covers what only arrives from the wire: integrity with an
// AEAD, unknown transform types and attributes.
func TestSelectWire(t *testing.T) {
	ours := mustList(t, ike, "aes128gcm16-aes256gcm16-prfsha256-x25519")
	for _, tc := range []struct {
		name string
		peer []message.Transform
		want string
	}{
		{"integrity with an AEAD is ignored", []message.Transform{tr(E, 20, 128), tr(I, 12), tr(P, 5), tr(K, 31)}, "aes128gcm16-prfsha256-x25519"},
		{"unknown transform type fails the proposal", []message.Transform{tr(E, 20, 128), tr(P, 5), tr(K, 31), tr(200, 1)}, ""},
		{"transform with unknown attribute is ignored", []message.Transform{
			{Type: E, ID: 20, KeyLength: 128, Attrs: []message.Attribute{{Type: 99, TV: true, Value: []byte{0, 1}}}},
			tr(E, 20, 256), tr(P, 5), tr(K, 31)}, "aes256gcm16-prfsha256-x25519"},
		{"only transform with unknown attribute", []message.Transform{
			{Type: E, ID: 20, KeyLength: 128, Attrs: []message.Attribute{{Type: 99, Value: []byte{1}}}}, tr(P, 5), tr(K, 31)}, ""},
		{"private-use algorithm never matches", []message.Transform{tr(E, 1024), tr(P, 5), tr(K, 31)}, ""},
	} {
		peer := []message.Proposal{{Number: 1, Protocol: ike, Transforms: tc.peer}}
		sel, err := Select(ours, peer, Options{})
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s: selected %s", tc.name, Format(sel))
		case tc.want != "" && (err != nil || Format(sel) != tc.want):
			t.Errorf("%s: %v %v", tc.name, sel, err)
		}
	}
}

func TestCheckSelection(t *testing.T) {
	offered := mustList(t, ike, "aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256", "aes256-sha384-ecp384")
	ok := func(num uint8, ts ...message.Transform) *message.Proposal {
		return &message.Proposal{Number: num, Protocol: ike, Transforms: ts}
	}
	for _, tc := range []struct {
		name   string
		chosen *message.Proposal
		valid  bool
	}{
		{"valid", ok(1, tr(E, 20, 256), tr(P, 5), tr(K, 19)), true},
		{"valid second", ok(2, tr(E, 12, 256), tr(I, 13), tr(P, 6), tr(K, 20)), true},
		{"wrong number", ok(2, tr(E, 20, 256), tr(P, 5), tr(K, 19)), false},
		{"unknown number", ok(3, tr(E, 20, 256), tr(P, 5), tr(K, 19)), false},
		{"two encryption algorithms", ok(1, tr(E, 20, 256), tr(E, 20, 128), tr(P, 5), tr(K, 19)), false},
		{"not offered", ok(1, tr(E, 28), tr(P, 5), tr(K, 19)), false},
		{"no KE", ok(1, tr(E, 20, 256), tr(P, 5)), false},
		{"extra integrity", ok(2, tr(E, 12, 256), tr(I, 13), tr(I, 12), tr(P, 6), tr(K, 20)), false},
		{"ESP proposal", &message.Proposal{Number: 1, Protocol: esp, Transforms: []message.Transform{tr(E, 20, 128)}}, false},
	} {
		err := CheckSelection(offered, tc.chosen, Options{})
		if (err == nil) != tc.valid {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	espOffered := StripKE(mustList(t, esp, "aes128gcm16-x25519"))
	if len(espOffered[0].Transforms) != 2 {
		t.Fatalf("StripKE: %v", espOffered[0].Transforms)
	}
	// A responder may echo a KE transform in IKE_AUTH; SkipKE ignores it.
	chosen := &message.Proposal{Number: 1, Protocol: esp, Transforms: []message.Transform{tr(E, 20, 128), tr(K, 31), tr(N, 0)}}
	if err := CheckSelection(espOffered, chosen, Options{SkipKE: true}); err != nil {
		t.Errorf("SkipKE: %v", err)
	}
	if err := CheckSelection(espOffered, chosen, Options{}); err == nil {
		t.Error("KE not offered accepted")
	}
}

func TestResolve(t *testing.T) {
	sel := func(proto message.ProtocolID, s string) *message.Proposal {
		p, err := Parse(proto, s)
		if err != nil {
			t.Fatal(err)
		}
		return &p
	}
	s, err := ResolveIKE(sel(ike, "aes256-sha384-ecp384-ke1_mlkem768-ke3_mlkem1024"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Encr.Name != "aes256" || s.Integ.Name != "sha384" || s.PRF.ID != ikecrypto.PRFHMACSHA384 || s.KE != kex.ECP384 ||
		s.AddKE != [7]kex.ID{kex.MLKEM768, 0, kex.MLKEM1024} {
		t.Errorf("%+v", s)
	}
	s, err = ResolveIKE(sel(ike, "aes128gcm16-prfsha256-x25519"))
	if err != nil || s.Encr.Name != "aes128gcm16" || s.Integ != nil || s.KE != kex.Curve25519 {
		t.Errorf("%+v %v", s, err)
	}
	c, err := ResolveChild(sel(esp, "aes256gcm16-x25519-esn"))
	if err != nil || c.Enc.Name != "aes256gcm16" || c.Integ != nil || !c.ESN || c.KE != kex.Curve25519 {
		t.Errorf("%+v %v", c, err)
	}
	c, err = ResolveChild(sel(esp, "aes128-sha256"))
	if err != nil || c.Enc.Name != "aes128" || c.Integ.Name != "sha256" || c.ESN || c.KE != kex.None {
		t.Errorf("%+v %v", c, err)
	}
	c, err = ResolveChild(sel(esp, "chacha20poly1305"))
	if err != nil || c.Enc.Name != "chacha20poly1305" {
		t.Errorf("%+v %v", c, err)
	}
	c, err = ResolveChild(sel(ah, "aes128gmac"))
	if err != nil || c.Enc != nil || c.Integ.Name != "aes128gmac" {
		t.Errorf("%+v %v", c, err)
	}
	for name, p := range map[string]*message.Proposal{
		"two encryptions": sel(ike, "aes128gcm16-aes256gcm16-prfsha256-x25519"),
		"two groups":      sel(ike, "aes128gcm16-prfsha256-x25519-ecp256"),
		"ESP for IKE":     sel(esp, "aes128gcm16"),
		"GCM with integ":  {Protocol: ike, Transforms: []message.Transform{tr(E, 20, 128), tr(I, 12), tr(P, 5), tr(K, 31)}},
		"CBC w/o integ":   {Protocol: ike, Transforms: []message.Transform{tr(E, 12, 128), tr(P, 5), tr(K, 31)}},
		"no KE":           {Protocol: ike, Transforms: []message.Transform{tr(E, 20, 128), tr(P, 5)}},
		"ESN in IKE":      {Protocol: ike, Transforms: []message.Transform{tr(E, 20, 128), tr(P, 5), tr(K, 31), tr(N, 0)}},
		"unknown encr":    {Protocol: ike, Transforms: []message.Transform{tr(E, 99), tr(P, 5), tr(K, 31)}},
		"unknown KE":      {Protocol: ike, Transforms: []message.Transform{tr(E, 20, 128), tr(P, 5), tr(K, 99)}},
	} {
		if _, err := ResolveIKE(p); err == nil {
			t.Errorf("ResolveIKE %s accepted", name)
		}
	}
	for name, p := range map[string]*message.Proposal{
		"IKE for child":   sel(ike, "aes128gcm16-prfsha256-x25519"),
		"two ESN":         sel(esp, "aes128gcm16-esn-noesn"),
		"GCM with integ":  {Protocol: esp, Transforms: []message.Transform{tr(E, 20, 128), tr(I, 12)}},
		"CBC w/o integ":   {Protocol: esp, Transforms: []message.Transform{tr(E, 12, 128)}},
		"GMAC as ESP int": {Protocol: esp, Transforms: []message.Transform{tr(E, 12, 128), tr(I, 9)}},
		"PRF in ESP":      {Protocol: esp, Transforms: []message.Transform{tr(E, 20, 128), tr(P, 5)}},
		"ESN 7":           {Protocol: esp, Transforms: []message.Transform{tr(E, 20, 128), tr(N, 7)}},
		"GCM-8 in ESP":    {Protocol: esp, Transforms: []message.Transform{tr(E, 18, 128)}},
		"AH w/o integ":    {Protocol: ah, Transforms: []message.Transform{tr(N, 0)}},
		"encr in AH":      {Protocol: ah, Transforms: []message.Transform{tr(E, 12, 128), tr(I, 12)}},
	} {
		if _, err := ResolveChild(p); err == nil {
			t.Errorf("ResolveChild %s accepted", name)
		}
	}
}

func TestKeywordUnknown(t *testing.T) {
	p := &message.Proposal{Protocol: ike, Transforms: []message.Transform{tr(E, 99, 128), tr(K, 99), tr(A1, 99), tr(200, 3), tr(N, 5)}}
	if got := Format(p); got != "ENCR_99_128-KE_99-ESN_5-ADDKE1_99-TRANSFORM(200)_3" {
		t.Errorf("%q", got)
	}
	if !IsAEAD(20) || !IsAEAD(28) || !IsAEAD(18) || IsAEAD(12) || IsAEAD(3) {
		t.Error("IsAEAD")
	}
}
