package ah

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/goipsec/goipsec/internal/aesgcm"
	"github.com/goipsec/goipsec/internal/replay"
	"github.com/goipsec/goipsec/internal/xform"
)

// HeaderLen is the length of the fixed part of the AH header: next header,
// payload length, reserved, SPI and sequence number.
const HeaderLen = 12

// ScratchLen is the tailroom beyond the packet's end that AH uses as
// scratch space (digest, nonce, ESN bytes); buffers must have it as capacity.
const ScratchLen = 64

// gmacIVLen is the length of the explicit IV that RFC 4543 puts at the
// start of the ICV field, before the 16-byte tag.
const gmacIVLen = 8

// Errors returned by the datapath, one per reason a packet is dropped, so
// that callers can count each with errors.Is.
var (
	ErrTruncated    = errors.New("ah: packet too short")
	ErrBadLength    = errors.New("ah: lengths do not add up")
	ErrBadHeader    = errors.New("ah: malformed IP header, options or extension headers")
	ErrAuth         = errors.New("ah: integrity check failed")
	ErrSPI          = errors.New("ah: unknown SPI")
	ErrReplay       = errors.New("ah: replayed sequence number")
	ErrTooOld       = errors.New("ah: sequence number left of the window")
	ErrSeqZero      = errors.New("ah: sequence number zero")
	ErrSeqOverflow  = errors.New("ah: sequence number space exhausted, rekey needed")
	ErrNoRoom       = errors.New("ah: buffer lacks headroom or tailroom")
	ErrBadInner     = errors.New("ah: bad inner packet")
	ErrNextHeader   = errors.New("ah: unexpected next header")
	ErrFragment     = errors.New("ah: IP fragment")
	ErrNotSupported = errors.New("ah: not supported")
)

// Config describes one unidirectional AH SA.
type Config struct {
	SPI      uint32       // Security Parameters Index, 256 or more
	Integ    *xform.Integ // integrity transform (HMAC or AES-GMAC)
	IntegKey []byte       // GMAC keys carry the 4-byte salt at the end
	ESN      bool         // 64-bit Extended Sequence Numbers
	// ReplayWindow is the anti-replay window in packets for an inbound SA:
	// 0 selects replay.DefaultSize, a negative value disables anti-replay.
	ReplayWindow int
	// NextSeq is the first sequence number to send; 0 means 1.
	NextSeq uint64
}

// SA is one unidirectional AH security association. It is safe for
// concurrent use: sealing and opening may run on many goroutines at once.
type SA struct {
	spi     uint32
	esn     bool
	integ   *xform.Integ
	icvLen  int // bytes of the ICV field that carry the MAC (GMAC: IV and tag)
	hdrLen4 int // AH length on the wire over IPv4 (32-bit aligned)
	hdrLen6 int // AH length on the wire over IPv6 (64-bit aligned)
	mac     *xform.MAC
	aead    cipher.AEAD // AES-GMAC
	salt    [4]byte
	savers  chan *saver // idle savers (the bytes masked during an ICV computation): a bounded free list that, unlike sync.Pool, the GC never empties
	seq     atomic.Uint64
	window  replay.Window
}

// NewSA validates cfg and builds the SA's integrity state.
func NewSA(cfg *Config) (*SA, error) {
	if cfg.Integ == nil {
		return nil, errors.New("ah: no integrity transform")
	}
	if cfg.SPI < 256 {
		return nil, fmt.Errorf("ah: SPI %#x is reserved (0-255)", cfg.SPI)
	}
	sa := &SA{spi: cfg.SPI, esn: cfg.ESN, integ: cfg.Integ}
	var err error
	if cfg.Integ.GMAC {
		sa.aead, sa.salt, err = xform.NewGMAC(cfg.Integ, cfg.IntegKey)
		sa.icvLen = gmacIVLen + cfg.Integ.ICVLen
	} else {
		sa.mac, err = xform.NewMAC(cfg.Integ, cfg.IntegKey)
		sa.icvLen = cfg.Integ.ICVLen
	}
	if err != nil {
		return nil, fmt.Errorf("ah: %w", err)
	}
	sa.hdrLen4 = roundUp(HeaderLen+sa.icvLen, 4)
	sa.hdrLen6 = roundUp(HeaderLen+sa.icvLen, 8)
	sa.savers = make(chan *saver, 2*runtime.GOMAXPROCS(0)+2)
	for range cap(sa.savers) {
		sa.savers <- newSaver()
	}
	w := cfg.ReplayWindow
	switch {
	case w == 0:
		w = replay.DefaultSize
	case w < 0:
		w = 0
	}
	if err := sa.window.Init(w); err != nil {
		return nil, fmt.Errorf("ah: replay window: %w", err)
	}
	next := cfg.NextSeq
	if next == 0 {
		next = 1
	}
	sa.seq.Store(next - 1)
	return sa, nil
}

func roundUp(n, a int) int { return (n + a - 1) / a * a }

// SPI returns the SA's Security Parameters Index.
func (sa *SA) SPI() uint32 { return sa.spi }

// ESN reports whether the SA uses Extended Sequence Numbers.
func (sa *SA) ESN() bool { return sa.esn }

// Name is the integrity transform's strongSwan keyword (e.g. "sha256").
func (sa *SA) Name() string { return sa.integ.Name }

// ICVLen is the length of the ICV field without padding (for AES-GMAC the
// 8-byte IV and the 16-byte tag).
func (sa *SA) ICVLen() int { return sa.icvLen }

// HeaderLen is the length of the AH header on the wire, ICV and padding
// included, in a packet of IP version 4 or 6.
func (sa *SA) HeaderLen(version int) int {
	if version == 6 {
		return sa.hdrLen6
	}
	return sa.hdrLen4
}

// Headroom is the most room EncapTransport needs before the packet (the
// IPv6 header length); EncapTunnel needs the outer header's length more.
func (sa *SA) Headroom() int { return sa.hdrLen6 }

// Tailroom is the capacity every call needs beyond the packet's end.
func (sa *SA) Tailroom() int { return ScratchLen }

// LastSeq is the last sequence number sent.
func (sa *SA) LastSeq() uint64 { return sa.seq.Load() }

// Window is the SA's anti-replay window (inbound use).
func (sa *SA) Window() *replay.Window { return &sa.window }

// Zero drops the SA's key state, wiping what can be wiped (the HMAC key
// copy; for AES-GMAC on the vector path, the expanded key, see esp.SA.Zero);
// the SA must not be used afterwards.
func (sa *SA) Zero() {
	if sa.mac != nil {
		sa.mac.Zero()
	}
	if w, ok := sa.aead.(aesgcm.Wiper); ok {
		w.Wipe()
	}
	sa.mac, sa.aead = nil, nil
	clear(sa.salt[:])
}

// nextSeq reserves n sequence numbers and returns the first.
func (sa *SA) nextSeq(n int) (uint64, error) {
	last := sa.seq.Add(uint64(n))
	first := last - uint64(n) + 1
	limit := uint64(1<<32 - 1)
	if sa.esn {
		limit = ^uint64(0)
	}
	if last < first || last > limit {
		// Keep the counter pinned so later calls fail too.
		sa.seq.Store(limit)
		return 0, fmt.Errorf("ah: spi %#x: %w", sa.spi, ErrSeqOverflow)
	}
	return first, nil
}
