package daemon

import (
	"math"
	"time"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/config"
)

// optDuration maps an optional setting whose explicit 0 means "none" to
// the IKE convention: unset is 0 (the default), none is negative.
func optDuration(d *config.Duration) time.Duration {
	switch {
	case d == nil:
		return 0
	case *d == 0:
		return -1
	}
	return time.Duration(*d)
}

// keyingTries maps swanctl's keyingtries (unset: 1; 0: until it works)
// to IKE's (0 or 1: once; negative: until it works).
func keyingTries(v *int) int {
	switch {
	case v == nil:
		return 1
	case *v == 0:
		return -1
	}
	return *v
}

// optCount is optDuration for byte and packet counts.
func optCount(v *uint64) int64 {
	switch {
	case v == nil:
		return 0
	case *v == 0:
		return -1
	}
	return clampCount(*v)
}

func clampCount(v uint64) int64 { return int64(min(v, math.MaxInt64)) }

// childVolumes copies a child's byte and packet limits.
func childVolumes(oc *ike.Child, ch *config.Child) {
	oc.RekeyBytes, oc.LifeBytes, oc.RandBytes = clampCount(ch.RekeyBytes), clampCount(ch.LifeBytes), optCount(ch.RandBytes)
	oc.RekeyPackets, oc.LifePackets, oc.RandPackets = clampCount(ch.RekeyPackets), clampCount(ch.LifePackets), optCount(ch.RandPackets)
}
