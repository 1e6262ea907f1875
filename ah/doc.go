// Package ah implements the Authentication Header (RFC 4302) for IPv4 and
// IPv6: the ICV over the packet with mutable fields zeroed.
package ah
