package message

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// Payload is one IKEv2 payload. The set of implementations is closed: the
// types of this package, with *Unknown for anything else.
type Payload interface {
	// Type returns the payload type.
	Type() PayloadType
	marshal(b *cryptobyte.Builder)
	unmarshal(body cryptobyte.String) error
}

func newPayload(t PayloadType) Payload {
	switch t {
	case PayloadSA:
		return new(SA)
	case PayloadKE:
		return new(KE)
	case PayloadIDi:
		return new(IDi)
	case PayloadIDr:
		return new(IDr)
	case PayloadCERT:
		return new(Cert)
	case PayloadCERTREQ:
		return new(CertReq)
	case PayloadAUTH:
		return new(Auth)
	case PayloadNonce:
		return new(Nonce)
	case PayloadNotify:
		return new(Notify)
	case PayloadDelete:
		return new(Delete)
	case PayloadVendorID:
		return new(VendorID)
	case PayloadTSi:
		return new(TSi)
	case PayloadTSr:
		return new(TSr)
	case PayloadSK:
		return new(Encrypted)
	case PayloadCP:
		return new(CP)
	case PayloadEAP:
		return new(EAP)
	case PayloadSKF:
		return new(EncryptedFragment)
	}
	return nil
}

// rest returns what is left of s, aliasing it, or nil if nothing is.
func rest(s *cryptobyte.String) []byte {
	var b []byte
	s.ReadBytes(&b, len(*s))
	if len(b) == 0 {
		return nil
	}
	return b
}

// KE is the Key Exchange payload (RFC 7296 section 3.4).
type KE struct {
	Method uint16 // key exchange method (Diffie-Hellman group) number
	Data   []byte // public value (or KEM ciphertext)
}

// Type returns PayloadKE.
func (*KE) Type() PayloadType { return PayloadKE }

func (p *KE) marshal(b *cryptobyte.Builder) {
	b.AddUint16(p.Method)
	b.AddUint16(0)
	b.AddBytes(p.Data)
}

func (p *KE) unmarshal(s cryptobyte.String) error {
	if !s.ReadUint16(&p.Method) || !s.Skip(2) {
		return errorf(ErrTruncated, PayloadKE, "%d octets", len(s))
	}
	if s.Empty() {
		return errorf(ErrSyntax, PayloadKE, "empty key exchange data")
	}
	p.Data = rest(&s)
	return nil
}

// Identity is the content of an Identification payload (RFC 7296 3.5).
type Identity struct {
	IDType   IDType
	Reserved [3]byte // as received; signed in AUTH (RestOfIDPayload)
	Data     []byte
}

// IDi is the Identification payload of the initiator.
type IDi struct{ Identity }

// IDr is the Identification payload of the responder.
type IDr struct{ Identity }

// Type returns PayloadIDi.
func (*IDi) Type() PayloadType { return PayloadIDi }

// Type returns PayloadIDr.
func (*IDr) Type() PayloadType { return PayloadIDr }

func (p *IDi) marshal(b *cryptobyte.Builder)       { b.AddBytes(p.Body()) }
func (p *IDr) marshal(b *cryptobyte.Builder)       { b.AddBytes(p.Body()) }
func (p *IDi) unmarshal(s cryptobyte.String) error { return p.Identity.unmarshal(s, PayloadIDi) }
func (p *IDr) unmarshal(s cryptobyte.String) error { return p.Identity.unmarshal(s, PayloadIDr) }

// String formats the identity as strongSwan prints it: an address, a name,
// or the type and hex data.
func (id *Identity) String() string { return id.format() }

// Equal reports whether both identities have the same type and data.
func (id *Identity) Equal(o *Identity) bool {
	return id.IDType == o.IDType && string(id.Data) == string(o.Data)
}

func identityErr(pt PayloadType, f string, a ...any) error { return errorf(ErrSyntax, pt, f, a...) }

// Body returns the payload body: ID type, reserved octets and data. This is
// RestOfInitIDPayload / RestOfRespIDPayload of RFC 7296 section 2.15.
func (id *Identity) Body() []byte {
	b := make([]byte, 0, 4+len(id.Data))
	b = append(b, byte(id.IDType))
	b = append(b, id.Reserved[:]...)
	return append(b, id.Data...)
}

