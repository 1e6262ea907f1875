package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Credentials are the user and groups the daemon switches to once its
// privileged setup is done (the configuration's daemon.user and
// daemon.group, or goipsec run --user and --group).
type Credentials struct {
	// User and Group are the names as configured (Group is empty when
	// the user's primary group is used).
	User, Group string
	// UID and GID are the user and primary group IDs to switch to.
	UID, GID int
	// Groups are the supplementary group IDs: the user's groups in the
	// group database, or only GID when Group is given.
	Groups []int
}

// String describes c as user(uid)/group(gid).
func (c *Credentials) String() string {
	g := c.Group
	if g == "" {
		g = strconv.Itoa(c.GID)
	}
	return fmt.Sprintf("%s(%d)/%s(%d)", c.User, c.UID, g, c.GID)
}

// groupList formats c.Groups as /proc/PID/status shows them.
func (c *Credentials) groupList() string {
	s := make([]string, len(c.Groups))
	for i, g := range c.Groups {
		s[i] = strconv.Itoa(g)
	}
	return strings.Join(s, " ")
}

// RunAs is Run with a privilege drop: it starts the daemon (TUN device or
// userspace stack, sockets, control socket, metrics) with the privileges
// it was started with, then switches to c, and only then moves packets.
// With c nil it is Run. Once the privileges are gone the daemon cannot
// remove what needs CAP_NET_ADMIN when it stops: the TUN device goes with
// the process, and with it its addresses and routes, but the fail-closed
// routes and policy-routing rules stay (as after a crash; the next start
// takes them over).
func (d *Daemon) RunAs(ctx context.Context, c *Credentials) error {
	if c == nil {
		return d.Run(ctx)
	}
	if err := canSwitch(c); err != nil {
		return err // before anything is set up
	}
	defer d.Close()
	if err := d.Start(ctx); err != nil {
		return err
	}
	if err := d.DropPrivileges(c); err != nil {
		return err
	}
	return d.Serve(ctx)
}

// LookupCredentials resolves the user (a name or numeric user ID) and
// group (a name or numeric group ID; empty: the user's primary group) the
// daemon is to switch to. It returns nil, nil when both are empty, and an
// error on systems other than Linux, where the daemon cannot switch.
func LookupCredentials(user, group string) (*Credentials, error) {
	if user == "" {
		if group != "" {
			return nil, fmt.Errorf("daemon.group: needs daemon.user")
		}
		return nil, nil
	}
	return lookupCredentials(user, group)
}
