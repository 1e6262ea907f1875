// Package netlab builds throwaway network topologies on one Linux machine
// for product commands (goipsec bench e2e): uniquely named network
// namespaces joined by veth pairs, Go code and sockets run inside a
// namespace (LockOSThread and setns), and background processes in their
// own process groups. A [Lab] tears down everything it made, in reverse
// order, when it is closed; a lab left behind by a killed process is swept
// by the next [NewLab] of the same prefix.
//
// It is the non-test counterpart of internal/interop's namespace plumbing
// (which reports through testing.T): errors are returned, nothing here
// imports package testing.
//
// Everything needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2.
package netlab
