package ike

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
)

// saState is the state of an IKE SA.
type saState uint8

const (
	stateInitSent    saState = iota + 1 // initiator: IKE_SA_INIT request out
	stateAuthSent                       // initiator: IKE_AUTH request out
	stateInitDone                       // responder: IKE_SA_INIT answered, IKE_AUTH awaited
	stateEstablished                    // authenticated both ways
	stateDeleting                       // our DELETE of the IKE SA is out
	stateDead                           // gone; only stale references remain
)

var stateNames = map[saState]string{
	stateInitSent: "CONNECTING", stateAuthSent: "AUTHENTICATING", stateInitDone: "HALF_OPEN",
	stateEstablished: "ESTABLISHED", stateDeleting: "DELETING", stateDead: "DESTROYED",
}

func (s saState) String() string { return stateNames[s] }

// ikeSA is one IKE SA, in either role.
type ikeSA struct {
	m         *Manager
	serial    uint64
	conn      *Connection   // nil for a responder until IKE_AUTH picks one
	cands     []*Connection // responder: connections the peer's address allows
	initiator bool          // we are the original initiator
	spiI      uint64
	spiR      uint64
	state     saState
	remote    netip.AddrPort // where the peer is
	natt      bool           // talk through the NAT-T socket
	created   time.Time
	estab     time.Time

	// IKE_SA_INIT
	offered     []message.Proposal // initiator: what we proposed
	chosen      *message.Proposal
	suite       *proposal.IKESuite
	ke          kex.Exchange
	keMethod    kex.ID
	ni, nr      []byte
	cookie      []byte
	initReq     []byte // the IKE_SA_INIT request as sent (or received)
	initResp    []byte // the IKE_SA_INIT response as sent (or received)
	initKey     initKey
	initHashSum [32]byte // responder: SHA-256 of the IKE_SA_INIT request
	retries     int      // INVALID_KE_PAYLOAD and COOKIE retries
	natLocal    bool     // we are behind a NAT (informational)
	natRemote   bool     // the peer claims to be behind a NAT (informational)
	sigHashes   []uint16 // the peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427)

	keys        *ikecrypto.IKEKeys
	out, in     *ikecrypto.Cipher // protect what we send, open what we receive
	localID     message.Identity
	remoteID    message.Identity
	initContact bool                 // the peer sent INITIAL_CONTACT
	inter       *intermediate        // IKE_INTERMEDIATE negotiated (RFC 9242)
	authMID     uint32               // Message ID of IKE_AUTH, part of IntAuth
	followups   map[string]*followup // responder: IKE_FOLLOWUP_KE awaited (RFC 9370)
	frag        fragState

	// Our requests: window of one.
	nextReqID uint32
	pending   *request
	queued    []*request

	// The peer's requests.
	nextPeerID   uint32
	lastResp     [][]byte // datagrams: one, or the fragments
	haveLastResp bool

	children        []*childSA
	retired         []*childSA // replaced by a rekey, inbound SA kept for a grace period
	pendingChildren []*Child   // to negotiate once the SA is up
	authChild       *childNeg
	creating        map[*Child]int // CREATE_CHILD_SA exchanges in flight
	waiters         map[*Child][]chan<- error

	lastRecv      time.Time // last authenticated message from the peer
	lastInPackets uint64
	dpdTimer      Timer
	halfTimer     Timer
	rekeyTimer    Timer        // IKE SA rekey_time (or retry)
	lifeTimer     Timer        // IKE SA rekey_time + over_time
	reauthTimer   Timer        // reauth_time, or watching a reauthentication
	reauthOf      *ikeSA       // the IKE SA this one reauthenticates
	reauthTo      *ikeSA       // the IKE SA reauthenticating this one
	reauthAt      time.Time    // when reauth_time is up (kept across IKE SA rekeys)
	rekeyAt       time.Time    // when rekey_time is up (listings)
	expireAt      time.Time    // when the IKE SA is deleted unless replaced (listings)
	ikeRekey      *ikeRekeyNeg // our IKE SA rekey in flight
	rekeyedTo     *ikeSA       // the IKE SA that replaced this one
	peerRekeyed   *ikeSA       // the peer's new IKE SA while ours is in flight (collision)
}

