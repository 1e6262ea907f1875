// Package interop holds no code: its tests replay IKEv2 exchanges recorded
// against strongSwan's charon (testdata/strongswan, made by capture.sh) and
// check the message, ikecrypto, proposal and kex packages against what
// charon sent and the keys it logged.
package interop
