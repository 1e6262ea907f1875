// Package ike implements the Internet Key Exchange protocol version 2
// (RFC 7296).
package ike
