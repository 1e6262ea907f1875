package esp

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/goipsec/goipsec/internal/aesgcm"
	"github.com/goipsec/goipsec/internal/replay"
	"github.com/goipsec/goipsec/internal/xform"
)

// HeaderLen is the length of the SPI and sequence number fields.
const HeaderLen = 8

// ScratchLen is the tailroom beyond the packet that Seal and Open use as
// scratch space (nonce, ESN AAD, digests); buffers must have it as capacity.
const ScratchLen = 64

// NextHeaderNone marks a dummy packet (RFC 4303 section 2.6).
const NextHeaderNone = 59

// Errors returned by the datapath, one per reason a packet is dropped, so
// that callers can count each with errors.Is.
var (
	ErrTruncated    = errors.New("esp: packet too short")
	ErrBadLength    = errors.New("esp: lengths do not add up")
	ErrBadPadding   = errors.New("esp: bad padding")
	ErrAuth         = errors.New("esp: integrity check failed")
	ErrSPI          = errors.New("esp: unknown SPI")
	ErrReplay       = errors.New("esp: replayed sequence number")
	ErrTooOld       = errors.New("esp: sequence number left of the window")
	ErrSeqZero      = errors.New("esp: sequence number zero")
	ErrDummy        = errors.New("esp: dummy packet")
	ErrSeqOverflow  = errors.New("esp: sequence number space exhausted, rekey needed")
	ErrNoRoom       = errors.New("esp: buffer lacks headroom or tailroom")
	ErrBadInner     = errors.New("esp: bad inner packet")
	ErrNextHeader   = errors.New("esp: unexpected next header")
	ErrNotSupported = errors.New("esp: not supported")
	ErrDead         = errors.New("esp: SA deleted")
	ErrTooBig       = errors.New("esp: packet too big")
)

// Config describes one unidirectional ESP SA.
type Config struct {
	SPI      uint32
	Enc      *xform.Enc   // encryption transform
	EncKey   []byte       // keying material; AEAD and GMAC keys carry the 4-byte salt at the end
	Integ    *xform.Integ // integrity transform; nil for combined modes
	IntegKey []byte
	ESN      bool // 64-bit Extended Sequence Numbers
	// ReplayWindow is the anti-replay window in packets for an inbound SA:
	// 0 selects replay.DefaultSize, a negative value disables anti-replay.
	ReplayWindow int
	// NextSeq is the first sequence number to send; 0 means 1.
	NextSeq uint64
}

// SA is one unidirectional ESP security association. It is safe for
// concurrent use: Seal and Open may run on many goroutines at once.
type SA struct {
	spi    uint32
	esn    bool
	enc    *xform.Enc
	integ  *xform.Integ
	hdrLen int // SPI, sequence number and IV
	icvLen int
	align  int

	aead   cipher.AEAD // combined modes
	isGMAC bool        // aead is AES-GMAC (RFC 4543): nothing encrypted
	// ivAEAD is aead when it takes the nonce as salt and IV, unassembled.
	ivAEAD aesgcm.IVAEAD
	// fast: ivAEAD without ESN: seal and Open take their short paths.
	fast bool
	salt [4]byte
	// fixedIV, set by known-answer tests only, replaces every packet's IV.
	fixedIV []byte
	block   cipher.Block // CBC
	ivGen   cipher.Block // CBC IV generator: IV = E(ivKey, counter)
	mac     *xform.MAC   // separate integrity

	dead atomic.Bool // set once, read per packet
	errs [len(packetErrors)]Error

	// The fields written per packet sit on cache lines of their own, so
	// that goroutines sharing the SA do not also invalidate each other's
	// copies of the read-only fields above (false sharing).
	_      [64]byte
	seq    atomic.Uint64 // last sequence number sent (outbound)
	_      [56]byte
	window replay.Window // inbound
}

