package message

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("192.0.2.200")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::ffff")
)

// samplePayloads has one or more instances of every payload type.
func samplePayloads() []Payload {
	return []Payload{
		&SA{Proposals: []Proposal{
			{Number: 1, Protocol: ProtoIKE, Transforms: []Transform{
				{Type: TransformEncr, ID: 20, KeyLength: 256},
				{Type: TransformEncr, ID: 28},
				{Type: TransformPRF, ID: 5},
				{Type: TransformKE, ID: 31},
				{Type: TransformAddKE1, ID: 36},
			}},
			{Number: 2, Protocol: ProtoIKE, SPI: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Transforms: []Transform{
				{Type: TransformEncr, ID: 12, KeyLength: 128, Attrs: []Attribute{{Type: 17, TV: true, Value: []byte{0, 1}}, {Type: 18, Value: []byte("tlv")}, {Type: 19}}},
				{Type: TransformInteg, ID: 12},
				{Type: TransformPRF, ID: 5},
				{Type: TransformKE, ID: 14},
			}},
			{Number: 3, Protocol: ProtoESP, SPI: []byte{0xc0, 0, 0, 1}, Transforms: []Transform{
				{Type: TransformEncr, ID: 20, KeyLength: 128},
				{Type: TransformESN, ID: 0},
				{Type: TransformESN, ID: 1},
			}},
		}},
		&KE{Method: 31, Data: bytes.Repeat([]byte{0x42}, 32)},
		&IDi{Identity: FQDNIdentity("moon.strongswan.org")},
		&IDr{Identity: AddrIdentity(v6a)},
		&IDr{Identity: Identity{IDType: IDKeyID, Reserved: [3]byte{1, 2, 3}, Data: []byte{0xde, 0xad}}},
		&IDi{Identity: Identity{IDType: IDNull}},
		&Cert{Encoding: CertX509Sig, Data: []byte{0x30, 0x82, 0, 0}},
		&CertReq{Encoding: CertX509Sig, Authorities: bytes.Repeat([]byte{7}, 40)},
		&Auth{Method: AuthSharedKey, Data: bytes.Repeat([]byte{9}, 32)},
		&Nonce{Data: bytes.Repeat([]byte{1}, 32)},
		NewNotify(NATDetectionSourceIP, bytes.Repeat([]byte{3}, 20)),
		NewChildNotify(RekeySA, ProtoESP, 0xc1234567, nil),
		&Notify{Protocol: ProtoIKE, SPI: []byte{1, 2, 3, 4, 5, 6, 7, 8}, NotifyType: InvalidIKESPI},
		&Delete{Protocol: ProtoIKE},
		&Delete{Protocol: ProtoESP, SPIs: []uint32{1, 0xffffffff}},
		&VendorID{Data: []byte("strongSwan")},
		&TSi{Selectors: []TrafficSelector{
			{Type: TSIPv4AddrRange, Protocol: 6, StartPort: 80, EndPort: 80, Start: v4a, End: v4b},
			{Type: TSIPv6AddrRange, Protocol: 0, StartPort: 0, EndPort: 0xffff, Start: v6a, End: v6b},
			{Type: 10, Protocol: 0, Data: []byte("label")},
		}},
		&TSr{Selectors: []TrafficSelector{{Type: TSIPv4AddrRange, StartPort: 0xffff, EndPort: 0, Start: v4a, End: v4a}}},
		&CP{CFGType: CFGRequest, Attributes: []CPAttribute{{Type: 1}, {Type: 8, Value: []byte{0, 0, 0, 0}}}},
		&EAP{Data: []byte{2, 7, 0, 9, 1, 'u', 's', 'e', 'r'}},
	}
}