// request is one of our requests, in flight or queued.
type request struct {
	exchange   message.ExchangeType
	id         uint32
	build      func(id uint32) ([][]byte, error) // encodes the request: one datagram, or fragments
	wire       [][]byte
	tries      int
	timer      Timer
	onResponse func(msg *message.Message, raw []byte) // nil: nothing to do; raw is nil for a reassembled message
	onTimeout  func()                                 // nil: nothing to do
}

// newSA makes an IKE SA and registers it under our SPI.
func (m *Manager) newSA(initiator bool) *ikeSA {
	m.serial++
	sa := &ikeSA{m: m, serial: m.serial, initiator: initiator, created: m.clock.Now(),
		waiters: map[*Child][]chan<- error{}, creating: map[*Child]int{}}
	spi := m.newSPI()
	if initiator {
		sa.spiI = spi
	} else {
		sa.spiR = spi
	}
	m.sas[spi] = sa
	return sa
}

func (sa *ikeSA) ourSPI() uint64 {
	if sa.initiator {
		return sa.spiI
	}
	return sa.spiR
}

func (sa *ikeSA) name() string {
	if sa.conn != nil {
		return fmt.Sprintf("%s[%d]", sa.conn.Name, sa.serial)
	}
	return fmt.Sprintf("[%d]", sa.serial)
}

// logFields are the fields every log line about the SA carries.
func (sa *ikeSA) logFields(more ...zap.Field) []zap.Field {
	f := []zap.Field{zap.String("ike_sa", sa.name()), zap.Stringer("peer", sa.remote),
		zap.String("spis", fmt.Sprintf("%016x_i %016x_r", sa.spiI, sa.spiR))}
	return append(f, more...)
}

func (sa *ikeSA) info(msg string, more ...zap.Field) { sa.m.log.Info(msg, sa.logFields(more...)...) }
func (sa *ikeSA) warn(msg string, more ...zap.Field) { sa.m.log.Warn(msg, sa.logFields(more...)...) }
func (sa *ikeSA) errorf(msg string, more ...zap.Field) {
	sa.m.log.Error(msg, sa.logFields(more...)...)
}

// after schedules f under the Manager's lock.
func (m *Manager) after(d time.Duration, f func()) Timer {
	return m.clock.AfterFunc(d, func() {
		m.lock()
		defer m.unlock()
		if !m.closed {
			f()
		}
	})
}

// flags returns the header flags of our messages.
func (sa *ikeSA) flags(response bool) message.Flags {
	var f message.Flags
	if sa.initiator {
		f |= message.FlagInitiator
	}
	if response {
		f |= message.FlagResponse
	}
	return f
}

// seal encodes an encrypted message of the SA: one datagram, or its
// fragments when it is too large and fragmentation is on.
func (sa *ikeSA) seal(ex message.ExchangeType, id uint32, response bool, ps []message.Payload) ([][]byte, error) {
	msg := &message.Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: ex, Flags: sa.flags(response), MessageID: id, Payloads: ps}
	wire, err := ikecrypto.Encrypt(msg, sa.out)
	if err != nil {
		return nil, err
	}
	return sa.fragment(msg, wire)
}

// sendRequest sends an encrypted request, or queues it behind the one in
// flight (window size 1).
func (sa *ikeSA) sendRequest(ex message.ExchangeType, ps []message.Payload, onResponse func(*message.Message, []byte), onTimeout func()) {
	req := &request{exchange: ex, onResponse: onResponse, onTimeout: onTimeout,
		build: func(id uint32) ([][]byte, error) { return sa.seal(ex, id, false, ps) }}
	sa.enqueue(req)
}

func (sa *ikeSA) enqueue(req *request) {
	if sa.pending != nil {
		sa.queued = append(sa.queued, req)
		return
	}
	sa.start(req)
}

// start sends req now.
func (sa *ikeSA) start(req *request) {
	if req.exchange != message.IKESAInit {
		req.id = sa.nextReqID
		sa.nextReqID++
	}
	wire, err := req.build(req.id)
	if err != nil {
		sa.errorf("encoding a request failed", zap.Stringer("exchange", req.exchange), zap.Error(err))
		if req.onTimeout != nil {
			req.onTimeout()
		}
		return
	}
	req.wire = wire
	sa.pending = req
	sa.m.queueAll(wire, sa.remote, sa.natt)
	sa.m.log.Debug("request sent", sa.logFields(zap.Stringer("exchange", req.exchange), zap.Uint32("msgid", req.id), zap.Int("datagrams", len(wire)))...)
	sa.armRetransmit(req)
}