func (id *Identity) unmarshal(s cryptobyte.String, pt PayloadType) error {
	var t uint8
	if !s.ReadUint8(&t) || !s.CopyBytes(id.Reserved[:]) {
		return errorf(ErrTruncated, pt, "%d octets", len(s))
	}
	id.IDType = IDType(t)
	id.Data = rest(&s)
	switch id.IDType {
	case IDIPv4:
		if len(id.Data) != 4 {
			return identityErr(pt, "ID_IPV4_ADDR of %d octets", len(id.Data))
		}
	case IDIPv6:
		if len(id.Data) != 16 {
			return identityErr(pt, "ID_IPV6_ADDR of %d octets", len(id.Data))
		}
	case IDNull:
		if len(id.Data) != 0 {
			return identityErr(pt, "ID_NULL with %d octets of data", len(id.Data))
		}
	default:
		if len(id.Data) == 0 {
			return identityErr(pt, "empty %v", id.IDType)
		}
	}
	return nil
}

// AddrIdentity returns an ID_IPV4_ADDR or ID_IPV6_ADDR identity.
func AddrIdentity(a netip.Addr) Identity {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return Identity{IDType: IDIPv4, Data: b[:]}
	}
	b := a.As16()
	return Identity{IDType: IDIPv6, Data: b[:]}
}

// FQDNIdentity returns an ID_FQDN identity.
func FQDNIdentity(name string) Identity { return Identity{IDType: IDFQDN, Data: []byte(name)} }

// RFC822Identity returns an ID_RFC822_ADDR identity.
func RFC822Identity(addr string) Identity { return Identity{IDType: IDRFC822, Data: []byte(addr)} }

// KeyIDIdentity returns an ID_KEY_ID identity.
func KeyIDIdentity(id []byte) Identity { return Identity{IDType: IDKeyID, Data: id} }

// DNIdentity returns an ID_DER_ASN1_DN identity from a DER-encoded name.
func DNIdentity(der []byte) Identity { return Identity{IDType: IDDERASN1DN, Data: der} }

// Addr returns the address of an IP identity.
func (id *Identity) Addr() (netip.Addr, bool) {
	switch id.IDType {
	case IDIPv4, IDIPv6:
		return netip.AddrFromSlice(id.Data)
	}
	return netip.Addr{}, false
}

func (id *Identity) format() string {
	switch id.IDType {
	case IDIPv4, IDIPv6:
		if a, ok := id.Addr(); ok {
			return a.String()
		}
	case IDFQDN, IDRFC822:
		return strings.ToValidUTF8(string(id.Data), "?")
	case IDNull:
		return "%any"
	case IDDERASN1DN:
		if s, ok := formatDN(id.Data); ok {
			return s
		}
	}
	return fmt.Sprintf("%v:%x", id.IDType, id.Data)
}

// Cert is the Certificate payload (RFC 7296 section 3.6).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

// Type returns PayloadCERT.
func (*Cert) Type() PayloadType { return PayloadCERT }

func (p *Cert) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Encoding))
	b.AddBytes(p.Data)
}

func (p *Cert) unmarshal(s cryptobyte.String) error {
	var e uint8
	if !s.ReadUint8(&e) {
		return errorf(ErrTruncated, PayloadCERT, "no encoding")
	}
	p.Encoding, p.Data = CertEncoding(e), rest(&s)
	return nil
}

// CertReq is the Certificate Request payload (RFC 7296 section 3.7). For
// X.509 the authority is a list of 20-octet SHA-1 hashes of public keys.
type CertReq struct {
	Encoding    CertEncoding
	Authorities []byte
}

// Type returns PayloadCERTREQ.
func (*CertReq) Type() PayloadType { return PayloadCERTREQ }

func (p *CertReq) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Encoding))
	b.AddBytes(p.Authorities)
}

func (p *CertReq) unmarshal(s cryptobyte.String) error {
	var e uint8
	if !s.ReadUint8(&e) {
		return errorf(ErrTruncated, PayloadCERTREQ, "no encoding")
	}
	p.Encoding, p.Authorities = CertEncoding(e), rest(&s)
	return nil
}

