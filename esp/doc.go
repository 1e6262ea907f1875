// Package esp implements the Encapsulating Security Payload (RFC 4303): the
// wire format, the transforms, tunnel and transport encapsulation and ESN,
// sealing and opening packets in place in caller-provided buffers.
package esp
