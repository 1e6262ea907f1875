// Package ike implements the Internet Key Exchange protocol version 2
// (RFC 7296).
package ike

// The Manager runs IKEv2 for a set of connections (Config): it initiates
// (Initiate, start_action start, acquires from trap policies) and responds,
// with IKE_SA_INIT, IKE_AUTH carrying the first Child SA, CREATE_CHILD_SA
// for further children and INFORMATIONAL for deletes, notifications and
// liveness checks. It authenticates with pre-shared keys or X.509
// certificates (RFC 7427 and classic signatures; certs.go, auth.go) and hands
// negotiated Child SAs to an Installer (the dataplane); messages go out
// through a Transport and come in through HandleMessage, so that tests can
// wire two Managers back to back without sockets.
//
// The wire format and key derivation live in the subpackages: message
// (payloads), ikecrypto (PRFs, SKEYSEED, KEYMAT, the Encrypted payload,
// PSK AUTH and signatures), kex (key exchange methods), proposal (strongSwan-style
// proposals and their negotiation) and ts (traffic selector narrowing).
