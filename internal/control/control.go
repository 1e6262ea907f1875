// Package control is the daemon's control interface: an HTTP+JSON server on
// a Unix socket that only its owner (and root) may use, the client that
// `goipsec status`, `list-sas`, `initiate`, `terminate`, `rekey` and
// `reload` use, and the JSON types they exchange.
//
// The daemon implements Backend; Listen and Server.Serve publish it.
package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/sad"
)

// Backend is what the daemon offers to the control socket and the metrics.
// Its methods are called concurrently, from the server's goroutines and at
// each metrics scrape, and must not block the packet path.
type Backend interface {
	// Status returns the daemon's state and dataplane counters.
	Status() Status
	// ListSAs returns the installed IPsec SAs, ordered by connection,
	// child, direction and SPI.
	ListSAs() []SA
	// Initiate brings up the named connection (or child).
	Initiate(ctx context.Context, name string) error
	// Terminate takes down the named connection (or child).
	Terminate(ctx context.Context, name string) error
	// Rekey rekeys the named connection (or child).
	Rekey(ctx context.Context, name string) error
	// Reload rereads the configuration and applies what changed.
	Reload(ctx context.Context) error
}

// Errors a Backend wraps (with %w) so that the server answers with the right
// HTTP status; any other error is a 500.
var (
	// ErrNotFound: no connection or child by that name (404).
	ErrNotFound = errors.New("not found")
	// ErrNotImplemented: the daemon cannot do this yet, e.g. initiate
	// without IKE (501).
	ErrNotImplemented = errors.New("not implemented")
	// ErrConflict: the command conflicts with the current state, e.g.
	// terminating what is not up (409).
	ErrConflict = errors.New("conflict")
)

