// Package netlab builds throwaway network topologies on one Linux machine
// for product commands (goipsec bench e2e) and tests: uniquely named network
// namespaces joined by veth pairs, Go code and sockets run inside a
// namespace (LockOSThread and setns), and background processes in their
// own process groups. A [Lab] tears down everything it made, in reverse
// order, when it is closed; a lab left behind by a killed process is swept
// by the next [NewLab] of the same prefix.
//
// It holds the mechanics the test harnesses share: internal/interop and
// internal/e2e wrap it with helpers that report through testing.T. Errors
// are returned; nothing here imports package testing.
//
// Everything needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2.
package netlab
