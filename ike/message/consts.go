package message

import "fmt"

// PayloadType is an IKEv2 payload type (RFC 7296 section 3.2, IANA "IKEv2
// Payload Types").
type PayloadType uint8

// Payload types.
const (
	PayloadNone     PayloadType = 0  // no next payload
	PayloadSA       PayloadType = 33 // Security Association
	PayloadKE       PayloadType = 34 // Key Exchange
	PayloadIDi      PayloadType = 35 // Identification - Initiator
	PayloadIDr      PayloadType = 36 // Identification - Responder
	PayloadCERT     PayloadType = 37 // Certificate
	PayloadCERTREQ  PayloadType = 38 // Certificate Request
	PayloadAUTH     PayloadType = 39 // Authentication
	PayloadNonce    PayloadType = 40 // Nonce
	PayloadNotify   PayloadType = 41 // Notify
	PayloadDelete   PayloadType = 42 // Delete
	PayloadVendorID PayloadType = 43 // Vendor ID
	PayloadTSi      PayloadType = 44 // Traffic Selector - Initiator
	PayloadTSr      PayloadType = 45 // Traffic Selector - Responder
	PayloadSK       PayloadType = 46 // Encrypted and Authenticated
	PayloadCP       PayloadType = 47 // Configuration
	PayloadEAP      PayloadType = 48 // Extensible Authentication
	PayloadSKF      PayloadType = 53 // Encrypted and Authenticated Fragment (RFC 7383)
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi", PayloadIDr: "IDr",
	PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ", PayloadAUTH: "AUTH", PayloadNonce: "No",
	PayloadNotify: "N", PayloadDelete: "D", PayloadVendorID: "V", PayloadTSi: "TSi", PayloadTSr: "TSr",
	PayloadSK: "SK", PayloadCP: "CP", PayloadEAP: "EAP", PayloadSKF: "SKF",
}

// String returns the short name strongSwan logs for the payload type.
func (t PayloadType) String() string {
	if s, ok := payloadNames[t]; ok {
		return s
	}
	return fmt.Sprintf("PAYLOAD(%d)", uint8(t))
}

// ExchangeType is an IKEv2 exchange type (RFC 7296 section 3.1).
type ExchangeType uint8

// Exchange types.
const (
	IKESAInit        ExchangeType = 34
	IKEAuth          ExchangeType = 35
	CreateChildSA    ExchangeType = 36
	Informational    ExchangeType = 37
	IKESessionResume ExchangeType = 38 // RFC 5723
	IKEIntermediate  ExchangeType = 43 // RFC 9242
	IKEFollowupKE    ExchangeType = 44 // RFC 9370
)

var exchangeNames = map[ExchangeType]string{
	IKESAInit: "IKE_SA_INIT", IKEAuth: "IKE_AUTH", CreateChildSA: "CREATE_CHILD_SA",
	Informational: "INFORMATIONAL", IKESessionResume: "IKE_SESSION_RESUME",
	IKEIntermediate: "IKE_INTERMEDIATE", IKEFollowupKE: "IKE_FOLLOWUP_KE",
}

// String returns the RFC name of the exchange type.
func (t ExchangeType) String() string {
	if s, ok := exchangeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("EXCHANGE(%d)", uint8(t))
}

// Flags are the IKE header flags.
type Flags uint8

// Header flags (RFC 7296 section 3.1).
const (
	FlagInitiator Flags = 0x08 // sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // sender could speak a higher major version
	FlagResponse  Flags = 0x20 // message is a response
)

// ProtocolID identifies the protocol of a proposal, notification or delete.
type ProtocolID uint8

// Protocol IDs (RFC 7296 section 3.3.1).
const (
	ProtoNone ProtocolID = 0
	ProtoIKE  ProtocolID = 1
	ProtoAH   ProtocolID = 2
	ProtoESP  ProtocolID = 3
)

// String returns the protocol name.
func (p ProtocolID) String() string {
	switch p {
	case ProtoNone:
		return "NONE"
	case ProtoIKE:
		return "IKE"
	case ProtoAH:
		return "AH"
	case ProtoESP:
		return "ESP"
	}
	return fmt.Sprintf("PROTO(%d)", uint8(p))
}

// TransformType is the type of an SA transform (RFC 7296 section 3.3.2,
// RFC 9370 for the additional key exchanges).
type TransformType uint8

// Transform types.
const (
	TransformEncr   TransformType = 1  // encryption algorithm (ENCR)
	TransformPRF    TransformType = 2  // pseudorandom function (PRF)
	TransformInteg  TransformType = 3  // integrity algorithm (INTEG)
	TransformKE     TransformType = 4  // key exchange method (KE, formerly D-H)
	TransformESN    TransformType = 5  // extended sequence numbers (ESN)
	TransformAddKE1 TransformType = 6  // additional key exchange 1 (RFC 9370)
	TransformAddKE7 TransformType = 12 // additional key exchange 7
)

