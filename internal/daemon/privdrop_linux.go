//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

func lookupCredentials(name, group string) (*Credentials, error) {
	c := &Credentials{User: name, Group: group}
	u, err := lookupUser(name)
	switch {
	case err == nil:
		if c.UID, err = strconv.Atoi(u.Uid); err != nil {
			return nil, fmt.Errorf("daemon.user: %s has uid %q", name, u.Uid)
		}
		if c.GID, err = strconv.Atoi(u.Gid); err != nil {
			return nil, fmt.Errorf("daemon.user: %s has gid %q", name, u.Gid)
		}
	case isID(name) && group != "":
		// A numeric ID the user database does not know (common in
		// containers) is fine when the group is given too.
		c.UID, _ = strconv.Atoi(name)
	default:
		if isID(name) {
			return nil, fmt.Errorf("daemon.user: no user with ID %s in the user database: give daemon.group (or --group) as well", name)
		}
		return nil, fmt.Errorf("daemon.user: %w", err)
	}
	if group != "" {
		if c.GID, err = lookupGroup(group); err != nil {
			return nil, fmt.Errorf("daemon.group: %w", err)
		}
		c.Groups = []int{c.GID}
	} else {
		c.Groups = []int{c.GID}
		if ids, err := u.GroupIds(); err == nil {
			for _, s := range ids {
				if g, err := strconv.Atoi(s); err == nil {
					c.Groups = append(c.Groups, g)
				}
			}
		}
		slices.Sort(c.Groups)
		c.Groups = slices.Compact(c.Groups)
	}
	if c.UID == 0 {
		return nil, fmt.Errorf("daemon.user: %s is uid 0 (root): switching to it drops nothing", name)
	}
	if slices.Contains(c.Groups, 0) {
		return nil, fmt.Errorf("daemon.user: %s would keep group 0 (root); choose a user (or daemon.group) without it", c)
	}
	return c, nil
}

func isID(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

func lookupUser(name string) (*user.User, error) {
	if isID(name) {
		return user.LookupId(name)
	}
	return user.Lookup(name)
}

func lookupGroup(name string) (int, error) {
	if isID(name) {
		if g, err := user.LookupGroupId(name); err == nil {
			return strconv.Atoi(g.Gid)
		}
		return strconv.Atoi(name) // a numeric group need not be in the database
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// DropPrivileges switches every thread of the process to c's user, group
// and supplementary groups (setgroups, setresgid, setresuid: Go applies
// them to all threads), which clears the permitted, effective and ambient
// capability sets, and marks the process non-dumpable so that other
// processes of that user cannot ptrace it or read its memory. It then
// checks /proc/self/task/*/status: every thread must show c's IDs and no
// permitted, effective or ambient capability, or it returns an error and
// the daemon must stop. Call it after Start: the TUN device, the sockets
// and the control socket must exist, since nothing privileged is possible
// afterwards. A daemon already running as c (not root) only checks.
func (d *Daemon) DropPrivileges(c *Credentials) error {
	if err := switchTo(c); err != nil {
		return err
	}
	n, inh, err := checkThreads(c)
	if err != nil {
		return fmt.Errorf("daemon.user: privileges not dropped as they should be: %w", err)
	}
	d.log.Info("privileges dropped", zap.String("user", c.User), zap.Int("uid", c.UID), zap.Int("gid", c.GID),
		zap.Ints("groups", c.Groups), zap.String("capabilities", "none"), zap.Int("threads_checked", n))
	if inh != 0 {
		d.log.Info("the inheritable capability set is not empty; it grants nothing to the daemon, which never executes programs",
			zap.String("cap_inh", fmt.Sprintf("%#x", inh)))
	}
	if d.cfg.Tun.Mode == "kernel" {
		d.log.Info("without CAP_NET_ADMIN, stopping removes the TUN device with its addresses and routes, " +
			"but leaves the fail-closed unreachable routes and policy-routing rules in place (the next start takes them over)")
	}
	return nil
}

// canSwitch checks, before the daemon sets anything up, that switchTo can
// succeed: as root, that CAP_SETUID and CAP_SETGID are effective (a
// container may have dropped them); otherwise, that the process already
// runs as c.
func canSwitch(c *Credentials) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	known := unix.Capget(&hdr, &data[0]) == nil
	prm := uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	eff := uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	if os.Geteuid() != 0 {
		if os.Getuid() != c.UID || os.Geteuid() != c.UID || os.Getgid() != c.GID || os.Getegid() != c.GID {
			return fmt.Errorf("daemon.user: switching to %s needs root, and the daemon runs as uid %d", c, os.Geteuid())
		}
		if known && prm|eff != 0 {
			return fmt.Errorf("daemon.user: the daemon already runs as %s but holds capabilities (permitted %#x), "+
				"which only a switch from root sheds from every thread: start it as root, or without daemon.user", c, prm)
		}
		return nil
	}
	const need = 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID
	if known && eff&need != need {
		return fmt.Errorf("daemon.user: switching to %s needs CAP_SETUID and CAP_SETGID, which this process lacks "+
			"(in a container with dropped capabilities add them, e.g. --cap-add SETUID --cap-add SETGID, or leave daemon.user unset)", c)
	}
	return nil
}

// switchTo changes the process's credentials to c.
func switchTo(c *Credentials) error {
	if os.Geteuid() != 0 {
		// Already c (canSwitch checked); checkThreads verifies the rest.
		return canSwitch(c)
	}
	// syscall.Setgroups, not unix.Setgroups: only the former applies to
	// every thread of the process. unix.Setresgid and unix.Setresuid call
	// syscall's, which do.
	if err := syscall.Setgroups(c.Groups); err != nil {
		return permHint("setgroups", err)
	}
	if err := unix.Setresgid(c.GID, c.GID, c.GID); err != nil {
		return permHint("setresgid", err)
	}
	if err := unix.Setresuid(c.UID, c.UID, c.UID); err != nil {
		return permHint("setresuid", err)
	}
	// The kernel resets dumpability on a credential change to
	// fs.suid_dumpable, which may be 1; make sure (the flag is per
	// process).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("daemon.user: prctl(PR_SET_DUMPABLE): %w", err)
	}
	return nil
}

func permHint(op string, err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("daemon.user: %s: %w (changing user needs CAP_SETUID and CAP_SETGID; "+
			"in a container with dropped capabilities add them, e.g. --cap-add SETUID --cap-add SETGID, or leave daemon.user unset)", op, err)
	}
	return fmt.Errorf("daemon.user: %s: %w", op, err)
}

