// Package message encodes and decodes IKEv2 messages (RFC 7296 section 3):
// the IKE header, the generic payload header chain with its critical bit,
// and every payload the IKEv2 exchanges use, as typed structs.
//
// Decoding is strict: every length field is checked against the data it
// describes, violations come back as *Error carrying the reason (ErrTruncated,
// ErrLength, ErrSyntax, ErrUnsupportedCritical, ErrMajorVersion) and the
// error notification to answer with. No length field makes the parser
// allocate more than a small multiple of the message size.
//
// The Encrypted payload is kept opaque here; package ikecrypto seals and
// opens it.
package message