func TestRoundTripMessage(t *testing.T) {
	ps := samplePayloads()
	m := &Message{SPIi: 0x0102030405060708, SPIr: 0xf1f2f3f4f5f6f7f8, Exchange: IKESAInit,
		Flags: FlagInitiator | FlagVersion, MessageID: 0x01020304, Payloads: ps}
	wire, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseMessage(wire)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		for i := range m.Payloads {
			if i >= len(got.Payloads) || !reflect.DeepEqual(got.Payloads[i], m.Payloads[i]) {
				t.Errorf("payload %d: got %#v\nwant %#v", i, got.Payloads[i], m.Payloads[i])
			}
		}
		t.Fatalf("message differs")
	}
	again, _ := got.Marshal()
	if !bytes.Equal(again, wire) {
		t.Error("re-marshalled message differs")
	}
	// Every payload alone, and with ParsePayload.
	for _, p := range ps {
		b, err := MarshalPayload(PayloadNone, p)
		if err != nil {
			t.Fatalf("%v: %v", p.Type(), err)
		}
		q, err := ParsePayload(p.Type(), b[GenericHeaderLen:])
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Errorf("%v: %v %#v", p.Type(), err, q)
		}
	}
	// The parsed message does not alias the input.
	clear(wire)
	if !reflect.DeepEqual(got, m) {
		t.Error("parsed message aliases its input")
	}
}

func TestHeader(t *testing.T) {
	m := &Message{SPIi: 1, Exchange: CreateChildSA, Flags: FlagResponse, MessageID: 7}
	wire, _ := m.Marshal()
	want := unhex(t, "0000000000000001 0000000000000000 00 20 24 20 00000007 0000001c")
	if !bytes.Equal(wire, want) {
		t.Fatalf("header %x", wire)
	}
	h, err := ParseHeader(wire)
	if err != nil {
		t.Fatal(err)
	}
	if h.SPIi != 1 || h.Exchange != CreateChildSA || !h.IsResponse() || h.IsInitiator() || h.MessageID != 7 || h.Length != 28 || h.Version != 0x20 {
		t.Errorf("%+v", h)
	}
	wire[17] = 0x21 // minor version is ignored
	if _, err := ParseMessage(wire); err != nil {
		t.Errorf("minor version 1: %v", err)
	}
}

// mod returns a copy of b with f applied.
func mod(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }

func TestParseErrors(t *testing.T) {
	// A valid IKE_SA_INIT-like message to mutate: header, SA, KE, Nonce.
	m := &Message{SPIi: 0x1111, Exchange: IKESAInit, Flags: FlagInitiator, Payloads: []Payload{
		&SA{Proposals: []Proposal{{Number: 1, Protocol: ProtoIKE, Transforms: []Transform{
			{Type: TransformEncr, ID: 20, KeyLength: 128}, {Type: TransformPRF, ID: 5}, {Type: TransformKE, ID: 31}}}}},
		&KE{Method: 31, Data: make([]byte, 32)},
		&Nonce{Data: make([]byte, 32)},
	}}
	good, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Offsets into good: header 0-27, SA payload header 28, proposal 32,
	// first transform 40, its attribute 48; KE at 28+4+8+12+8+8 = 68.
	const sa, prop, tr1, ke = 28, 32, 40, 68
	setLen := func(b []byte) []byte { // fix the header length after a change
		b[24], b[25], b[26], b[27] = byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b))
		return b
	}
	crit := func(critical bool) []byte { // an unknown payload (type 200) appended
		b := bytes.Clone(good)
		b[len(b)-32-4] = 200 // Nonce's next payload
		flags := byte(0)
		if critical {
			flags = 0x80
		}
		return setLen(append(b, 0, flags, 0, 6, 0xaa, 0xbb))
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", good[:27], ErrTruncated},
		{"major version 1", mod(good, func(b []byte) []byte { b[17] = 0x10; return b }), ErrMajorVersion},
		{"major version 3", mod(good, func(b []byte) []byte { b[17] = 0x30; return b }), ErrMajorVersion},
		{"length too big", mod(good, func(b []byte) []byte { b[27]++; return b }), ErrLength},
		{"length too small", mod(good, func(b []byte) []byte { b[27]--; return b }), ErrLength},
		{"trailing octet", setLen(append(bytes.Clone(good), 0)), ErrLength},
		{"truncated payload", setLen(bytes.Clone(good[:len(good)-1])), ErrTruncated},
		{"payload length 3", mod(good, func(b []byte) []byte { b[sa+2], b[sa+3] = 0, 3; return b }), ErrLength},
		{"payload length past end", mod(good, func(b []byte) []byte { b[sa+2] = 0xff; return b }), ErrTruncated},
		{"chain ends early", mod(good, func(b []byte) []byte { b[ke] = 0; return b }), ErrLength},
		{"unknown critical", crit(true), ErrUnsupportedCritical},
		{"proposal marker", mod(good, func(b []byte) []byte { b[prop] = 2; return b }), ErrSyntax},
		{"transform marker", mod(good, func(b []byte) []byte { b[tr1] = 0; return b }), ErrSyntax},
		{"transform count high", mod(good, func(b []byte) []byte { b[prop+7] = 4; return b }), ErrSyntax},
		{"transform count low", mod(good, func(b []byte) []byte { b[prop+7] = 2; return b }), ErrSyntax},
		{"IKE SPI size 4", mod(good, func(b []byte) []byte { b[prop+6] = 4; return b }), ErrSyntax},
		{"proposal length 7", mod(good, func(b []byte) []byte { b[prop+3] = 7; return b }), ErrLength},
		{"proposal length past SA", mod(good, func(b []byte) []byte { b[prop+3] += 4; return b }), ErrTruncated},
		{"transform length 7", mod(good, func(b []byte) []byte { b[tr1+3] = 7; return b }), ErrLength},
		{"key length TLV", mod(good, func(b []byte) []byte { b[tr1+8] = 0; return b }), ErrTruncated},
		{"key length 0", mod(good, func(b []byte) []byte { b[tr1+10], b[tr1+11] = 0, 0; return b }), ErrSyntax},
		{"empty KE", setLen(append(bytes.Clone(good[:ke]), 40, 0, 0, 8, 0, 31, 0, 0, 0, 0, 0, 36, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32)), ErrSyntax},
		{"short nonce", setLen(mod(good[:len(good)-17], func(b []byte) []byte { b[len(b)-15-4+3] = 4 + 15; return b })), ErrSyntax},
	} {
		_, err := ParseMessage(tc.b)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			continue
		}
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%s: %T is not *Error", tc.name, err)
		}
	}
	// Unknown payloads: skipped without the critical bit, refused with it.
	got, err := ParseMessage(crit(false))
	if err != nil || !reflect.DeepEqual(got.Payloads, m.Payloads) {
		t.Errorf("non-critical unknown payload: %v", err)
	}
	_, err = ParseMessage(crit(true))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	if n, data := pe.Notify(); n != UnsupportedCriticalPayload || !bytes.Equal(data, []byte{200}) {
		t.Errorf("critical unknown: notify %v %x", n, data)
	}
	if n, _ := (&Error{Err: ErrMajorVersion}).Notify(); n != InvalidMajorVersion {
		t.Errorf("major version notify %v", n)
	}
	if n, _ := (&Error{Err: ErrLength}).Notify(); n != InvalidSyntax {
		t.Errorf("length notify %v", n)
	}
	if !strings.Contains(pe.Error(), "PAYLOAD(200)") {
		t.Errorf("error text %q", pe.Error())
	}
}