// KeyHashes splits the authority field of an X.509 request into SHA-1 hashes;
// ok is false if its length is not a multiple of 20.
func (p *CertReq) KeyHashes() (hashes [][]byte, ok bool) {
	if len(p.Authorities)%20 != 0 {
		return nil, false
	}
	for a := p.Authorities; len(a) > 0; a = a[20:] {
		hashes = append(hashes, a[:20:20])
	}
	return hashes, true
}

// Auth is the Authentication payload (RFC 7296 section 3.8).
type Auth struct {
	Method AuthMethod
	Data   []byte
}

// Type returns PayloadAUTH.
func (*Auth) Type() PayloadType { return PayloadAUTH }

func (p *Auth) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Method))
	b.AddBytes([]byte{0, 0, 0})
	b.AddBytes(p.Data)
}

func (p *Auth) unmarshal(s cryptobyte.String) error {
	var m uint8
	if !s.ReadUint8(&m) || !s.Skip(3) {
		return errorf(ErrTruncated, PayloadAUTH, "%d octets", len(s))
	}
	if s.Empty() {
		return errorf(ErrSyntax, PayloadAUTH, "empty authentication data")
	}
	p.Method, p.Data = AuthMethod(m), rest(&s)
	return nil
}

// Nonce lengths allowed by RFC 7296 section 3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Nonce is the Nonce payload (RFC 7296 section 3.9).
type Nonce struct {
	Data []byte
}

// Type returns PayloadNonce.
func (*Nonce) Type() PayloadType { return PayloadNonce }

func (p *Nonce) marshal(b *cryptobyte.Builder) {
	if len(p.Data) < MinNonceLen || len(p.Data) > MaxNonceLen {
		b.SetError(errorf(ErrMarshal, PayloadNonce, "nonce of %d octets, want %d-%d", len(p.Data), MinNonceLen, MaxNonceLen))
		return
	}
	b.AddBytes(p.Data)
}

func (p *Nonce) unmarshal(s cryptobyte.String) error {
	if len(s) < MinNonceLen || len(s) > MaxNonceLen {
		return errorf(ErrSyntax, PayloadNonce, "nonce of %d octets, want %d-%d", len(s), MinNonceLen, MaxNonceLen)
	}
	p.Data = rest(&s)
	return nil
}

// Notify is the Notify payload (RFC 7296 section 3.10).
type Notify struct {
	Protocol   ProtocolID // ProtoNone unless the notification concerns an SA
	SPI        []byte     // empty for the IKE SA
	NotifyType NotifyType
	Data       []byte
}

// Type returns PayloadNotify.
func (*Notify) Type() PayloadType { return PayloadNotify }

func (p *Notify) marshal(b *cryptobyte.Builder) {
	if len(p.SPI) > 255 {
		b.SetError(errorf(ErrMarshal, PayloadNotify, "SPI of %d octets", len(p.SPI)))
		return
	}
	b.AddUint8(uint8(p.Protocol))
	b.AddUint8(uint8(len(p.SPI)))
	b.AddUint16(uint16(p.NotifyType))
	b.AddBytes(p.SPI)
	b.AddBytes(p.Data)
}

func (p *Notify) unmarshal(s cryptobyte.String) error {
	var proto, spiSize uint8
	var t uint16
	if !s.ReadUint8(&proto) || !s.ReadUint8(&spiSize) || !s.ReadUint16(&t) {
		return errorf(ErrTruncated, PayloadNotify, "%d octets", len(s))
	}
	p.Protocol, p.NotifyType = ProtocolID(proto), NotifyType(t)
	if !s.ReadBytes(&p.SPI, int(spiSize)) {
		return errorf(ErrTruncated, PayloadNotify, "SPI size %d, %d octets left", spiSize, len(s))
	}
	if len(p.SPI) == 0 {
		p.SPI = nil
	}
	p.Data = rest(&s)
	return nil
}

// Delete is the Delete payload (RFC 7296 section 3.11). For the IKE SA it
// carries no SPIs; for ESP and AH, the 4-octet inbound SPIs of the sender.
type Delete struct {
	Protocol ProtocolID
	SPIs     []uint32
}

// Type returns PayloadDelete.
func (*Delete) Type() PayloadType { return PayloadDelete }

