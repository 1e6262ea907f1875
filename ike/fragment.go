package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/message"
)

// IKE fragmentation (RFC 7383): negotiated in IKE_SA_INIT with
// IKEV2_FRAGMENTATION_SUPPORTED, it splits encrypted messages (IKE_AUTH and
// everything after it, IKE_INTERMEDIATE included) that exceed the
// connection's fragment size into Encrypted Fragment (SKF) payloads, each
// protected on its own, and reassembles the peer's.

// Fragmentation modes of a connection, as swanctl's fragmentation option.
const (
	// FragmentationYes announces support and fragments oversized
	// messages when the peer supports it too (the default).
	FragmentationYes = "yes"
	// FragmentationAccept announces support, so that the peer may send
	// fragments, but sends none.
	FragmentationAccept = "accept"
	// FragmentationForce is FragmentationYes: in IKEv2 nothing may be
	// fragmented before the peer announced support (strongSwan's force
	// only changes IKEv1).
	FragmentationForce = "force"
	// FragmentationNo announces nothing: neither side sends fragments, and
	// fragments received are dropped.
	FragmentationNo = "no"
)

// Fragment sizes and reassembly bounds.
const (
	// DefaultFragmentSize is the largest IP datagram (IP and UDP headers
	// included) that carries an IKE fragment, strongSwan's
	// charon.fragment_size default: the IPv6 minimum MTU.
	DefaultFragmentSize = 1280
	// MinFragmentSize and MaxFragmentSize bound a configured size.
	MinFragmentSize = 256
	MaxFragmentSize = 65535
	// MaxFragments bounds the Total Fragments of a message we reassemble.
	MaxFragments = 64
	// MaxReassembledSize bounds the decrypted payloads of a reassembled
	// message, in octets.
	MaxReassembledSize = 64 << 10
	// DefaultFragmentTimeout is how long an incomplete set of fragments
	// is kept after its first fragment arrived.
	DefaultFragmentTimeout = 30 * time.Second
)

// fragMemoryLimit bounds the octets held in all of a Manager's incomplete
// fragment sets together: IKE SAs still in IKE_AUTH (whose peers are not
// authenticated yet) could otherwise hold MaxReassembledSize each. A
// variable for tests.
var fragMemoryLimit = 8 << 20

// fragLogEvery limits the log lines about rejected fragments: one per
// interval, with the count of those not logged.
const fragLogEvery = 10 * time.Second

// fragState is an IKE SA's fragmentation: what was negotiated and the
// messages being reassembled.
type fragState struct {
	local bool // we sent IKEV2_FRAGMENTATION_SUPPORTED
	peer  bool // the peer sent it
	// sets[0] reassembles the peer's request, sets[1] the response to ours.
	sets [2]*fragSet
}

// fragSet is one message being reassembled.
type fragSet struct {
	id       uint32
	exchange message.ExchangeType
	total    uint16
	parts    []*ikecrypto.Fragment // by Fragment Number - 1; nil: missing
	have     int
	size     int
	timer    Timer
}

// fragVerdict is what adding a fragment to a set did.
type fragVerdict int

const (
	fragStored    fragVerdict = iota // kept; the set is incomplete
	fragComplete                     // kept; the set is complete
	fragDuplicate                    // a fragment with its number is already kept
	fragStale                        // fewer Total Fragments than the set: dropped
	fragRestart                      // more Total Fragments: the set was emptied and restarted with it
	fragTooMany                      // Total Fragments above MaxFragments
	fragTooBig                       // the message would exceed MaxReassembledSize: the set is emptied
	fragNoMemory                     // all sets together would exceed fragMemoryLimit
)

var fragVerdictNames = [...]string{"stored", "complete", "duplicate", "stale Total Fragments", "restart",
	"too many fragments", "reassembled message too large", "reassembly memory of all IKE SAs exhausted"}

