package config

import (
	"fmt"
	"time"
)

// lifetimeError is a lifetime setting that contradicts another: key is
// the setting to change.
type lifetimeError struct{ key, msg string }

// checkLifetimes checks that each rekey limit of the child is below its
// hard limit and its jitter below the rekey limit, as strongSwan needs
// them (a missing life_* is the rekey limit plus a tenth).
func (ch *Child) checkLifetimes() *lifetimeError {
	dur := func(v uint64) string { return time.Duration(v).String() }
	num := func(v uint64) string { return fmt.Sprint(v) }
	opt := func(p *uint64) uint64 {
		if p == nil {
			return 0
		}
		return *p
	}
	var randTime *uint64
	if ch.RandTime != nil {
		v := uint64(*ch.RandTime)
		randTime = &v
	}
	for _, l := range []struct {
		what              string
		rekey, life, rand uint64
		show              func(uint64) string
	}{
		{"time", uint64(ch.RekeyTime), uint64(ch.LifeTime), opt(randTime), dur},
		{"bytes", ch.RekeyBytes, ch.LifeBytes, opt(ch.RandBytes), num},
		{"packets", ch.RekeyPackets, ch.LifePackets, opt(ch.RandPackets), num},
	} {
		if l.rekey > 0 && l.life > 0 && l.rekey >= l.life {
			return &lifetimeError{"life_" + l.what, fmt.Sprintf("want more than rekey_%s (%s), got %s", l.what, l.show(l.rekey), l.show(l.life))}
		}
		if l.rekey > 0 && l.rand >= l.rekey {
			return &lifetimeError{"rand_" + l.what, fmt.Sprintf("want less than rekey_%s (%s), got %s", l.what, l.show(l.rekey), l.show(l.rand))}
		}
	}
	return nil
}