// NewSA validates cfg and builds the SA's cipher state.
func NewSA(cfg *Config) (*SA, error) {
	if cfg.Enc == nil {
		return nil, errors.New("esp: no encryption transform")
	}
	if cfg.SPI < 256 {
		return nil, fmt.Errorf("esp: SPI %#x is reserved (0-255)", cfg.SPI)
	}
	sa := &SA{spi: cfg.SPI, esn: cfg.ESN, enc: cfg.Enc, integ: cfg.Integ}
	for i, r := range packetErrors {
		sa.errs[i] = Error{SPI: cfg.SPI, Reason: r}
	}
	sa.hdrLen = HeaderLen + cfg.Enc.IVLen
	sa.align = cfg.Enc.Block
	if sa.align <= 0 || sa.align&(sa.align-1) != 0 {
		return nil, fmt.Errorf("esp: %s: block size %d is not a power of two", cfg.Enc.Name, sa.align)
	}
	var err error
	switch cfg.Enc.Kind {
	case xform.KindAEAD, xform.KindGMAC:
		if cfg.Integ != nil {
			return nil, fmt.Errorf("esp: %s is a combined-mode transform and takes no integrity algorithm", cfg.Enc.Name)
		}
		if cfg.Enc.IVLen != 8 {
			return nil, fmt.Errorf("esp: %s: combined modes take 8-byte IVs, not %d", cfg.Enc.Name, cfg.Enc.IVLen)
		}
		sa.aead, sa.salt, err = xform.NewAEAD(cfg.Enc, cfg.EncKey)
		sa.isGMAC = cfg.Enc.Kind == xform.KindGMAC
		sa.ivAEAD, _ = sa.aead.(aesgcm.IVAEAD)
		sa.fast = sa.ivAEAD != nil && !sa.esn && cfg.Enc.Block == 4 && cfg.Enc.ICVLen == 16
		sa.icvLen = cfg.Enc.ICVLen
	case xform.KindCBC, xform.KindNull:
		if cfg.Integ == nil {
			return nil, fmt.Errorf("esp: %s needs an integrity algorithm", cfg.Enc.Name)
		}
		if cfg.Integ.GMAC {
			return nil, fmt.Errorf("esp: %s is not an ESP integrity algorithm (use enc=%s)", cfg.Integ.Name, cfg.Integ.Name)
		}
		if cfg.Enc.Kind == xform.KindCBC {
			if sa.block, err = xform.NewBlock(cfg.Enc, cfg.EncKey); err != nil {
				return nil, fmt.Errorf("esp: %w", err)
			}
			ivKey := make([]byte, len(cfg.EncKey))
			if _, err := rand.Read(ivKey); err != nil {
				return nil, fmt.Errorf("esp: IV key: %w", err)
			}
			sa.ivGen, err = xform.NewBlock(cfg.Enc, ivKey)
			clear(ivKey)
		} else if len(cfg.EncKey) != 0 {
			return nil, fmt.Errorf("esp: null encryption takes no key")
		}
		if err == nil {
			sa.mac, err = xform.NewMAC(cfg.Integ, cfg.IntegKey)
		}
		sa.icvLen = cfg.Integ.ICVLen
	default:
		return nil, fmt.Errorf("esp: transform %s: %w", cfg.Enc.Name, ErrNotSupported)
	}
	if err != nil {
		return nil, fmt.Errorf("esp: %w", err)
	}
	w := cfg.ReplayWindow
	switch {
	case w == 0:
		w = replay.DefaultSize
	case w < 0:
		w = 0
	}
	if err := sa.window.Init(w); err != nil {
		return nil, fmt.Errorf("esp: replay window: %w", err)
	}
	next := cfg.NextSeq
	if next == 0 {
		next = 1
	}
	sa.seq.Store(next - 1)
	return sa, nil
}

// SPI returns the SA's Security Parameters Index.
func (sa *SA) SPI() uint32 { return sa.spi }