// Status is the daemon's state as `goipsec status` shows it.
type Status struct {
	Version string    `json:"version"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// UptimeSeconds is filled in by the server from Started when zero.
	UptimeSeconds int64  `json:"uptime_seconds"`
	Listen        string `json:"listen"`             // the UDP address for IKE and ESP
	TunMode       string `json:"tun_mode"`           // kernel | netstack
	TunName       string `json:"tun_name,omitempty"` // the TUN device (kernel mode)
	Metrics       string `json:"metrics,omitempty"`  // the Prometheus address, if on
	// Connections and Children count the configured ones.
	Connections int `json:"connections"`
	Children    int `json:"children"`
	// SAsIn and SAsOut count the installed SAs by direction.
	SAsIn     int      `json:"sas_in"`
	SAsOut    int      `json:"sas_out"`
	Dataplane Counters `json:"dataplane"`
}

// Counters are the dataplane's own counters (dataplane.Counters as plain
// numbers); per-SA counters are in SA.
type Counters struct {
	CleartextPackets uint64 `json:"cleartext_packets"` // read from the TUN device or netstack
	CleartextBytes   uint64 `json:"cleartext_bytes"`
	SentPackets      uint64 `json:"sent_packets"` // ESP datagrams sent
	SentBytes        uint64 `json:"sent_bytes"`
	ReceivedPackets  uint64 `json:"received_packets"` // UDP datagrams received
	ReceivedBytes    uint64 `json:"received_bytes"`
	Delivered        uint64 `json:"delivered"`     // decrypted packets written to the cleartext side
	KeepalivesRx     uint64 `json:"keepalives_rx"` // NAT-T keepalives received
	KeepalivesTx     uint64 `json:"keepalives_tx"` // NAT-T keepalives sent
	IKE              uint64 `json:"ike"`           // IKE messages handed to the key manager
	// Drops, by reason.
	NoSA       uint64 `json:"no_sa"`       // PROTECT policy without an outbound SA
	Discarded  uint64 `json:"discarded"`   // DISCARD policy or the default
	Bypassed   uint64 `json:"bypassed"`    // BYPASS policy (there is no clear path)
	BadPacket  uint64 `json:"bad_packet"`  // cleartext packets that do not parse
	SealErrors uint64 `json:"seal_error"`  // sealing failed
	UnknownSPI uint64 `json:"unknown_spi"` // ESP for an SPI without SA
	Invalid    uint64 `json:"invalid"`     // neither ESP, IKE nor keepalive
	InboundSA  uint64 `json:"inbound_sa"`  // dropped by their inbound SA (see SA.Drops)
	Dummy      uint64 `json:"dummy"`       // dummy ESP packets (next header 59)
	SendErrors uint64 `json:"send_errors"`
	RecvErrors uint64 `json:"receive_errors"`
}

// CountersFrom copies the dataplane engine's counters.
func CountersFrom(c *dataplane.Counters) Counters {
	return Counters{
		CleartextPackets: c.TunPackets.Load(),
		CleartextBytes:   c.TunBytes.Load(),
		SentPackets:      c.SentPackets.Load(),
		SentBytes:        c.SentBytes.Load(),
		ReceivedPackets:  c.RecvPackets.Load(),
		ReceivedBytes:    c.RecvBytes.Load(),
		Delivered:        c.Delivered.Load(),
		KeepalivesRx:     c.Keepalives.Load(),
		KeepalivesTx:     c.KeepalivesSent.Load(),
		IKE:              c.IKE.Load(),
		NoSA:             c.NoSA.Load(),
		Discarded:        c.Discarded.Load(),
		Bypassed:         c.Bypassed.Load(),
		BadPacket:        c.BadPacket.Load(),
		SealErrors:       c.SealErrors.Load(),
		UnknownSPI:       c.UnknownSPI.Load(),
		Invalid:          c.Invalid.Load(),
		InboundSA:        c.InboundDrops.Load(),
		Dummy:            c.Dummy.Load(),
		SendErrors:       c.SendErrors.Load(),
		RecvErrors:       c.ReceiveErrors.Load(),
	}
}

// NamedCount is a counter with its name.
type NamedCount struct {
	Name  string
	Value uint64
}

// Drops returns the dataplane's drop counters by reason name (no_sa,
// discarded, ...), in a fixed order.
func (c Counters) Drops() []NamedCount {
	return []NamedCount{
		{"no_sa", c.NoSA},
		{"discarded", c.Discarded},
		{"bypassed", c.Bypassed},
		{"bad_packet", c.BadPacket},
		{"seal_error", c.SealErrors},
		{"unknown_spi", c.UnknownSPI},
		{"invalid", c.Invalid},
		{"inbound_sa", c.InboundSA},
		{"dummy", c.Dummy},
	}
}

// SA states.
const (
	StateInstalled = "installed" // in use
	StateRekeyDue  = "rekey-due" // past its soft lifetime: to be rekeyed
	StateExpired   = "expired"   // past its hard lifetime
	StateRemoved   = "removed"   // no longer in the SAD
)

// SA is one unidirectional IPsec SA (ESP or AH) of a child.
type SA struct {
	Connection string `json:"connection"`
	Child      string `json:"child"`
	ChildID    uint32 `json:"child_id"` // like XFRM's reqid
	Proto      string `json:"proto"`    // esp | ah
	Direction  string `json:"direction"`
	SPI        string `json:"spi"`       // "0x" and 8 hex digits
	Mode       string `json:"mode"`      // tunnel | transport
	Transform  string `json:"transform"` // e.g. aes128gcm16, aes256-sha256
	Peer       string `json:"peer"`      // the peer's outer address:port
	State      string `json:"state"`     // one of the State constants
	Idle       bool   `json:"idle,omitempty"`
	Packets    uint64 `json:"packets"`
	Bytes      uint64 `json:"bytes"`
	// Drops counts the packets this SA refused, by reason (sad.DropReason
	// names: bad-icv, replay, too-old, ...), all reasons present.
	Drops      map[string]uint64 `json:"drops"`
	Created    time.Time         `json:"created"`
	AgeSeconds int64             `json:"age_seconds"`
	// RekeyInSeconds and ExpiresInSeconds are the time left to the soft and
	// hard time limits, when the SA has them (negative: overdue).
	RekeyInSeconds   *int64 `json:"rekey_in_seconds,omitempty"`
	ExpiresInSeconds *int64 `json:"expires_in_seconds,omitempty"`
}

// SAList is the answer to GET /v1/sas.
type SAList struct {
	// IKESAs are the IKE SAs (empty without IKE), oldest first.
	IKESAs []IKESA `json:"ike_sas"`
	SAs    []SA    `json:"sas"`
}

// IKESA is one IKE SA as goipsec list-sas shows it.
type IKESA struct {
	Connection string `json:"connection"` // "" while a responder SA has not authenticated
	// Serial numbers the daemon's IKE SAs (#n), in order of creation.
	Serial    uint64 `json:"serial"`
	State     string `json:"state"` // ESTABLISHED, CONNECTING, AUTHENTICATING, HALF_OPEN, DELETING
	Initiator bool   `json:"initiator"`
	// SPIi and SPIr are the initiator's and responder's SPIs, 16 hex
	// digits each.
	SPIi     string `json:"spi_i"`
	SPIr     string `json:"spi_r"`
	Peer     string `json:"peer"` // the peer's address:port
	LocalID  string `json:"local_id,omitempty"`
	RemoteID string `json:"remote_id,omitempty"`
	// Proposal is the negotiated IKE proposal, strongSwan-style.
	Proposal    string    `json:"proposal,omitempty"`
	Established time.Time `json:"established,omitzero"`
	AgeSeconds  int64     `json:"age_seconds"` // since established
	// RekeyInSeconds, ReauthInSeconds and ExpiresInSeconds are the time
	// left to rekey_time, reauth_time and the IKE SA's hard end (absent
	// when not scheduled; negative when overdue).
	RekeyInSeconds   *int64 `json:"rekey_in_seconds,omitempty"`
	ReauthInSeconds  *int64 `json:"reauth_in_seconds,omitempty"`
	ExpiresInSeconds *int64 `json:"expires_in_seconds,omitempty"`
	// Children name its Child SAs (connection.child); their SAs are in
	// SAList.SAs.
	Children []string `json:"children"`
}

// IKELister is a Backend that also lists IKE SAs.
type IKELister interface {
	ListIKESAs() []IKESA
}

// FormatSPI formats an SPI as the SA's SPI field has it.
func FormatSPI(spi uint32) string { return fmt.Sprintf("0x%08x", spi) }

// SAFromSnapshot converts a SAD snapshot of an SA of the named connection
// and child, with ages and times left computed at now.
func SAFromSnapshot(s sad.Snapshot, connection, child string, now time.Time) SA {
	sa := SA{
		Connection: connection,
		Child:      child,
		ChildID:    uint32(s.Child),
		Proto:      s.Proto.String(),
		Direction:  s.Dir.String(),
		SPI:        FormatSPI(s.SPI),
		Mode:       s.Mode.String(),
		Transform:  s.Transform,
		Packets:    s.Packets,
		Bytes:      s.Bytes,
		Created:    s.Created,
		AgeSeconds: seconds(now.Sub(s.Created)),
		Idle:       s.Idle,
		Drops:      make(map[string]uint64, sad.NumDropReasons),
	}
	if s.Peer.IsValid() {
		sa.Peer = s.Peer.String()
	}
	switch {
	case s.Removed:
		sa.State = StateRemoved
	case s.HardExpired:
		sa.State = StateExpired
	case s.SoftExpired:
		sa.State = StateRekeyDue
	default:
		sa.State = StateInstalled
	}
	for r := sad.DropReason(0); r < sad.NumDropReasons; r++ {
		sa.Drops[r.String()] = s.Drops[r]
	}
	if t := s.Lifetime.Soft.Time; t > 0 {
		v := seconds(s.Created.Add(t).Sub(now))
		sa.RekeyInSeconds = &v
	}
	if t := s.Lifetime.Hard.Time; t > 0 {
		v := seconds(s.Created.Add(t).Sub(now))
		sa.ExpiresInSeconds = &v
	}
	return sa
}

// seconds is d in whole seconds, rounded down.
func seconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d < 0 && d%time.Second != 0 {
		s--
	}
	return s
}
