package sad

import (
	"errors"
	"fmt"
	"time"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/replay"
)

// Proto is the IPsec protocol of an SA, by its IP protocol number.
type Proto uint8

// IPsec protocols.
const (
	ESP Proto = 50
	AH  Proto = 51
)

// String returns "esp" or "ah".
func (p Proto) String() string {
	switch p {
	case ESP:
		return "esp"
	case AH:
		return "ah"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Dir is the direction of a unidirectional SA.
type Dir uint8

// Directions.
const (
	Inbound  Dir = iota + 1 // packets we receive and open
	Outbound                // packets we protect and send
)

// String returns "in" or "out".
func (d Dir) String() string {
	switch d {
	case Inbound:
		return "in"
	case Outbound:
		return "out"
	}
	return fmt.Sprintf("dir(%d)", uint8(d))
}

// Mode is the IPsec mode of an SA.
type Mode uint8

// IPsec modes (same values as esp.Mode).
const (
	Tunnel    Mode = iota + 1 // the whole inner IP packet is protected
	Transport                 // only the transport payload
)

// String returns "tunnel" or "transport".
func (m Mode) String() string {
	switch m {
	case Tunnel:
		return "tunnel"
	case Transport:
		return "transport"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ChildID names the IKE child SA (or manual child) that owns an SA, like
// the reqid of Linux XFRM. It stays the same across rekeys; SPD PROTECT
// policies carry it, and the SAD maps it to the child's current outbound SA.
// Zero means none.
type ChildID uint32

// DropReason is why a packet handled by an SA was dropped.
type DropReason uint8

// Drop reasons, each counted per SA.
const (
	DropBadICV     DropReason = iota // integrity check failed
	DropReplay                       // sequence number already seen
	DropTooOld                       // sequence number left of the replay window
	DropPolicy                       // decrypted packet does not match the SA's selectors
	DropBadLength                    // truncated packet or lengths that do not add up
	DropBadPadding                   // padding not 1, 2, 3, ...
	DropExpired                      // SA past its hard lifetime or deleted
	DropOther                        // anything else
	NumDropReasons                   // the number of drop reasons
)

var dropNames = [NumDropReasons]string{"bad-icv", "replay", "too-old", "policy", "bad-length", "bad-padding", "expired", "other"}

// String returns a short name such as "bad-icv".
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return fmt.Sprintf("drop(%d)", uint8(r))
}

// DropReasonOf maps an error from the esp engine (or the replay window) to
// its drop reason; unknown errors map to DropOther.
func DropReasonOf(err error) DropReason {
	switch {
	case errors.Is(err, esp.ErrAuth):
		return DropBadICV
	case errors.Is(err, esp.ErrReplay), errors.Is(err, replay.ErrReplay):
		return DropReplay
	case errors.Is(err, esp.ErrTooOld), errors.Is(err, replay.ErrTooOld):
		return DropTooOld
	case errors.Is(err, esp.ErrTruncated), errors.Is(err, esp.ErrBadLength):
		return DropBadLength
	case errors.Is(err, esp.ErrBadPadding):
		return DropBadPadding
	}
	return DropOther
}

// EventKind is the kind of a lifetime event.
type EventKind uint8

// Lifetime events.
const (
	SoftExpire EventKind = iota + 1 // soft limit reached: rekey
	HardExpire                      // hard limit reached: the SA is removed
	Idle                            // no traffic for Lifetime.Idle: check liveness (DPD)
)

// String returns "soft-expire", "hard-expire" or "idle".
func (k EventKind) String() string {
	switch k {
	case SoftExpire:
		return "soft-expire"
	case HardExpire:
		return "hard-expire"
	case Idle:
		return "idle"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Reason says which limit raised an event.
type Reason uint8

// Event reasons.
const (
	ReasonTime    Reason = iota + 1 // the time limit
	ReasonBytes                     // the byte limit
	ReasonPackets                   // the packet limit
	ReasonIdle                      // the idle time
)

// String returns "time", "bytes", "packets" or "idle".
func (r Reason) String() string {
	switch r {
	case ReasonTime:
		return "time"
	case ReasonBytes:
		return "bytes"
	case ReasonPackets:
		return "packets"
	case ReasonIdle:
		return "idle"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Event reports a lifetime event of one SA to the consumer (IKE).
type Event struct {
	Kind   EventKind
	Reason Reason
	Proto  Proto
	SPI    uint32
	Dir    Dir
	Child  ChildID
	SA     *SA // the SA itself (it may already be removed), for Delete or Snapshot
}

// String describes the event for logs.
func (e Event) String() string {
	return fmt.Sprintf("%s %s %s spi %#08x child %d (%s)", e.Kind, e.Proto, e.Dir, e.SPI, e.Child, e.Reason)
}

// Limits bounds an SA's life by time since it was added, bytes and packets
// counted; a zero field means no limit.
type Limits struct {
	Time    time.Duration
	Bytes   uint64
	Packets uint64
}

// Lifetime holds an SA's limits, as in strongSwan: reaching Soft raises
// SoftExpire (rekey), reaching Hard raises HardExpire and removes the SA.
// Idle, if set, raises Idle when no packet was counted for that long.
type Lifetime struct {
	Soft, Hard Limits
	Idle       time.Duration
}
