// Package ikecrypto holds the cryptography of an IKE SA: the algorithms
// (encryption, PRF, integrity) by transform ID, the Encrypted payload sealed
// and opened with an AEAD (RFC 5282, RFC 7634) or CBC and HMAC (RFC 7296
// section 3.14), key derivation (SKEYSEED, prf+, the IKE SA keys, rekeyed
// SKEYSEED, Child SA KEYMAT; RFC 7296 sections 2.13-2.18) and the Shared
// Key AUTH payload (RFC 7296 section 2.15).
//
// Integrity algorithms and Child SA transforms come from internal/xform, the
// registry the ESP and AH datapath uses.
package ikecrypto