// ESN reports whether the SA uses Extended Sequence Numbers.
func (sa *SA) ESN() bool { return sa.esn }

// Name describes the transform, as strongSwan writes it (e.g. "aes128-sha256").
func (sa *SA) Name() string {
	if sa.integ == nil {
		return sa.enc.Name
	}
	return sa.enc.Name + "-" + sa.integ.Name
}

// HeaderLen is the length of the ESP header on the wire: SPI, sequence
// number and IV.
func (sa *SA) HeaderLen() int { return sa.hdrLen }

// Headroom is the room Seal and Open need before the ESP header's place:
// HeaderLen plus four scratch bytes for AES-GMAC under ESN.
func (sa *SA) Headroom() int { return sa.hdrLen + sa.preroom() }

// TrailerLen is the most Seal appends after the payload (padding, pad
// length, next header and ICV), not counting ScratchLen.
func (sa *SA) TrailerLen() int { return sa.align - 1 + 2 + sa.icvLen }

// Overhead is the number of bytes Seal adds to a payload of n bytes.
func (sa *SA) Overhead(n int) int {
	return sa.hdrLen + sa.padLen(n) + 2 + sa.icvLen // preroom is scratch, not sent
}

// Tailroom is the capacity Seal needs beyond the payload's end.
func (sa *SA) Tailroom() int { return sa.TrailerLen() + ScratchLen }

// LastSeq is the last sequence number sent.
func (sa *SA) LastSeq() uint64 { return sa.seq.Load() }

// Window is the SA's anti-replay window (inbound use).
func (sa *SA) Window() *replay.Window { return &sa.window }

// preroom is the headroom needed before the ESP header itself: four bytes
// for GMAC under ESN (see gmac).
func (sa *SA) preroom() int {
	if sa.esn && sa.isGMAC {
		return 4
	}
	return 0
}

func (sa *SA) padLen(n int) int {
	return -(n + 2) & (sa.align - 1) // align is a power of two: no division
}

// Zero marks the SA dead, so that Seal and Open refuse packets with
// ErrDead, and wipes the key material it holds: the salt, the HMAC key
// copy and, on the vector AES-GCM path, the expanded AES key and hash key
// powers (overwritten with random bytes: a call already past the dead
// check goes on under unknown keys, its output garbage, never under zero
// ones). The standard library's cipher objects (CBC, ChaCha20-Poly1305,
// AES-GCM where the vector code does not run) and HMAC states offer no way
// to wipe their expanded keys; they become garbage. The SAD calls Zero a
// grace period after it removed the SA, when no batch still uses it.
func (sa *SA) Zero() {
	if sa.dead.Swap(true) {
		return
	}
	if sa.mac != nil {
		sa.mac.Zero()
	}
	if w, ok := sa.aead.(aesgcm.Wiper); ok {
		w.Wipe()
	}
	clear(sa.salt[:])
}

// nextSeq reserves n sequence numbers and returns the first.
func (sa *SA) nextSeq(n int) (uint64, error) {
	if sa.dead.Load() {
		return 0, sa.err(ErrDead)
	}
	last := sa.seq.Add(uint64(n))
	first := last - uint64(n) + 1
	limit := uint64(1<<32 - 1)
	if sa.esn {
		limit = ^uint64(0)
	}
	if last < uint64(n) || last > limit { // wrapped (ESN at 2^64), or past 2^32
		// Keep the counter pinned so later calls fail too.
		sa.seq.Store(limit)
		return 0, fmt.Errorf("esp: spi %#x: %w", sa.spi, ErrSeqOverflow)
	}
	return first, nil
}

// Offsets index buf up to its capacity: the bytes between len(buf) and
// cap(buf) are the tailroom.

