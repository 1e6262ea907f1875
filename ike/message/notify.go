package message

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// NewNotify returns a Notify payload about the IKE SA.
func NewNotify(t NotifyType, data []byte) *Notify {
	return &Notify{NotifyType: t, Data: data}
}

// NewChildNotify returns a Notify payload about the ESP or AH SA with the
// given SPI, such as REKEY_SA.
func NewChildNotify(t NotifyType, proto ProtocolID, spi uint32, data []byte) *Notify {
	return &Notify{Protocol: proto, SPI: binary.BigEndian.AppendUint32(nil, spi), NotifyType: t, Data: data}
}

// NATDetectionHash returns the data of NAT_DETECTION_SOURCE_IP or
// NAT_DETECTION_DESTINATION_IP: SHA-1(SPIi | SPIr | IP | Port) (RFC 7296
// section 2.23). SPIr is zero in the IKE_SA_INIT request.
func NATDetectionHash(spii, spir uint64, addr netip.Addr, port uint16) []byte {
	h := sha1.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], spii)
	binary.BigEndian.PutUint64(b[8:], spir)
	h.Write(b[:])
	h.Write(addr.Unmap().AsSlice())
	binary.BigEndian.PutUint16(b[:2], port)
	h.Write(b[:2])
	return h.Sum(nil)
}

// Cookie data bounds (RFC 7296 section 2.6).
const (
	MinCookieLen = 1
	MaxCookieLen = 64
)

// CookieData returns the data of a COOKIE notification after checking its
// length.
func (n *Notify) CookieData() ([]byte, error) {
	if n.NotifyType != Cookie || len(n.Data) < MinCookieLen || len(n.Data) > MaxCookieLen {
		return nil, errorf(ErrSyntax, PayloadNotify, "%v with %d octets of data", n.NotifyType, len(n.Data))
	}
	return n.Data, nil
}

// NewInvalidKE returns an INVALID_KE_PAYLOAD notification naming the key
// exchange method the responder wants.
func NewInvalidKE(method uint16) *Notify {
	return NewNotify(InvalidKEPayload, binary.BigEndian.AppendUint16(nil, method))
}

// InvalidKEMethod returns the key exchange method requested by an
// INVALID_KE_PAYLOAD notification.
func (n *Notify) InvalidKEMethod() (uint16, error) {
	s := cryptobyte.String(n.Data)
	var m uint16
	if n.NotifyType != InvalidKEPayload || !s.ReadUint16(&m) || !s.Empty() {
		return 0, errorf(ErrSyntax, PayloadNotify, "%v with %d octets of data", n.NotifyType, len(n.Data))
	}
	return m, nil
}

// Hash algorithm identifiers for SIGNATURE_HASH_ALGORITHMS (RFC 7427).
const (
	HashSHA1     uint16 = 1
	HashSHA2_256 uint16 = 2
	HashSHA2_384 uint16 = 3
	HashSHA2_512 uint16 = 4
	HashIdentity uint16 = 5 // RFC 8420
)

// NewSignatureHashAlgorithms returns a SIGNATURE_HASH_ALGORITHMS
// notification listing the hashes.
func NewSignatureHashAlgorithms(hashes ...uint16) *Notify {
	var d []byte
	for _, h := range hashes {
		d = binary.BigEndian.AppendUint16(d, h)
	}
	return NewNotify(SignatureHashAlgorithms, d)
}

// HashAlgorithms returns the list of a SIGNATURE_HASH_ALGORITHMS
// notification.
func (n *Notify) HashAlgorithms() ([]uint16, error) {
	if n.NotifyType != SignatureHashAlgorithms || len(n.Data)%2 != 0 {
		return nil, errorf(ErrSyntax, PayloadNotify, "%v with %d octets of data", n.NotifyType, len(n.Data))
	}
	s := cryptobyte.String(n.Data)
	hs := make([]uint16, 0, len(s)/2)
	for !s.Empty() {
		var h uint16
		s.ReadUint16(&h)
		hs = append(hs, h)
	}
	return hs, nil
}

// ChildSPI returns the 4-octet SPI of a notification about an ESP or AH SA
// (REKEY_SA, CHILD_SA_NOT_FOUND, INVALID_SPI, ...).
func (n *Notify) ChildSPI() (uint32, error) {
	s := cryptobyte.String(n.SPI)
	var spi uint32
	if (n.Protocol != ProtoESP && n.Protocol != ProtoAH) || !s.ReadUint32(&spi) || !s.Empty() {
		return 0, errorf(ErrSyntax, PayloadNotify, "%v for %v with SPI of %d octets", n.NotifyType, n.Protocol, len(n.SPI))
	}
	return spi, nil
}