// payloadErrors checks payload bodies that must be refused.
func TestPayloadErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    PayloadType
		body string
		want error
	}{
		{"KE short", PayloadKE, "001f00", ErrTruncated},
		{"ID short", PayloadIDi, "010000", ErrTruncated},
		{"IPv4 ID of 3", PayloadIDi, "01000000 c00002", ErrSyntax},
		{"IPv6 ID of 4", PayloadIDr, "05000000 c0000201", ErrSyntax},
		{"empty FQDN", PayloadIDr, "02000000", ErrSyntax},
		{"NULL ID with data", PayloadIDr, "0d000000 00", ErrSyntax},
		{"empty CERT", PayloadCERT, "", ErrTruncated},
		{"empty CERTREQ", PayloadCERTREQ, "", ErrTruncated},
		{"AUTH short", PayloadAUTH, "020000", ErrTruncated},
		{"AUTH empty", PayloadAUTH, "02000000", ErrSyntax},
		{"nonce 15", PayloadNonce, strings.Repeat("00", 15), ErrSyntax},
		{"nonce 257", PayloadNonce, strings.Repeat("00", 257), ErrSyntax},
		{"notify short", PayloadNotify, "000040", ErrTruncated},
		{"notify SPI past end", PayloadNotify, "0304 4009 0102", ErrTruncated},
		{"delete short", PayloadDelete, "0304", ErrTruncated},
		{"delete count high", PayloadDelete, "0304 0002 00000001", ErrLength},
		{"delete count low", PayloadDelete, "0304 0001 00000001 00000002", ErrLength},
		{"delete huge count", PayloadDelete, "0304 ffff 00000001", ErrLength},
		{"delete SPI size 8", PayloadDelete, "0308 0001 0000000000000001", ErrSyntax},
		{"delete IKE with SPI", PayloadDelete, "0100 0001", ErrSyntax},
		{"delete protocol 9", PayloadDelete, "0904 0000", ErrSyntax},
		{"TS count high", PayloadTSi, "02000000 07000010 0000ffff c0000201 c0000201", ErrSyntax},
		{"TS count low", PayloadTSi, "01000000 07000010 0000ffff c0000201 c0000201 07000010 0000ffff c0000201 c0000201", ErrSyntax},
		{"TS v4 length 40", PayloadTSi, "01000000 07000028 0000ffff" + strings.Repeat("00", 32), ErrLength},
		{"TS v6 length 16", PayloadTSr, "01000000 08000010 0000ffff c0000201 c0000201", ErrLength},
		{"TS length 3", PayloadTSr, "01000000 0a000003", ErrLength},
		{"TS past end", PayloadTSr, "01000000 07000010 0000ffff c0000201", ErrTruncated},
		{"TS short header", PayloadTSr, "010000", ErrTruncated},
		{"SK empty", PayloadSK, "", ErrSyntax},
		{"SKF number 0", PayloadSKF, "0000 0002 00", ErrSyntax},
		{"SKF number > total", PayloadSKF, "0003 0002 00", ErrSyntax},
		{"SKF empty", PayloadSKF, "0001 0001", ErrSyntax},
		{"SKF short", PayloadSKF, "0001", ErrTruncated},
		{"EAP short", PayloadEAP, "0201", ErrTruncated},
		{"EAP length", PayloadEAP, "02010006 01", ErrLength},
		{"CP short", PayloadCP, "01", ErrTruncated},
		{"CP attribute cut", PayloadCP, "01000000 00010004 00", ErrTruncated},
		{"SA empty", PayloadSA, "", ErrSyntax},
		{"SA proposal cut", PayloadSA, "000000", ErrTruncated},
		{"ESP SPI size 0", PayloadSA, "00000008 01030000", ErrSyntax},
		{"attribute cut", PayloadSA, "00000011 01010001 00000009 01000014 80", ErrTruncated},
		{"TLV attribute cut", PayloadSA, "00000014 01010001 0000000c 01000014 0001 0005", ErrTruncated},
		{"duplicate key length", PayloadSA, "00000018 01010001 00000010 0100000c 800e0080 800e0080", ErrSyntax},
		{"valid SA", PayloadSA, "00000014 01010001 0000000c 0100000c 800e0080", nil},
	} {
		_, err := ParsePayload(tc.t, unhex(t, tc.body))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if p, err := ParsePayload(200, []byte{1}); p != nil || err != nil {
		t.Errorf("unknown type: %v %v", p, err)
	}
}