func (p *Delete) marshal(b *cryptobyte.Builder) {
	var size uint8
	switch p.Protocol {
	case ProtoIKE:
		if len(p.SPIs) != 0 {
			b.SetError(errorf(ErrMarshal, PayloadDelete, "IKE SA delete with SPIs"))
			return
		}
	case ProtoESP, ProtoAH:
		size = 4
	default:
		b.SetError(errorf(ErrMarshal, PayloadDelete, "protocol %v", p.Protocol))
		return
	}
	if len(p.SPIs) > 0xffff {
		b.SetError(errorf(ErrMarshal, PayloadDelete, "%d SPIs", len(p.SPIs)))
		return
	}
	b.AddUint8(uint8(p.Protocol))
	b.AddUint8(size)
	b.AddUint16(uint16(len(p.SPIs)))
	for _, spi := range p.SPIs {
		b.AddUint32(spi)
	}
}

func (p *Delete) unmarshal(s cryptobyte.String) error {
	var proto, size uint8
	var n uint16
	if !s.ReadUint8(&proto) || !s.ReadUint8(&size) || !s.ReadUint16(&n) {
		return errorf(ErrTruncated, PayloadDelete, "%d octets", len(s))
	}
	p.Protocol = ProtocolID(proto)
	switch p.Protocol {
	case ProtoIKE:
		if size != 0 || n != 0 || !s.Empty() {
			return errorf(ErrSyntax, PayloadDelete, "IKE SA delete with SPI size %d, %d SPIs", size, n)
		}
		return nil
	case ProtoESP, ProtoAH:
		if size != 4 {
			return errorf(ErrSyntax, PayloadDelete, "%v SPI size %d", p.Protocol, size)
		}
	default:
		return errorf(ErrSyntax, PayloadDelete, "protocol %v", p.Protocol)
	}
	if len(s) != int(n)*4 {
		return errorf(ErrLength, PayloadDelete, "%d SPIs announced, %d octets follow", n, len(s))
	}
	p.SPIs = make([]uint32, 0, n)
	for !s.Empty() {
		var spi uint32
		s.ReadUint32(&spi)
		p.SPIs = append(p.SPIs, spi)
	}
	return nil
}

// VendorID is the Vendor ID payload (RFC 7296 section 3.12).
type VendorID struct {
	Data []byte
}

// Type returns PayloadVendorID.
func (*VendorID) Type() PayloadType { return PayloadVendorID }

func (p *VendorID) marshal(b *cryptobyte.Builder) { b.AddBytes(p.Data) }

func (p *VendorID) unmarshal(s cryptobyte.String) error {
	p.Data = rest(&s)
	return nil
}

// Encrypted is the Encrypted and Authenticated payload SK (RFC 7296 section
// 3.14): initialization vector, ciphertext and integrity checksum, opaque
// here. It is always the last payload of a message.
type Encrypted struct {
	NextPayload PayloadType // type of the first payload inside
	Body        []byte      // IV || encrypted payloads and padding || ICV
}

// Type returns PayloadSK.
func (*Encrypted) Type() PayloadType { return PayloadSK }

func (p *Encrypted) marshal(b *cryptobyte.Builder) { b.AddBytes(p.Body) }

func (p *Encrypted) unmarshal(s cryptobyte.String) error {
	if s.Empty() {
		return errorf(ErrSyntax, PayloadSK, "empty encrypted payload")
	}
	p.Body = rest(&s)
	return nil
}

// EncryptedFragment is the Encrypted and Authenticated Fragment payload SKF
// (RFC 7383 section 2.5).
type EncryptedFragment struct {
	NextPayload PayloadType // first payload inside; PayloadNone except in fragment 1
	Number      uint16      // fragment number, from 1
	Total       uint16      // total number of fragments
	Body        []byte      // IV || encrypted fragment and padding || ICV
}

// Type returns PayloadSKF.
func (*EncryptedFragment) Type() PayloadType { return PayloadSKF }

func (p *EncryptedFragment) marshal(b *cryptobyte.Builder) {
	b.AddUint16(p.Number)
	b.AddUint16(p.Total)
	b.AddBytes(p.Body)
}

func (p *EncryptedFragment) unmarshal(s cryptobyte.String) error {
	if !s.ReadUint16(&p.Number) || !s.ReadUint16(&p.Total) {
		return errorf(ErrTruncated, PayloadSKF, "%d octets", len(s))
	}
	if p.Number == 0 || p.Number > p.Total {
		return errorf(ErrSyntax, PayloadSKF, "fragment %d of %d", p.Number, p.Total)
	}
	if s.Empty() {
		return errorf(ErrSyntax, PayloadSKF, "empty encrypted fragment")
	}
	p.Body = rest(&s)
	return nil
}

