//go:build !linux

package control

import (
	"errors"
	"net"
)

// peerUID is not implemented here: the socket file's mode (0600) alone
// keeps other users out.
func peerUID(net.Conn) (uint32, error) { return 0, errors.ErrUnsupported }