// armRetransmit schedules the next retransmission of req.
func (sa *ikeSA) armRetransmit(req *request) {
	o := &sa.m.opts
	d := time.Duration(float64(o.RetransmitTimeout) * math.Pow(o.RetransmitBase, float64(req.tries)))
	req.timer = sa.m.after(d, func() { sa.retransmit(req) })
}

func (sa *ikeSA) retransmit(req *request) {
	if sa.pending != req || sa.state == stateDead {
		return
	}
	if req.tries >= sa.m.opts.RetransmitTries {
		sa.pending = nil
		sa.warn("giving up: no response to our request after all retransmissions",
			zap.Stringer("exchange", req.exchange), zap.Uint32("msgid", req.id), zap.Int("retransmits", req.tries),
			zap.String("hint", "is the peer up and reachable on its IKE port?"))
		if req.onTimeout != nil {
			req.onTimeout()
		}
		return
	}
	req.tries++
	sa.m.stats.Retransmits++
	sa.m.log.Info("retransmitting request", sa.logFields(zap.Stringer("exchange", req.exchange), zap.Uint32("msgid", req.id), zap.Int("try", req.tries))...)
	sa.m.queueAll(req.wire, sa.remote, sa.natt)
	sa.armRetransmit(req)
}

// next sends the first queued request, if the window is free.
func (sa *ikeSA) next() {
	for sa.pending == nil && len(sa.queued) > 0 && sa.state != stateDead {
		req := sa.queued[0]
		sa.queued = sa.queued[1:]
		sa.start(req)
	}
}

// respond sends (and caches for retransmitted requests) our response to
// the peer's request id.
func (sa *ikeSA) respond(ex message.ExchangeType, id uint32, ps []message.Payload) {
	wire, err := sa.seal(ex, id, true, ps)
	if err != nil {
		sa.errorf("encoding a response failed", zap.Stringer("exchange", ex), zap.Error(err))
		return
	}
	sa.lastResp, sa.haveLastResp = wire, true
	sa.nextPeerID = id + 1
	sa.m.queueAll(wire, sa.remote, sa.natt)
}

// decrypt authenticates and decrypts a message of the SA. A syntax error
// inside the authenticated plaintext comes back as *message.Error with
// authentic set; anything else means the message is to be dropped.
func (sa *ikeSA) decrypt(b []byte) (msg *message.Message, authentic bool, err error) {
	if sa.in == nil {
		return nil, false, errors.New("no keys yet")
	}
	if _, err := message.ParseMessage(b); err != nil {
		return nil, false, err
	}
	msg, err = ikecrypto.Decrypt(b, sa.in)
	var perr *message.Error
	if errors.As(err, &perr) {
		return nil, true, err
	}
	return msg, err == nil, err
}

// open decrypts a message of the SA as decrypt does, or adds the fragment
// it carries (complete false while fragments are missing).
func (sa *ikeSA) open(b []byte, h *message.Header, from netip.AddrPort) (msg *message.Message, authentic, complete bool, err error) {
	if h.NextPayload == message.PayloadSKF {
		return sa.addFragment(b, h, from)
	}
	msg, authentic, err = sa.decrypt(b)
	return msg, authentic, true, err
}