func (v fragVerdict) String() string { return fragVerdictNames[v] }

// newFragSet starts reassembling message id.
func newFragSet(id uint32, ex message.ExchangeType) *fragSet {
	return &fragSet{id: id, exchange: ex}
}

// reset empties the set for a message of total fragments.
func (s *fragSet) reset(total uint16) {
	for _, p := range s.parts {
		if p != nil {
			clear(p.Data)
		}
	}
	s.total, s.parts, s.have, s.size = total, make([]*ikecrypto.Fragment, total), 0, 0
}

// add adds an authenticated fragment (RFC 7383 section 2.6): duplicates
// are ignored; a fragment announcing more Total Fragments than the set
// (the sender lowered its fragment size) restarts the set, one announcing
// fewer is dropped.
func (s *fragSet) add(f *ikecrypto.Fragment) fragVerdict {
	if f.Total == 0 || f.Number == 0 || f.Number > f.Total {
		return fragStale // the parser rejects these; never store them
	}
	if f.Total > MaxFragments {
		return fragTooMany
	}
	verdict := fragStored
	switch {
	case s.total == 0:
		s.reset(f.Total)
	case f.Total < s.total:
		return fragStale
	case f.Total > s.total:
		s.reset(f.Total)
		verdict = fragRestart
	case s.parts[f.Number-1] != nil:
		return fragDuplicate
	}
	if s.size+len(f.Data) > MaxReassembledSize {
		s.reset(s.total)
		return fragTooBig
	}
	if f.Number != 1 {
		f.NextPayload = message.PayloadNone // meaningful in the first only
	}
	s.parts[f.Number-1] = f
	s.have++
	s.size += len(f.Data)
	if s.have == int(s.total) {
		return fragComplete
	}
	return verdict
}

// payloads decodes the payload chain of a complete set.
func (s *fragSet) payloads() ([]message.Payload, error) {
	return ikecrypto.Reassemble(s.parts)
}

// fragConns returns the connections whose fragmentation settings apply:
// the SA's, or a responder's candidates before IKE_AUTH picks one (its
// IKE_INTERMEDIATE answers, e.g. with an ML-KEM-1024 ciphertext).
func (sa *ikeSA) fragConns() []*Connection {
	if sa.conn != nil {
		return []*Connection{sa.conn}
	}
	return sa.cands
}

// fragSend reports whether the SA sends oversized messages as fragments:
// both ends announced support and our connection (each candidate, before
// it is known) sends them.
func (sa *ikeSA) fragSend() bool {
	cs := sa.fragConns()
	if !sa.frag.local || !sa.frag.peer || len(cs) == 0 {
		return false
	}
	for _, c := range cs {
		if c.Fragmentation != FragmentationYes && c.Fragmentation != FragmentationForce {
			return false
		}
	}
	return true
}

// fragMaxLen returns the largest IKE message (what the UDP payload carries
// after the non-ESP marker) that fits the connection's fragment size (the
// smallest of the candidates'), which counts the IP and UDP headers as
// strongSwan's fragment_size does.
func (sa *ikeSA) fragMaxLen() int {
	n := 0
	for _, c := range sa.fragConns() {
		size := c.FragmentSize
		if size == 0 {
			size = DefaultFragmentSize
		}
		if n == 0 || size < n {
			n = size
		}
	}
	n -= 8 // UDP header
	if sa.remote.Addr().Is4() {
		n -= 20
	} else {
		n -= 40
	}
	if sa.natt {
		n -= 4 // non-ESP marker
	}
	return n
}

