package proposal

import (
	"testing"

	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
)

func TestWithoutAddKE(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		has  bool
		want string // FormatList of WithoutAddKE
	}{
		{[]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}, true, ""},
		{[]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16-prfsha384-x25519"}, true, "aes256gcm16-prfsha384-x25519"},
		{[]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"}, true, "aes256gcm16-prfsha384-x25519"},
		{[]string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none-ke2_mlkem1024"}, true, ""},
		{[]string{"aes256gcm16-prfsha384-x25519-ke1_none"}, false, "aes256gcm16-prfsha384-x25519"},
		{[]string{"aes128gcm16-prfsha256-ecp256", "aes256-sha384-ecp384"}, false, "aes128gcm16-prfsha256-ecp256, aes256-sha384-prfsha384-ecp384"},
	} {
		ps, err := ParseList(message.ProtoIKE, tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := HasAddKE(ps); got != tc.has {
			t.Errorf("HasAddKE(%v) = %v", tc.in, got)
		}
		if got := FormatList(WithoutAddKE(ps)); got != tc.want {
			t.Errorf("WithoutAddKE(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if FormatList(ps) == "" {
			t.Error("input changed")
		}
	}
}

// TestAddKEWireRoundTrip: strongSwan 6 style proposals survive encoding
// into an SA payload and back, and print as they were written.
func TestAddKEWireRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		proto message.ProtocolID
		s     string
	}{
		{message.ProtoIKE, "aes256gcm16-prfsha384-x25519-ke1_mlkem768"},
		{message.ProtoIKE, "aes256gcm16-prfsha384-x25519-ke1_mlkem1024"},
		{message.ProtoIKE, "aes256gcm16-prfsha384-mlkem768"},
		{message.ProtoIKE, "aes256-sha384-prfsha384-ecp384-ke1_mlkem768-ke1_none-ke2_mlkem1024-ke7_x25519"},
		{message.ProtoESP, "aes256gcm16-x25519-noesn-ke1_mlkem768"},
	} {
		p, err := Parse(tc.proto, tc.s)
		if err != nil {
			t.Fatal(err)
		}
		p.Number = 1
		if tc.proto == message.ProtoESP {
			p.SPI = []byte{1, 2, 3, 4}
		}
		b, err := message.MarshalPayload(message.PayloadNone, &message.SA{Proposals: []message.Proposal{p}})
		if err != nil {
			t.Fatal(err)
		}
		back, err := message.ParsePayload(message.PayloadSA, b[message.GenericHeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		got := back.(*message.SA).Proposals[0]
		if Format(&got) != tc.s {
			t.Errorf("%s: round trip gives %s", tc.s, Format(&got))
		}
	}
}

func TestAddKEs(t *testing.T) {
	got := AddKEs([7]kex.ID{kex.MLKEM768, 0, kex.MLKEM1024, 0, 0, 0, kex.Curve25519})
	if len(got) != 3 || got[0] != kex.MLKEM768 || got[1] != kex.MLKEM1024 || got[2] != kex.Curve25519 {
		t.Errorf("AddKEs = %v", got)
	}
	if AddKEs([7]kex.ID{}) != nil {
		t.Error("AddKEs of none")
	}
}