// receive handles a message for this SA (other than an IKE_SA_INIT request).
func (sa *ikeSA) receive(b []byte, h *message.Header, from netip.AddrPort, natt bool) {
	m := sa.m
	if h.IsResponse() {
		req := sa.pending
		if req == nil || h.MessageID != req.id || h.Exchange != req.exchange {
			m.drop(from, "unexpected response", fmt.Errorf("%v msgid %d", h.Exchange, h.MessageID))
			return
		}
		var msg *message.Message
		var err error
		if h.Exchange == message.IKESAInit {
			msg, err = message.ParseMessage(b)
		} else {
			var authentic, complete bool
			msg, authentic, complete, err = sa.open(b, h, from)
			if !complete {
				return
			}
			if h.NextPayload == message.PayloadSKF {
				b = nil // reassembled: no single datagram carried it
			}
			if err != nil && authentic {
				// The peer protected it, so it is the answer; it is
				// unreadable, which makes the exchange fail.
				sa.errorf("the peer's response is malformed", zap.Stringer("exchange", h.Exchange), zap.Error(err))
			}
			if err == nil {
				sa.touch(from, natt)
			}
		}
		if err != nil {
			m.drop(from, "response not readable", err)
			return
		}
		req.timer.Stop()
		sa.pending = nil
		if req.onResponse != nil {
			req.onResponse(msg, b)
		}
		sa.next()
		return
	}

	switch {
	case h.MessageID == sa.nextPeerID:
	case sa.haveLastResp && h.MessageID == sa.nextPeerID-1:
		// Answer where the retransmission came from: a NAT may have
		// moved the peer meanwhile (RFC 7296 section 2.23).
		m.log.Debug("retransmitted request: resending our response", sa.logFields(zap.Stringer("exchange", h.Exchange), zap.Uint32("msgid", h.MessageID))...)
		if h.NextPayload == message.PayloadSKF && !sa.retransmittedFragment(b, h, from) {
			return
		}
		m.queueAll(sa.lastResp, from, natt)
		return
	default:
		m.drop(from, "request outside the window", fmt.Errorf("%v msgid %d, want %d", h.Exchange, h.MessageID, sa.nextPeerID))
		return
	}
	sa.applyKeyUpdate()
	msg, authentic, complete, err := sa.open(b, h, from)
	if !complete {
		return
	}
	if err != nil {
		if !authentic {
			m.drop(from, "request not authentic", err)
			return
		}
		var perr *message.Error
		errors.As(err, &perr)
		t, data := perr.Notify()
		sa.warn("the peer's request is malformed: answering with an error", zap.Stringer("exchange", h.Exchange), zap.Stringer("notify", t), zap.Error(err))
		sa.respond(h.Exchange, h.MessageID, []message.Payload{message.NewNotify(t, data)})
		if sa.state != stateEstablished && sa.state != stateDeleting {
			sa.destroy(fmt.Errorf("malformed %v request: %w", h.Exchange, err))
		}
		return
	}
	sa.touch(from, natt)
	switch {
	case h.Exchange == message.IKEIntermediate && sa.state == stateInitDone:
		sa.handleIntermediateRequest(msg, b)
	case h.Exchange == message.IKEFollowupKE && sa.state == stateEstablished:
		sa.handleFollowupRequest(msg)
	case h.Exchange == message.IKEAuth && sa.state == stateInitDone:
		sa.handleAuthRequest(msg)
	case h.Exchange == message.Informational && (sa.state == stateEstablished || sa.state == stateDeleting):
		sa.handleInformational(msg)
	case h.Exchange == message.CreateChildSA && sa.state == stateEstablished:
		sa.handleCreateChildRequest(msg)
	case h.Exchange == message.CreateChildSA && sa.state == stateDeleting:
		sa.respond(h.Exchange, h.MessageID, []message.Payload{message.NewNotify(message.TemporaryFailure, nil)})
	default:
		sa.warn("request not allowed in this state: ignored", zap.Stringer("exchange", h.Exchange), zap.Stringer("state", sa.state))
		m.stats.Dropped++
	}
}

// touch notes an authenticated message from the peer at from, following the
// peer to a new address or port (RFC 7296 section 2.23: NAT mappings move).
func (sa *ikeSA) touch(from netip.AddrPort, natt bool) {
	sa.lastRecv = sa.m.clock.Now()
	if from == sa.remote && natt == sa.natt {
		return
	}
	switch {
	case sa.state == stateInitDone:
		// The initiator floated to the NAT-T port for IKE_AUTH.
		sa.m.log.Debug("peer switched to the NAT-T port", sa.logFields(zap.Stringer("new", from))...)
	case sa.remote.IsValid():
		sa.info("peer moved: following it", zap.Stringer("new", from), zap.Bool("natt", natt))
	}
	sa.remote, sa.natt = from, natt
	for _, c := range sa.children {
		if c.state == childInstalled {
			sa.m.inst.UpdatePeer(c.id, sa.espPeer())
		}
	}
}