// checkThreads checks every thread's status file against c. It returns
// how many threads it checked and the union of their inheritable sets.
func checkThreads(c *Credentials) (int, uint64, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, 0, fmt.Errorf("cannot check the threads: %w", err)
	}
	n, inh := 0, uint64(0)
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "status"))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // the thread has exited
		}
		if err != nil {
			return n, inh, fmt.Errorf("thread %s: %w", t.Name(), err)
		}
		st, err := parseStatus(string(b))
		if err != nil {
			return n, inh, fmt.Errorf("thread %s: %w", t.Name(), err)
		}
		if err := st.check(c); err != nil {
			return n, inh, fmt.Errorf("thread %s: %w", t.Name(), err)
		}
		inh |= st.capInh
		n++
	}
	if n == 0 {
		return 0, 0, errors.New("no thread found in /proc/self/task")
	}
	return n, inh, nil
}

// procStatus is what DropPrivileges checks of /proc/PID/task/TID/status.
type procStatus struct {
	uid, gid                       [4]int // real, effective, saved, filesystem
	groups                         []int
	capInh, capPrm, capEff, capAmb uint64
}

func parseStatus(s string) (*procStatus, error) {
	st := &procStatus{}
	seen := map[string]bool{}
	for _, line := range strings.Split(s, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		var err error
		switch key {
		case "Uid", "Gid":
			ids := &st.uid
			if key == "Gid" {
				ids = &st.gid
			}
			if len(f) != 4 {
				return nil, fmt.Errorf("%s: %q", key, val)
			}
			for i := range f {
				if ids[i], err = strconv.Atoi(f[i]); err != nil {
					return nil, fmt.Errorf("%s: %q", key, val)
				}
			}
		case "Groups":
			st.groups = st.groups[:0]
			for _, g := range f {
				n, err := strconv.Atoi(g)
				if err != nil {
					return nil, fmt.Errorf("Groups: %q", val)
				}
				st.groups = append(st.groups, n)
			}
			slices.Sort(st.groups)
		case "CapInh", "CapPrm", "CapEff", "CapAmb":
			if len(f) != 1 {
				return nil, fmt.Errorf("%s: %q", key, val)
			}
			v, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q", key, val)
			}
			switch key {
			case "CapInh":
				st.capInh = v
			case "CapPrm":
				st.capPrm = v
			case "CapEff":
				st.capEff = v
			default:
				st.capAmb = v
			}
		default:
			continue
		}
		seen[key] = true
	}
	for _, k := range []string{"Uid", "Gid", "Groups", "CapPrm", "CapEff"} {
		if !seen[k] {
			return nil, fmt.Errorf("no %s line", k)
		}
	}
	return st, nil
}

// check compares a thread's status with the credentials it should have.
func (st *procStatus) check(c *Credentials) error {
	for i := range st.uid {
		if st.uid[i] != c.UID {
			return fmt.Errorf("uids (real, effective, saved, fs) %v, want %d", st.uid, c.UID)
		}
		if st.gid[i] != c.GID {
			return fmt.Errorf("gids (real, effective, saved, fs) %v, want %d", st.gid, c.GID)
		}
	}
	want := slices.Clone(c.Groups)
	slices.Sort(want)
	if !slices.Equal(st.groups, want) {
		return fmt.Errorf("supplementary groups %v, want %s", st.groups, c.groupList())
	}
	if st.capPrm|st.capEff|st.capAmb != 0 {
		return fmt.Errorf("capabilities left: permitted %#x, effective %#x, ambient %#x", st.capPrm, st.capEff, st.capAmb)
	}
	return nil
}