// IsKE reports whether t is the key exchange or an additional key exchange.
func (t TransformType) IsKE() bool {
	return t == TransformKE || (t >= TransformAddKE1 && t <= TransformAddKE7)
}

// String returns the short name of the transform type.
func (t TransformType) String() string {
	switch {
	case t == TransformEncr:
		return "ENCR"
	case t == TransformPRF:
		return "PRF"
	case t == TransformInteg:
		return "INTEG"
	case t == TransformKE:
		return "KE"
	case t == TransformESN:
		return "ESN"
	case t >= TransformAddKE1 && t <= TransformAddKE7:
		return fmt.Sprintf("ADDKE%d", t-TransformAddKE1+1)
	}
	return fmt.Sprintf("TRANSFORM(%d)", uint8(t))
}

// Transform attribute types (RFC 7296 section 3.3.5).
const (
	AttrKeyLength uint16 = 14 // Key Length in bits, TV format
)

// ESN transform IDs.
const (
	ESNNone uint16 = 0 // no extended sequence numbers
	ESNUsed uint16 = 1 // extended sequence numbers
)

// IDType is the type of an Identification payload (RFC 7296 section 3.5).
type IDType uint8

// Identification types.
const (
	IDIPv4      IDType = 1  // ID_IPV4_ADDR
	IDFQDN      IDType = 2  // ID_FQDN
	IDRFC822    IDType = 3  // ID_RFC822_ADDR
	IDIPv6      IDType = 5  // ID_IPV6_ADDR
	IDDERASN1DN IDType = 9  // ID_DER_ASN1_DN
	IDDERASN1GN IDType = 10 // ID_DER_ASN1_GN
	IDKeyID     IDType = 11 // ID_KEY_ID
	IDNull      IDType = 13 // ID_NULL (RFC 7619)
)

var idNames = map[IDType]string{
	IDIPv4: "ID_IPV4_ADDR", IDFQDN: "ID_FQDN", IDRFC822: "ID_RFC822_ADDR", IDIPv6: "ID_IPV6_ADDR",
	IDDERASN1DN: "ID_DER_ASN1_DN", IDDERASN1GN: "ID_DER_ASN1_GN", IDKeyID: "ID_KEY_ID", IDNull: "ID_NULL",
}

// String returns the RFC name of the ID type.
func (t IDType) String() string {
	if s, ok := idNames[t]; ok {
		return s
	}
	return fmt.Sprintf("ID(%d)", uint8(t))
}

// AuthMethod is the method of an AUTH payload (RFC 7296 section 3.8).
type AuthMethod uint8

// Authentication methods.
const (
	AuthRSASig         AuthMethod = 1  // RSA Digital Signature
	AuthSharedKey      AuthMethod = 2  // Shared Key Message Integrity Code
	AuthDSSSig         AuthMethod = 3  // DSS Digital Signature
	AuthECDSA256       AuthMethod = 9  // ECDSA with SHA-256 on P-256 (RFC 4754)
	AuthECDSA384       AuthMethod = 10 // ECDSA with SHA-384 on P-384
	AuthECDSA521       AuthMethod = 11 // ECDSA with SHA-512 on P-521
	AuthGenericSecPass AuthMethod = 12 // Generic Secure Password (RFC 6467)
	AuthNull           AuthMethod = 13 // NULL authentication (RFC 7619)
	AuthDigitalSig     AuthMethod = 14 // Digital Signature (RFC 7427)
)

// CertEncoding is the encoding of a CERT or CERTREQ payload (RFC 7296 3.6).
type CertEncoding uint8

// Certificate encodings.
const (
	CertPKCS7         CertEncoding = 1
	CertPGP           CertEncoding = 2
	CertDNSSigned     CertEncoding = 3
	CertX509Sig       CertEncoding = 4 // X.509 Certificate - Signature
	CertKerberos      CertEncoding = 6
	CertCRL           CertEncoding = 7
	CertARL           CertEncoding = 8
	CertSPKI          CertEncoding = 9
	CertX509Attr      CertEncoding = 10
	CertRawRSA        CertEncoding = 11 // deprecated
	CertHashURLX509   CertEncoding = 12
	CertHashURLBundle CertEncoding = 13
	CertOCSP          CertEncoding = 14 // RFC 4806
	CertRawPublicKey  CertEncoding = 15 // RFC 7670
)

// TSType is the type of a traffic selector (RFC 7296 section 3.13.1).
type TSType uint8

// Traffic selector types.
const (
	TSIPv4AddrRange TSType = 7 // TS_IPV4_ADDR_RANGE
	TSIPv6AddrRange TSType = 8 // TS_IPV6_ADDR_RANGE
)

// CFGType is the type of a Configuration payload (RFC 7296 section 3.15).
type CFGType uint8

// Configuration payload types.
const (
	CFGRequest CFGType = 1
	CFGReply   CFGType = 2
	CFGSet     CFGType = 3
	CFGAck     CFGType = 4
)