// Seal protects the payload buf[off:end] in place with the next sequence
// number: it writes the ESP header and IV into buf[off-HeaderLen():off] and
// padding, trailer and ICV after end. It returns the ESP packet's bounds.
// off must be at least Headroom() and cap(buf) must leave Tailroom() after end.
func (sa *SA) Seal(buf []byte, off, end int, nextHeader uint8) (start, newEnd int, err error) {
	return sa.SealAt(buf, off, end, nextHeader, 0)
}

// SealAt is Seal with sequence number seq, reserved by ReserveSeq (0 takes
// the next one).
func (sa *SA) SealAt(buf []byte, off, end int, nextHeader uint8, seq uint64) (start, newEnd int, err error) {
	if seq == 0 {
		if seq, err = sa.nextSeq(1); err != nil {
			return 0, 0, err
		}
	}
	return sa.seal(buf, off, end, nextHeader, seq)
}

// ReserveSeq reserves up to n sequence numbers with one atomic operation,
// for a run of packets sealed with SealAt, EncapTunnelAt or
// EncapTunnelToAt, each number once, in order. It returns the first and
// how many it got: fewer than n only when the sequence space runs out, and
// then err is ErrSeqOverflow (with got 0 once the space is exhausted).
func (sa *SA) ReserveSeq(n int) (first uint64, got int, err error) {
	if sa.dead.Load() {
		return 0, 0, sa.err(ErrDead)
	}
	limit := uint64(1<<32 - 1)
	if sa.esn {
		limit = ^uint64(0)
	}
	for {
		last := sa.seq.Load()
		room := limit - min(last, limit)
		take := uint64(n)
		if room < take {
			take = room
		}
		if sa.seq.CompareAndSwap(last, last+take) {
			if take < uint64(n) {
				err = fmt.Errorf("esp: spi %#x: %w", sa.spi, ErrSeqOverflow)
			}
			return last + 1, int(take), err
		}
	}
}

// seal is SealAt once seq is known.
func (sa *SA) seal(buf []byte, off, end int, nextHeader uint8, seq uint64) (int, int, error) {
	if sa.fast && sa.fixedIV == nil {
		return sa.sealFast(buf, off, end, nextHeader, seq)
	}
	buf = buf[:cap(buf)]
	if off < sa.hdrLen+sa.preroom() || end < off || end > len(buf) {
		return 0, 0, ErrNoRoom
	}
	n := end - off
	pad := sa.padLen(n)
	ctEnd := end + pad + 2
	pktEnd := ctEnd + sa.icvLen
	if pktEnd+ScratchLen > cap(buf) {
		return 0, 0, ErrNoRoom
	}
	buf = buf[:pktEnd+ScratchLen]
	start := off - sa.hdrLen
	writeTrailer(buf[end:ctEnd], pad, nextHeader)
	hdr := buf[start:off]
	binary.BigEndian.PutUint32(hdr[0:4], sa.spi)
	binary.BigEndian.PutUint32(hdr[4:8], uint32(seq))
	scratch := buf[pktEnd : pktEnd+ScratchLen]

	switch {
	case sa.aead != nil:
		iv := sa.putIV(hdr, seq)
		nonce := scratch[:12] // used only by an AEAD that wants it whole
		used := 12
		if sa.ivAEAD != nil {
			used = 0
		}
		switch {
		case sa.isGMAC:
			// RFC 4543: the whole packet is authenticated, nothing encrypted.
			sa.gmac(buf, start, ctEnd, seq, iv, nonce, scratch[24:], false)
			if sa.esn {
				used = 28
			}
		case sa.esn:
			sa.sealAEAD(buf[off:off], iv, nonce, buf[off:ctEnd], sa.aad(hdr, scratch[12:24], seq))
			used = 24
		default:
			sa.sealAEAD(buf[off:off], iv, nonce, buf[off:ctEnd], hdr[:HeaderLen])
		}
		// The line after the packet is cold: a store there costs a miss.
		clear(scratch[:used])
		return start, pktEnd, nil
	default:
		if sa.block != nil {
			iv := hdr[HeaderLen:]
			sa.makeIV(iv, seq, scratch)
			if sa.fixedIV != nil {
				copy(iv, sa.fixedIV)
			}
			cbcEncrypt(sa.block, iv, buf[off:ctEnd])
		}
		s := sa.mac.Begin()
		s.Write(buf[start:ctEnd])
		if sa.esn {
			binary.BigEndian.PutUint32(scratch[:4], uint32(seq>>32))
			s.Write(scratch[:4])
		}
		sa.mac.Finish(s, buf[ctEnd:pktEnd], scratch)
	}
	clear(scratch)
	return start, pktEnd, nil
}