// fragment returns the datagrams that carry msg: wire, its encoding as one
// Encrypted payload, or fragments of it when it is too large and
// fragmentation is on (never for IKE_SA_INIT).
func (sa *ikeSA) fragment(msg *message.Message, wire []byte) ([][]byte, error) {
	if msg.Exchange == message.IKESAInit || !sa.fragSend() {
		return [][]byte{wire}, nil
	}
	limit := sa.fragMaxLen()
	if len(wire) <= limit {
		return [][]byte{wire}, nil
	}
	frags, err := ikecrypto.EncryptFragments(msg, sa.out, limit)
	if err != nil {
		return nil, fmt.Errorf("ike: fragmenting %v: %w", msg.Exchange, err)
	}
	sa.m.stats.FragmentsSent += uint64(len(frags))
	sa.m.log.Debug("splitting IKE message into fragments", sa.logFields(zap.Stringer("exchange", msg.Exchange),
		zap.Uint32("msgid", msg.MessageID), zap.Int("bytes", len(wire)), zap.Int("fragments", len(frags)), zap.Int("max", limit))...)
	return frags, nil
}

// addFragment authenticates and decrypts a message carrying an Encrypted
// Fragment payload, whose header passed the window checks, and adds it to
// its set. Once the set is complete it returns the reassembled message
// (complete true, authentic true), or the syntax error of its payloads. A
// rejected fragment is counted and logged here; the caller does nothing
// more (complete false).
func (sa *ikeSA) addFragment(b []byte, h *message.Header, from netip.AddrPort) (msg *message.Message, authentic, complete bool, err error) {
	m := sa.m
	if !sa.frag.local {
		sa.rejectFragment(from, h, "fragmentation is not enabled (we did not announce IKEV2_FRAGMENTATION_SUPPORTED)", nil)
		return nil, false, false, nil
	}
	if h.Exchange == message.IKESAInit || sa.in == nil {
		sa.rejectFragment(from, h, "fragment before keys exist", nil)
		return nil, false, false, nil
	}
	hdr, f, err := ikecrypto.DecryptFragment(b, sa.in)
	if err != nil {
		sa.rejectFragment(from, h, "fragment not authentic or malformed", err)
		return nil, false, false, nil
	}
	m.stats.FragmentsReceived++
	slot := 0
	if hdr.IsResponse() {
		slot = 1
	}
	s := sa.frag.sets[slot]
	if s != nil && (s.id != hdr.MessageID || s.exchange != hdr.Exchange) {
		sa.dropFragSet(slot) // the window moved on
		s = nil
	}
	if s == nil {
		s = newFragSet(hdr.MessageID, hdr.Exchange)
		sa.frag.sets[slot] = s
		s.timer = m.after(sa.m.opts.FragmentTimeout, func() {
			if sa.frag.sets[slot] == s {
				sa.rejectFragment(sa.remote, h, "incomplete fragmented message timed out",
					fmt.Errorf("%d of %d fragments after %v", s.have, s.total, sa.m.opts.FragmentTimeout))
				sa.dropFragSet(slot)
			}
		})
	}
	before := s.size
	v := fragNoMemory
	if m.fragBytes+len(f.Data) <= fragMemoryLimit {
		v = s.add(f)
	}
	m.fragBytes += s.size - before
	switch v {
	case fragStored, fragRestart:
		m.log.Debug("received fragment, waiting for the rest", sa.logFields(zap.Stringer("exchange", h.Exchange),
			zap.Uint32("msgid", h.MessageID), zap.Uint16("fragment", f.Number), zap.Uint16("total", f.Total), zap.Stringer("verdict", v))...)
		return nil, false, false, nil
	case fragComplete:
	case fragDuplicate:
		m.log.Debug("duplicate fragment ignored", sa.logFields(zap.Uint32("msgid", h.MessageID), zap.Uint16("fragment", f.Number))...)
		return nil, false, false, nil
	default:
		sa.rejectFragment(from, h, "fragment rejected: "+v.String(), fmt.Errorf("fragment %d of %d", f.Number, f.Total))
		if v == fragTooMany || v == fragTooBig || v == fragNoMemory {
			sa.dropFragSet(slot)
		}
		return nil, false, false, nil
	}
	ps, err := s.payloads()
	n, size := s.total, s.size
	sa.dropFragSet(slot)
	if err != nil {
		if errors.Is(err, ikecrypto.ErrFragments) {
			sa.rejectFragment(from, h, "fragments do not form a message", err)
			return nil, false, false, nil
		}
		return nil, true, true, err
	}
	m.stats.Reassembled++
	m.log.Debug("reassembled fragmented IKE message", sa.logFields(zap.Stringer("exchange", h.Exchange),
		zap.Uint32("msgid", h.MessageID), zap.Uint16("fragments", n), zap.Int("bytes", size))...)
	hdr.Payloads = ps
	return hdr, true, true, nil
}