func TestMarshalErrors(t *testing.T) {
	for name, ps := range map[string][]Payload{
		"short nonce":        {&Nonce{Data: []byte{1}}},
		"empty SA":           {&SA{}},
		"SK not last":        {&Encrypted{Body: []byte{1}}, &Nonce{Data: make([]byte, 16)}},
		"SKF not last":       {&EncryptedFragment{Number: 1, Total: 1, Body: []byte{1}}, &VendorID{}},
		"IKE delete SPIs":    {&Delete{Protocol: ProtoIKE, SPIs: []uint32{1}}},
		"delete proto 0":     {&Delete{}},
		"TS v4 with v6 addr": {&TSi{Selectors: []TrafficSelector{{Type: TSIPv4AddrRange, Start: v6a, End: v6b}}}},
		"TS no addr":         {&TSr{Selectors: []TrafficSelector{{Type: TSIPv6AddrRange}}}},
		"256 TS":             {&TSr{Selectors: make([]TrafficSelector, 256)}},
		"CP attr type":       {&CP{Attributes: []CPAttribute{{Type: 0x8000}}}},
		"attr keylength":     {&SA{Proposals: []Proposal{{Transforms: []Transform{{Attrs: []Attribute{{Type: AttrKeyLength, TV: true, Value: []byte{0, 1}}}}}}}}},
		"TV attr 3 octets":   {&SA{Proposals: []Proposal{{Transforms: []Transform{{Attrs: []Attribute{{Type: 3, TV: true, Value: []byte{0, 1, 2}}}}}}}}},
		"notify SPI 256":     {&Notify{SPI: make([]byte, 256)}},
		"huge vendor ID":     {&VendorID{Data: make([]byte, 65532)}},
	} {
		m := &Message{Payloads: ps}
		if _, err := m.Marshal(); !errors.Is(err, ErrMarshal) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestRFC7634Message decodes the RFC 7634 Appendix B IKEv2 message.
func TestRFC7634Message(t *testing.T) {
	wire := unhex(t, `c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d72e2025000000000900000045
		290000291011121314151617610394701f8d017f7c129248896b71bfe25236efd7cdc67066906315b2`)
	m, err := ParseMessage(wire)
	if err != nil {
		t.Fatal(err)
	}
	if m.Exchange != Informational || m.MessageID != 9 || m.IsResponse() || m.IsInitiator() || len(m.Payloads) != 1 {
		t.Fatalf("%+v", m)
	}
	sk := m.Payloads[0].(*Encrypted)
	if sk.NextPayload != PayloadNotify || len(sk.Body) != 8+13+16 {
		t.Errorf("%+v", sk)
	}
	again, _ := m.Marshal()
	if !bytes.Equal(again, wire) {
		t.Error("re-marshal differs")
	}
}

func TestInnerChain(t *testing.T) {
	first, b, err := MarshalPayloads([]Payload{&VendorID{Data: []byte{1}}, &Encrypted{NextPayload: PayloadNonce, Body: []byte{1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePayloads(first, b); !errors.Is(err, ErrSyntax) {
		t.Errorf("encrypted payload inside the encrypted chain: %v", err)
	}
	if first, b, _ = MarshalPayloads(nil); first != PayloadNone || len(b) != 0 {
		t.Error("empty chain")
	}
	if ps, err := ParsePayloads(PayloadNone, nil); err != nil || ps != nil {
		t.Error("empty chain parse")
	}
}

func TestNotifyHelpers(t *testing.T) {
	n := NewInvalidKE(31)
	if m, err := n.InvalidKEMethod(); err != nil || m != 31 {
		t.Errorf("INVALID_KE_PAYLOAD %d %v", m, err)
	}
	if _, err := NewNotify(InvalidKEPayload, []byte{1}).InvalidKEMethod(); err == nil {
		t.Error("1-octet INVALID_KE_PAYLOAD accepted")
	}
	h := NewSignatureHashAlgorithms(HashSHA2_256, HashSHA2_384, HashSHA2_512, HashIdentity)
	if hs, err := h.HashAlgorithms(); err != nil || !reflect.DeepEqual(hs, []uint16{2, 3, 4, 5}) {
		t.Errorf("hash algorithms %v %v", hs, err)
	}
	if _, err := NewNotify(SignatureHashAlgorithms, []byte{1}).HashAlgorithms(); err == nil {
		t.Error("odd SIGNATURE_HASH_ALGORITHMS accepted")
	}
	if spi, err := NewChildNotify(RekeySA, ProtoESP, 0xabcdef01, nil).ChildSPI(); err != nil || spi != 0xabcdef01 {
		t.Errorf("REKEY_SA SPI %x %v", spi, err)
	}
	if _, err := NewNotify(RekeySA, nil).ChildSPI(); err == nil {
		t.Error("REKEY_SA without SPI accepted")
	}
	for _, l := range []int{0, 65} {
		if _, err := NewNotify(Cookie, make([]byte, l)).CookieData(); err == nil {
			t.Errorf("cookie of %d accepted", l)
		}
	}
	if c, err := NewNotify(Cookie, []byte{1, 2}).CookieData(); err != nil || len(c) != 2 {
		t.Error("cookie refused")
	}
	// NAT detection: SHA-1 over SPIi, SPIr, address and port.
	got := NATDetectionHash(0x0102030405060708, 0, netip.MustParseAddr("::ffff:192.0.2.1"), 500)
	want := sha1Sum(unhex(t, "0102030405060708 0000000000000000 c0000201 01f4"))
	if !bytes.Equal(got, want) {
		t.Errorf("NAT-D %x", got)
	}
	m := &Message{Payloads: []Payload{&VendorID{}, NewNotify(Cookie, []byte{1}), NewNotify(InitialContact, nil)}}
	if m.Notify(InitialContact) == nil || m.Notify(TSUnacceptable) != nil || len(m.Notifies()) != 2 || m.Get(PayloadVendorID) == nil || m.Get(PayloadSA) != nil {
		t.Error("message accessors")
	}
	if !NoProposalChosen.IsError() || InitialContact.IsError() || NotifyType(0).IsError() {
		t.Error("IsError")
	}
	for nt, s := range map[NotifyType]string{NoProposalChosen: "NO_PROPOSAL_CHOSEN", IKEv2FragmentationSupported: "IKEV2_FRAGMENTATION_SUPPORTED",
		NoAdditionalAddresses: "NO_ADDITIONAL_ADDRESSES", 12345: "ERROR_NOTIFY(12345)", 50000: "STATUS_NOTIFY(50000)"} {
		if nt.String() != s {
			t.Errorf("%d: %s", nt, nt.String())
		}
	}
}

func TestIdentity(t *testing.T) {
	for _, tc := range []struct {
		id   Identity
		want string
	}{
		{AddrIdentity(netip.MustParseAddr("::ffff:10.0.0.1")), "10.0.0.1"},
		{AddrIdentity(v6a), "2001:db8::1"},
		{FQDNIdentity("a.example"), "a.example"},
		{RFC822Identity("u@a.example"), "u@a.example"},
		{KeyIDIdentity([]byte{1, 2}), "ID_KEY_ID:0102"},
		{DNIdentity([]byte{0x30, 0}), "ID_DER_ASN1_DN:3000"},
		{DNIdentity(mustDN(t, "C=CH, O=goipsec test, CN=moon")), "C=CH, O=goipsec test, CN=moon"},
		{Identity{IDType: IDNull}, "%any"},
	} {
		if s := tc.id.String(); s != tc.want {
			t.Errorf("%v: %q", tc.id.IDType, s)
		}
	}
	id := AddrIdentity(v4a)
	if a, ok := id.Addr(); !ok || a != v4a || id.IDType != IDIPv4 {
		t.Error("Addr")
	}
	if !bytes.Equal(id.Body(), []byte{1, 0, 0, 0, 192, 0, 2, 1}) {
		t.Errorf("body %x", id.Body())
	}
	other := FQDNIdentity("x")
	if id.Equal(&other) || !id.Equal(&id) {
		t.Error("Equal")
	}
	cr := &CertReq{Authorities: make([]byte, 40)}
	if hs, ok := cr.KeyHashes(); !ok || len(hs) != 2 {
		t.Error("KeyHashes")
	}
	cr.Authorities = cr.Authorities[:39]
	if _, ok := cr.KeyHashes(); ok {
		t.Error("KeyHashes of 39 octets")
	}
	e := &EAP{Data: []byte{1, 5, 0, 5, 1}}
	if e.Code() != 1 || e.Identifier() != 5 || e.EAPType() != 1 || (&EAP{}).Code() != 0 {
		t.Error("EAP accessors")
	}
}

func TestTrafficSelectorString(t *testing.T) {
	for _, tc := range []struct {
		ts   TrafficSelector
		want string
	}{
		{TrafficSelector{Type: TSIPv4AddrRange, EndPort: 0xffff, Start: netip.MustParseAddr("10.0.0.0"), End: netip.MustParseAddr("10.0.255.255")}, "10.0.0.0/16"},
		{TrafficSelector{Type: TSIPv4AddrRange, Protocol: 6, StartPort: 443, EndPort: 443, Start: v4a, End: v4a}, "192.0.2.1/32[6/443]"},
		{TrafficSelector{Type: TSIPv4AddrRange, Protocol: 17, EndPort: 0xffff, Start: v4a, End: v4b}, "192.0.2.1..192.0.2.200[17]"},
		{TrafficSelector{Type: TSIPv6AddrRange, Protocol: 6, StartPort: 1024, EndPort: 2048, Start: v6a, End: v6a}, "2001:db8::1/128[6/1024-2048]"},
		{TrafficSelector{Type: TSIPv6AddrRange, Protocol: 50, StartPort: 0xffff, Start: netip.IPv6Unspecified(), End: netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}, "::/0[50/OPAQUE]"},
		{TrafficSelector{Type: 10, Data: []byte{1}}, "TS(10):01"},
	} {
		if s := tc.ts.String(); s != tc.want {
			t.Errorf("got %q want %q", s, tc.want)
		}
	}
}

func sha1Sum(b []byte) []byte {
	h := sha1.Sum(b)
	return h[:]
}

// TestAllocationBound parses hostile messages built to maximize the
// objects per octet and checks the allocation stays a small multiple of the
// message size, and that count fields never drive it.
func TestAllocationBound(t *testing.T) {
	hdr := func(first PayloadType, body []byte) []byte {
		m := make([]byte, HeaderLen, HeaderLen+len(body))
		m[16], m[17], m[18] = byte(first), 0x20, byte(IKEAuth)
		m = append(m, body...)
		n := len(m)
		m[24], m[25], m[26], m[27] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return m
	}
	var vids []byte // 256 empty Vendor ID payloads
	for i := range MaxPayloads {
		next := byte(PayloadVendorID)
		if i == MaxPayloads-1 {
			next = 0
		}
		vids = append(vids, next, 0, 0, 4)
	}
	// One SA payload with 255 minimal transforms in one proposal.
	prop := []byte{0, 0, 0, 0, 1, 1, 0, 255}
	for i := range 255 {
		last := byte(3)
		if i == 254 {
			last = 0
		}
		prop = append(prop, last, 0, 0, 8, 1, 0, 0, 12)
	}
	prop[2], prop[3] = byte(len(prop)>>8), byte(len(prop))
	sa := append([]byte{0, 0, byte((len(prop) + 4) >> 8), byte(len(prop) + 4)}, prop...)
	// A CP payload with the most attributes.
	cp := []byte{1, 0, 0, 0}
	for range MaxCPAttributes {
		cp = append(cp, 0, 1, 0, 0)
	}
	cp = append([]byte{0, 0, byte((len(cp) + 4) >> 8), byte(len(cp) + 4)}, cp...)
	// A TS payload with 255 unknown 4-octet selectors.
	tsb := []byte{255, 0, 0, 0}
	for range 255 {
		tsb = append(tsb, 99, 0, 0, 4)
	}
	tsb = append([]byte{0, 0, byte((len(tsb) + 4) >> 8), byte(len(tsb) + 4)}, tsb...)
	// A Delete claiming 65535 SPIs but carrying one.
	del := []byte{0, 0, 0, 16, 3, 4, 0xff, 0xff, 0, 0, 0, 1}
	for name, msg := range map[string][]byte{
		"vendor IDs": hdr(PayloadVendorID, vids),
		"transforms": hdr(PayloadSA, sa),
		"CP":         hdr(PayloadCP, cp),
		"TS":         hdr(PayloadTSi, tsb),
		"delete":     hdr(PayloadDelete, del[:12]),
	} {
		var before, after runtime.MemStats
		const runs = 20
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range runs {
			ParseMessage(msg)
		}
		runtime.ReadMemStats(&after)
		per := (after.TotalAlloc - before.TotalAlloc) / runs
		t.Logf("%s: %d octets, %d allocated", name, len(msg), per)
		if per > uint64(32*len(msg)+1024) {
			t.Errorf("%s: %d octets allocate %d", name, len(msg), per)
		}
	}
}

func TestStringsAndHelpers(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{PayloadSA.String(), "SA"}, {PayloadSKF.String(), "SKF"}, {PayloadType(99).String(), "PAYLOAD(99)"},
		{IKEAuth.String(), "IKE_AUTH"}, {IKEIntermediate.String(), "IKE_INTERMEDIATE"}, {ExchangeType(99).String(), "EXCHANGE(99)"},
		{ProtoESP.String(), "ESP"}, {ProtoNone.String(), "NONE"}, {ProtoIKE.String(), "IKE"}, {ProtoAH.String(), "AH"}, {ProtocolID(9).String(), "PROTO(9)"},
		{TransformEncr.String(), "ENCR"}, {TransformPRF.String(), "PRF"}, {TransformInteg.String(), "INTEG"}, {TransformKE.String(), "KE"},
		{TransformESN.String(), "ESN"}, {TransformAddKE7.String(), "ADDKE7"}, {TransformType(13).String(), "TRANSFORM(13)"},
		{IDFQDN.String(), "ID_FQDN"}, {IDType(99).String(), "ID(99)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q want %q", tc.got, tc.want)
		}
	}
	if !TransformKE.IsKE() || !TransformAddKE1.IsKE() || !TransformAddKE7.IsKE() || TransformESN.IsKE() || TransformType(13).IsKE() {
		t.Error("IsKE")
	}
	p := Proposal{Number: 2, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4},
		Transforms: []Transform{{Type: TransformEncr, ID: 20, KeyLength: 128, Attrs: []Attribute{{Type: 1, Value: []byte{1}}}}, {Type: TransformESN}}}
	if s := p.String(); s != "#2 ESP: ENCR:20_128/ESN:0" {
		t.Errorf("%q", s)
	}
	if spi, ok := p.SPI32(); !ok || spi != 0x01020304 {
		t.Error("SPI32")
	}
	if _, ok := p.SPI64(); ok {
		t.Error("SPI64 of 4 octets")
	}
	c := p.Clone()
	c.SPI[0], c.Transforms[0].Attrs[0].Type = 9, 9
	if !reflect.DeepEqual(p.SPI, []byte{1, 2, 3, 4}) || p.Transforms[0].Attrs[0].Type != 1 {
		t.Error("Clone shares memory")
	}
	ike := Proposal{SPI: []byte{0, 0, 0, 0, 0, 0, 0, 7}}
	if spi, ok := ike.SPI64(); !ok || spi != 7 {
		t.Error("SPI64")
	}
	if c := (&Proposal{}).Clone(); c.SPI != nil {
		t.Error("Clone of nil SPI")
	}
	// Unknown payloads can be sent, with or without the critical bit.
	for _, crit := range []bool{false, true} {
		m := &Message{Exchange: Informational, Payloads: []Payload{&Unknown{PayloadType: 222, Critical: crit, Body: []byte{1, 2}}, &VendorID{Data: []byte{3}}}}
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseMessage(b)
		if crit {
			var pe *Error
			if !errors.As(err, &pe) || pe.Critical != 222 {
				t.Errorf("critical unknown: %v", err)
			}
		} else if err != nil || len(got.Payloads) != 1 || got.Payloads[0].Type() != PayloadVendorID {
			t.Errorf("non-critical unknown: %v %v", got, err)
		}
	}
	if u, _ := ParsePayload(PayloadVendorID, nil); u == nil {
		t.Error("empty vendor ID")
	}
	var u Unknown
	if err := u.unmarshal([]byte{1}); err != nil || u.Body[0] != 1 || u.Type() != 0 {
		t.Error("Unknown.unmarshal")
	}
	if (&Error{Err: ErrSyntax}).Error() != "ike: IKE header: invalid syntax" {
		t.Errorf("%q", (&Error{Err: ErrSyntax}).Error())
	}
}

func mustDN(t *testing.T, s string) []byte {
	t.Helper()
	der, err := ParseDN(s)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
