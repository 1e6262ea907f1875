//go:build !linux

package daemon

import (
	"fmt"
	"runtime"
)

func lookupCredentials(user, group string) (*Credentials, error) {
	return nil, errNoDrop()
}

func canSwitch(c *Credentials) error { return errNoDrop() }

// DropPrivileges is Linux only; elsewhere it returns an error.
func (d *Daemon) DropPrivileges(c *Credentials) error { return errNoDrop() }

func errNoDrop() error {
	return fmt.Errorf("daemon.user: switching to another user is supported on Linux only, not on %s: "+
		"remove daemon.user (or --user) and start goipsec as the user it should run as "+
		"(tun.mode: netstack needs no privileges at all)", runtime.GOOS)
}