// espPeer is where ESP in UDP goes: the peer's NAT-T endpoint.
func (sa *ikeSA) espPeer() netip.AddrPort {
	if sa.natt {
		return sa.remote
	}
	return netip.AddrPortFrom(sa.remote.Addr(), 4500)
}

// childList returns the SA's children.
func (sa *ikeSA) childList() []*childSA { return sa.children }

// negotiating reports whether a negotiation of ch is pending or in flight
// on the SA.
func (sa *ikeSA) negotiating(ch *Child) bool {
	return containsChild(sa.pendingChildren, ch) || (sa.authChild != nil && sa.authChild.cfg == ch) || sa.creating[ch] > 0
}

// fail reports err to everyone waiting for a child of the SA.
func (sa *ikeSA) failWaiters(err error) {
	for ch, ws := range sa.waiters {
		for _, w := range ws {
			w <- fmt.Errorf("%s: %w", ch.FullName(), err)
		}
		delete(sa.waiters, ch)
	}
}

// notifyWaiters reports the outcome of a child's negotiation.
func (sa *ikeSA) notifyWaiters(ch *Child, err error) {
	if err != nil {
		sa.m.obs.ChildSAFailed(true, FailureReason(err))
	}
	for _, w := range sa.waiters[ch] {
		if err != nil {
			w <- fmt.Errorf("%s: %w", ch.FullName(), err)
		} else {
			w <- nil
		}
	}
	delete(sa.waiters, ch)
}

// destroy removes the IKE SA and its children without telling the peer.
func (sa *ikeSA) destroy(reason error) {
	if sa.state == stateDead {
		return
	}
	m := sa.m
	if sa.state == stateInitDone {
		m.nHalf--
	}
	wasUp := sa.state == stateEstablished || sa.state == stateDeleting
	if sa.state == stateInitSent || sa.state == stateAuthSent || sa.state == stateInitDone {
		m.obs.HandshakeFailed(sa.initiator, FailureReason(reason))
	}
	sa.state = stateDead
	sa.releaseIKERekey()
	sa.dropFragments()
	if o := sa.peerRekeyed; o != nil {
		sa.peerRekeyed = nil
		o.destroy(reason)
	}
	for _, t := range []Timer{sa.dpdTimer, sa.halfTimer, sa.rekeyTimer, sa.lifeTimer, sa.reauthTimer} {
		if t != nil {
			t.Stop()
		}
	}
	if sa.pending != nil && sa.pending.timer != nil {
		sa.pending.timer.Stop()
	}
	sa.pending, sa.queued = nil, nil
	for len(sa.children) > 0 {
		sa.removeChild(sa.children[len(sa.children)-1])
	}
	for _, c := range sa.retired {
		c.stopTimers()
	}
	sa.retired = nil
	if sa.authChild != nil {
		delete(m.reserved, sa.authChild.spiIn)
		sa.authChild = nil
	}
	sa.failWaiters(reason)
	for _, ch := range sa.pendingChildren {
		if ch.StartAction == StartTrap {
			if _, ok := m.traps[ch]; !ok {
				m.installTrap(ch)
			}
		}
	}
	sa.pendingChildren = nil
	if m.sas[sa.ourSPI()] == sa {
		delete(m.sas, sa.ourSPI())
	}
	if sa.initKey.spii != 0 && m.halfOpen[sa.initKey] == sa {
		delete(m.halfOpen, sa.initKey)
	}
	if sa.keys != nil {
		sa.keys.Zero()
	}
	for _, c := range []*ikecrypto.Cipher{sa.in, sa.out} {
		if c != nil {
			c.Zero()
		}
	}
	sa.in, sa.out, sa.ke = nil, nil, nil
	sa.dropIntermediate()
	sa.dropFollowups()
	if wasUp {
		m.stats.Deleted++
		sa.info("IKE SA deleted", zap.String("reason", reason.Error()))
	} else {
		m.stats.Failed++
		sa.m.log.Debug("IKE SA state removed", sa.logFields(zap.String("reason", reason.Error()))...)
	}
}

// randomBytes returns n random octets.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("ike: no randomness: " + err.Error())
	}
	return b
}

// nonceLen is the length of our nonces: 32 octets, as strongSwan sends.
const nonceLen = 32
