// Package tun is the cleartext side: a real TUN device, the userspace
// network stack, and an in-memory pair for tests.
package tun
