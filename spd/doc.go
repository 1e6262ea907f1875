// Package spd is the Security Policy Database (RFC 4301): ordered policies
// with selectors and PROTECT, BYPASS or DISCARD actions, with a fast lookup.
package spd
