//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package bench

import (
	"syscall"
	"time"
)

// cpuClock reads the process's CPU time (user and system, all threads).
// It keeps its buffer so that reading does not allocate.
type cpuClock struct{ ru syscall.Rusage }

// now returns the CPU time used so far and whether it is known.
func (c *cpuClock) now() (time.Duration, bool) {
	if syscall.Getrusage(syscall.RUSAGE_SELF, &c.ru) != nil {
		return 0, false
	}
	return time.Duration(c.ru.Utime.Nano() + c.ru.Stime.Nano()), true
}