// sealFast is seal for the usual SA: AES-GCM (or AES-GMAC) through
// IVAEAD, 32-bit sequence numbers. The header is two 8-byte stores, the trailer (at most
// 3 bytes of padding, pad length, next header) one, which runs into the
// ICV's place (written over by the tag); no nonce, no scratch space.
func (sa *SA) sealFast(buf []byte, off, end int, nextHeader uint8, seq uint64) (int, int, error) {
	buf = buf[:cap(buf)]
	pad := -(end - off + 2) & 3
	ctEnd := end + pad + 2
	pktEnd := ctEnd + 16
	if off < 16 || end < off || pktEnd+ScratchLen > len(buf) {
		return 0, 0, ErrNoRoom
	}
	binary.LittleEndian.PutUint64(buf[end:end+8], trailerWord(pad, nextHeader))
	hdr := buf[off-16 : off]
	iv := sa.putHeader16(hdr, seq)
	if sa.isGMAC { // RFC 4543: the whole packet is the AAD
		sa.ivAEAD.SealIV(buf[ctEnd:ctEnd], &sa.salt, iv, nil, buf[off-16:ctEnd])
	} else {
		sa.ivAEAD.SealIV(buf[off:off], &sa.salt, iv, buf[off:ctEnd], hdr[:8])
	}
	return off - 16, pktEnd, nil
}

// putHeader16 writes the usual SA's 16-byte ESP header for seq into hdr:
// SPI and sequence number in one store, then the IV, the sequence number
// (unique per key: RFC 4106 section 3.1), which it returns.
func (sa *SA) putHeader16(hdr []byte, seq uint64) *[8]byte {
	binary.BigEndian.PutUint64(hdr[:8], uint64(sa.spi)<<32|seq&0xffffffff)
	iv := (*[8]byte)(hdr[8:16])
	binary.BigEndian.PutUint64(iv[:], seq)
	return iv
}

// trailerWord is ESP's trailer for pad (0 to 3) bytes of padding and next
// header nh as the bytes of a little-endian word: 1, 2, ..., pad, then the
// pad length and nh; the bytes after them are zero.
func trailerWord(pad int, nh uint8) uint64 {
	sh := uint(pad) * 8
	return 0x030201&(1<<sh-1) | uint64(pad)<<sh | uint64(nh)<<(sh+8)
}

// putIV writes the combined-mode IV for seq into the ESP header hdr and
// returns it: the sequence number, unique per key (RFC 4106 section 3.1).
func (sa *SA) putIV(hdr []byte, seq uint64) *[8]byte {
	iv := (*[8]byte)(hdr[HeaderLen : HeaderLen+8])
	if sa.fixedIV != nil {
		*iv = [8]byte(sa.fixedIV)
	} else {
		binary.BigEndian.PutUint64(iv[:], seq)
	}
	return iv
}

// sealAEAD seals plaintext into dst with the combined-mode cipher, for the
// packet whose IV is iv: given as it is when the AEAD takes it, else
// assembled with the salt in nonce (12 bytes).
func (sa *SA) sealAEAD(dst []byte, iv *[8]byte, nonce, plaintext, aad []byte) {
	if sa.ivAEAD != nil {
		sa.ivAEAD.SealIV(dst, &sa.salt, iv, plaintext, aad)
		return
	}
	*(*[4]byte)(nonce) = sa.salt
	*(*[8]byte)(nonce[4:]) = *iv
	sa.aead.Seal(dst, nonce, plaintext, aad)
}