// retransmittedFragment checks a fragment of a request we already answered:
// it reports whether it is authentic and the first fragment, the one that
// makes us resend our response (RFC 7383 section 2.6.1), so that a
// retransmitted request of n fragments is answered once.
func (sa *ikeSA) retransmittedFragment(b []byte, h *message.Header, from netip.AddrPort) bool {
	if !sa.frag.local || sa.in == nil {
		sa.rejectFragment(from, h, "fragmentation is not enabled (we did not announce IKEV2_FRAGMENTATION_SUPPORTED)", nil)
		return false
	}
	_, f, err := ikecrypto.DecryptFragment(b, sa.in)
	if err != nil {
		sa.rejectFragment(from, h, "fragment of a retransmitted request not authentic or malformed", err)
		return false
	}
	sa.m.stats.FragmentsReceived++
	clear(f.Data)
	return f.Number == 1
}

// dropFragSet forgets a set being reassembled.
func (sa *ikeSA) dropFragSet(slot int) {
	s := sa.frag.sets[slot]
	if s == nil {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	sa.m.fragBytes -= s.size
	s.reset(0)
	sa.frag.sets[slot] = nil
}

// dropFragments forgets all sets being reassembled (the SA goes away).
func (sa *ikeSA) dropFragments() {
	for i := range sa.frag.sets {
		sa.dropFragSet(i)
	}
}

// rejectFragment counts a dropped fragment and logs it, at most once per
// fragLogEvery: fragments come in bursts.
func (sa *ikeSA) rejectFragment(from netip.AddrPort, h *message.Header, why string, err error) {
	m := sa.m
	m.stats.FragmentsRejected++
	m.stats.Dropped++
	now := m.clock.Now()
	if !m.fragLogAt.IsZero() && now.Sub(m.fragLogAt) < fragLogEvery {
		m.fragLogMuted++
		return
	}
	m.fragLogAt = now
	muted := m.fragLogMuted
	m.fragLogMuted = 0
	sa.warn("IKE fragment dropped: "+why, zap.Stringer("from", from), zap.Stringer("exchange", h.Exchange),
		zap.Uint32("msgid", h.MessageID), zap.Int("not_logged_before", muted), zap.Error(err))
}

// announceFragmentation reports whether any of conns accepts fragments.
func announceFragmentation(conns ...*Connection) bool {
	for _, c := range conns {
		if c.Fragmentation != FragmentationNo {
			return true
		}
	}
	return false
}

// prepareFragmentation checks and defaults a connection's fragmentation
// settings.
func (c *Connection) prepareFragmentation() error {
	switch c.Fragmentation {
	case "":
		c.Fragmentation = FragmentationYes
	case FragmentationYes, FragmentationAccept, FragmentationForce, FragmentationNo:
	default:
		return fmt.Errorf("fragmentation %q: want yes, accept, force or no", c.Fragmentation)
	}
	if c.FragmentSize != 0 && (c.FragmentSize < MinFragmentSize || c.FragmentSize > MaxFragmentSize) {
		return fmt.Errorf("fragment_size %d: want %d to %d octets, or 0 for %d", c.FragmentSize, MinFragmentSize, MaxFragmentSize, DefaultFragmentSize)
	}
	return nil
}