// EAP is the EAP payload (RFC 7296 section 3.16) carrying one EAP message
// (RFC 3748); it is decoded only far enough to check its length.
type EAP struct {
	Data []byte // the whole EAP message: code, identifier, length, type data
}

// Type returns PayloadEAP.
func (*EAP) Type() PayloadType { return PayloadEAP }

func (p *EAP) marshal(b *cryptobyte.Builder) { b.AddBytes(p.Data) }

func (p *EAP) unmarshal(s cryptobyte.String) error {
	hdr := s // code, identifier, length
	var n uint16
	if !hdr.Skip(2) || !hdr.ReadUint16(&n) {
		return errorf(ErrTruncated, PayloadEAP, "EAP message of %d octets", len(s))
	}
	if int(n) != len(s) {
		return errorf(ErrLength, PayloadEAP, "EAP length %d, payload carries %d", n, len(s))
	}
	p.Data = rest(&s)
	return nil
}

// Code returns the EAP code (1 request, 2 response, 3 success, 4 failure).
func (p *EAP) Code() uint8 {
	if len(p.Data) < 1 {
		return 0
	}
	return p.Data[0]
}

// Identifier returns the EAP identifier.
func (p *EAP) Identifier() uint8 {
	if len(p.Data) < 2 {
		return 0
	}
	return p.Data[1]
}

// EAPType returns the EAP method type of a request or response, or 0.
func (p *EAP) EAPType() uint8 {
	if len(p.Data) > 4 {
		return p.Data[4]
	}
	return 0
}

// CPAttribute is one configuration attribute (RFC 7296 section 3.15.1).
type CPAttribute struct {
	Type  uint16 // 15 bits
	Value []byte
}

// MaxCPAttributes bounds the attributes of a Configuration payload.
const MaxCPAttributes = 256

// CP is the Configuration payload (RFC 7296 section 3.15).
type CP struct {
	CFGType    CFGType
	Attributes []CPAttribute
}

// Type returns PayloadCP.
func (*CP) Type() PayloadType { return PayloadCP }

func (p *CP) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.CFGType))
	b.AddBytes([]byte{0, 0, 0})
	for _, a := range p.Attributes {
		if a.Type > 0x7fff || len(a.Value) > 0xffff {
			b.SetError(errorf(ErrMarshal, PayloadCP, "attribute type %d with %d octets", a.Type, len(a.Value)))
			return
		}
		b.AddUint16(a.Type)
		b.AddUint16(uint16(len(a.Value)))
		b.AddBytes(a.Value)
	}
}

func (p *CP) unmarshal(s cryptobyte.String) error {
	var t uint8
	if !s.ReadUint8(&t) || !s.Skip(3) {
		return errorf(ErrTruncated, PayloadCP, "%d octets", len(s))
	}
	p.CFGType = CFGType(t)
	for !s.Empty() {
		if len(p.Attributes) == MaxCPAttributes {
			return errorf(ErrSyntax, PayloadCP, "more than %d attributes", MaxCPAttributes)
		}
		var a CPAttribute
		var v cryptobyte.String
		if !s.ReadUint16(&a.Type) || !s.ReadUint16LengthPrefixed(&v) {
			return errorf(ErrTruncated, PayloadCP, "attribute cut short")
		}
		a.Type &= 0x7fff
		a.Value = rest(&v)
		p.Attributes = append(p.Attributes, a)
	}
	return nil
}

// Unknown is a payload of a type this package does not decode. Parsing never
// returns one (unknown payloads are skipped or rejected); it lets callers send
// arbitrary payloads.
type Unknown struct {
	PayloadType PayloadType
	Critical    bool
	Body        []byte
}

// Type returns the payload's type.
func (p *Unknown) Type() PayloadType { return p.PayloadType }

func (p *Unknown) marshal(b *cryptobyte.Builder) { b.AddBytes(p.Body) }

func (p *Unknown) unmarshal(s cryptobyte.String) error {
	p.Body = rest(&s)
	return nil
}