// openAEAD is sealAEAD's counterpart: it reports whether ciphertext
// authenticated (and then it is decrypted into dst).
func (sa *SA) openAEAD(dst []byte, iv *[8]byte, nonce, ciphertext, aad []byte) bool {
	if sa.ivAEAD != nil {
		_, err := sa.ivAEAD.OpenIV(dst, &sa.salt, iv, ciphertext, aad)
		return err == nil
	}
	*(*[4]byte)(nonce) = sa.salt
	*(*[8]byte)(nonce[4:]) = *iv
	_, err := sa.aead.Open(dst, nonce, ciphertext, aad)
	return err == nil
}

// aad returns the AAD for combined modes (RFC 4106 section 5): SPI and
// sequence number, with the high 32 bits between them under ESN.
func (sa *SA) aad(hdr, scratch []byte, seq uint64) []byte {
	if !sa.esn {
		return hdr[:HeaderLen]
	}
	copy(scratch[0:4], hdr[0:4])
	binary.BigEndian.PutUint32(scratch[4:8], uint32(seq>>32))
	binary.BigEndian.PutUint32(scratch[8:12], uint32(seq))
	return scratch[:12]
}

// gmac computes (or, with open set, verifies) the RFC 4543 ICV of the ESP
// packet buf[start:ctEnd], whose ICV follows at ctEnd. The AAD is the whole
// packet; under ESN the high sequence bits go between SPI and sequence
// number, so the SPI is moved into the four bytes before start for the
// computation and everything is put back afterwards.
func (sa *SA) gmac(buf []byte, start, ctEnd int, seq uint64, iv *[8]byte, nonce, scratch []byte, open bool) bool {
	aadStart := start
	if sa.esn {
		aadStart = start - 4
		copy(scratch[:4], buf[aadStart:start])
		copy(buf[aadStart:start], buf[start:start+4])
		binary.BigEndian.PutUint32(buf[start:start+4], uint32(seq>>32))
	}
	aad := buf[aadStart:ctEnd]
	ok := true
	if open {
		ok = sa.openAEAD(nil, iv, nonce, buf[ctEnd:ctEnd+sa.icvLen], aad)
	} else {
		sa.sealAEAD(buf[ctEnd:ctEnd], iv, nonce, nil, aad)
	}
	if sa.esn {
		copy(buf[start:start+4], buf[aadStart:start])
		copy(buf[aadStart:start], scratch[:4])
	}
	return ok
}

func (sa *SA) makeIV(iv []byte, seq uint64, scratch []byte) {
	bs := sa.ivGen.BlockSize()
	ctr := scratch[:bs]
	clear(ctr)
	binary.BigEndian.PutUint64(ctr[bs-8:], seq)
	sa.ivGen.Encrypt(scratch[bs:2*bs], ctr)
	copy(iv, scratch[bs:2*bs])
}

func cbcEncrypt(b cipher.Block, iv, data []byte) {
	bs := b.BlockSize()
	prev := iv
	for i := 0; i < len(data); i += bs {
		blk := data[i : i+bs]
		subtleXOR(blk, prev)
		b.Encrypt(blk, blk)
		prev = blk
	}
}

// cbcDecrypt decrypts data in place, walking backwards so that each
// ciphertext block is still intact when the next one needs it.
func cbcDecrypt(b cipher.Block, iv, data []byte) {
	bs := b.BlockSize()
	for i := len(data) - bs; i >= 0; i -= bs {
		blk := data[i : i+bs]
		b.Decrypt(blk, blk)
		if i == 0 {
			subtleXOR(blk, iv)
		} else {
			subtleXOR(blk, data[i-bs:i])
		}
	}
}

func subtleXOR(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
