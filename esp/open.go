package esp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/goipsec/goipsec/internal/replay"
)

// SPIOf returns the SPI of the ESP packet pkt, which the caller uses to find
// the SA.
func SPIOf(pkt []byte) (uint32, error) {
	if len(pkt) < HeaderLen {
		return 0, ErrTruncated
	}
	return binary.BigEndian.Uint32(pkt), nil
}

// Open verifies and decrypts the ESP packet buf[off:end] in place. It checks
// the replay window before and updates it after the ICV verified. It returns
// the bounds of the payload (the inner packet or transport segment, TFC
// padding included), its next header and the full sequence number. Dummy
// packets are verified and reported as ErrDummy. cap(buf) must leave
// ScratchLen after end, and off must be at least Headroom()-HeaderLen().
func (sa *SA) Open(buf []byte, off, end int) (pstart, pend int, nextHeader uint8, seq uint64, err error) {
	if sa.dead.Load() {
		return 0, 0, 0, 0, sa.err(ErrDead)
	}
	if sa.fast {
		return sa.openFast(buf, off, end)
	}
	buf = buf[:cap(buf)]
	if off < sa.preroom() || end < off || end+ScratchLen > len(buf) {
		return 0, 0, 0, 0, ErrNoRoom
	}
	pkt := buf[off:end]
	if len(pkt) < sa.hdrLen+2+sa.icvLen {
		return 0, 0, 0, 0, sa.err(ErrTruncated)
	}
	spi := binary.BigEndian.Uint32(pkt)
	if spi != sa.spi {
		return 0, 0, 0, 0, sa.err(ErrSPI)
	}
	ctLen := len(pkt) - sa.hdrLen - sa.icvLen
	if sa.block != nil && ctLen&(sa.align-1) != 0 {
		return 0, 0, 0, 0, sa.err(ErrBadLength)
	}
	seq, err = sa.window.Check(binary.BigEndian.Uint32(pkt[4:8]), sa.esn)
	if err != nil {
		return 0, 0, 0, 0, sa.replayErr(err, seq)
	}
	full := buf
	scratch := full[end : end+ScratchLen]
	ctStart := off + sa.hdrLen
	ctEnd := ctStart + ctLen
	ok := true
	switch {
	case sa.aead != nil:
		iv := (*[8]byte)(pkt[HeaderLen : HeaderLen+8])
		// With an AEAD that takes the nonce in its parts (the salt and
		// the packet's IV) there is none to build. Else it goes where the
		// cache already holds the packet's header: the 12 bytes that end
		// 4 before it (GMAC under ESN takes those 4), saved and put back,
		// when the buffer has them; the scratch space after the packet is
		// a line of its own, cold when the packet has just come in.
		var saved [12]byte
		var nonce []byte
		used := 0 // scratch bytes written
		before := false
		if sa.ivAEAD == nil {
			nonce, used = scratch[:12], 12
			if before = off >= nonceBefore; before {
				nonce, used = full[off-nonceBefore:off-nonceBefore+12], 0
				saved = [12]byte(nonce)
			}
		}
		switch {
		case sa.isGMAC:
			ok = sa.gmac(full, off, ctEnd, seq, iv, nonce, scratch[24:], true)
			if sa.esn {
				used = 28
			}
		case sa.esn:
			ok = sa.openAEAD(full[ctStart:ctStart], iv, nonce, full[ctStart:end], sa.aad(pkt, scratch[12:24], seq))
			used = 24
		default:
			ok = sa.openAEAD(full[ctStart:ctStart], iv, nonce, full[ctStart:end], pkt[:HeaderLen])
		}
		if before {
			*(*[12]byte)(nonce) = saved // the salt goes with it
		}
		// The line after the packet is cold: a store there costs a miss.
		clear(scratch[:used])
	default:
		s := sa.mac.Begin()
		s.Write(full[off:ctEnd])
		if sa.esn {
			binary.BigEndian.PutUint32(scratch[:4], uint32(seq>>32))
			s.Write(scratch[:4])
		}
		ok = sa.mac.Verify(s, full[ctEnd:end], scratch)
		if ok && sa.block != nil {
			cbcDecrypt(sa.block, pkt[HeaderLen:sa.hdrLen], full[ctStart:ctEnd])
		}
		clear(scratch)
	}
	if !ok {
		return 0, 0, 0, 0, sa.err(ErrAuth)
	}
	if err := sa.window.Accept(seq); err != nil {
		return 0, 0, 0, 0, sa.replayErr(err, seq)
	}
	return sa.trailer(full, ctStart, ctEnd, seq)
}

// openFast is Open for the usual SA (see sealFast): AES-GCM or AES-GMAC
// through IVAEAD, 32-bit sequence numbers; the nonce is the salt and the
// packet's IV as they are.
func (sa *SA) openFast(buf []byte, off, end int) (pstart, pend int, nextHeader uint8, seq uint64, err error) {
	buf = buf[:cap(buf)]
	if off < 0 || end < off || end+ScratchLen > len(buf) {
		return 0, 0, 0, 0, ErrNoRoom
	}
	pkt := buf[off:end]
	if len(pkt) < 16+2+16 {
		return 0, 0, 0, 0, sa.err(ErrTruncated)
	}
	if binary.BigEndian.Uint32(pkt) != sa.spi {
		return 0, 0, 0, 0, sa.err(ErrSPI)
	}
	if seq, err = sa.window.Check(binary.BigEndian.Uint32(pkt[4:8]), false); err != nil {
		return 0, 0, 0, 0, sa.replayErr(err, seq)
	}
	ctStart, ctEnd := off+16, end-16
	var oerr error
	if sa.isGMAC { // RFC 4543: the whole packet is the AAD
		_, oerr = sa.ivAEAD.OpenIV(nil, &sa.salt, (*[8]byte)(pkt[8:16]), buf[ctEnd:end], buf[off:ctEnd])
	} else {
		_, oerr = sa.ivAEAD.OpenIV(buf[ctStart:ctStart], &sa.salt, (*[8]byte)(pkt[8:16]), buf[ctStart:end], pkt[:8])
	}
	if oerr != nil {
		return 0, 0, 0, 0, sa.err(ErrAuth)
	}
	if err := sa.window.Accept(seq); err != nil {
		return 0, 0, 0, 0, sa.replayErr(err, seq)
	}
	// sa.trailer, written out: a call less per packet.
	padLen := int(buf[ctEnd-2])
	nextHeader = buf[ctEnd-1]
	pend = ctEnd - 2 - padLen
	if pend < ctStart {
		return 0, 0, 0, 0, sa.err(ErrBadLength)
	}
	if !monotonicPad(buf[:ctEnd-2], padLen) {
		return 0, 0, 0, 0, sa.err(ErrBadPadding)
	}
	if nextHeader == NextHeaderNone {
		return ctStart, pend, nextHeader, seq, sa.err(ErrDummy)
	}
	return ctStart, pend, nextHeader, seq, nil
}

// trailer checks the decrypted trailer of the payload full[ctStart:ctEnd]
// (padding, pad length, next header) and returns Open's results.
func (sa *SA) trailer(full []byte, ctStart, ctEnd int, seq uint64) (pstart, pend int, nextHeader uint8, _ uint64, err error) {
	padLen := int(full[ctEnd-2])
	nextHeader = full[ctEnd-1]
	pend = ctEnd - 2 - padLen
	if pend < ctStart {
		return 0, 0, 0, 0, sa.err(ErrBadLength)
	}
	if !monotonicPad(full[:ctEnd-2], padLen) {
		return 0, 0, 0, 0, sa.err(ErrBadPadding)
	}
	if nextHeader == NextHeaderNone {
		return ctStart, pend, nextHeader, seq, sa.err(ErrDummy)
	}
	return ctStart, pend, nextHeader, seq, nil
}

// nonceBefore is how far before the ESP header Open builds the nonce when
// the buffer has room there.
const nonceBefore = 16

// monotonicPad reports whether the n bytes at the end of p, the padding,
// are 1, 2, 3, ... (RFC 4303 2.4). The caller checked len(p) >= n. Up to 8
// bytes (all that block ciphers and 4-byte alignment need) are checked as
// one word when p has 8 bytes.
func monotonicPad(p []byte, n int) bool {
	if n <= 8 && len(p) >= 8 {
		w := binary.LittleEndian.Uint64(p[len(p)-8:])
		shift := uint(8-n) * 8
		return (w^0x0807060504030201<<shift)&(^uint64(0)<<shift) == 0
	}
	var bad byte
	for i, b := range p[len(p)-n:] {
		bad |= b ^ byte(i+1)
	}
	return bad == 0
}

func (sa *SA) replayErr(err error, seq uint64) error {
	switch {
	case errors.Is(err, replay.ErrReplay):
		return sa.err(ErrReplay)
	case errors.Is(err, replay.ErrTooOld):
		return sa.err(ErrTooOld)
	case errors.Is(err, replay.ErrZero):
		return sa.err(ErrSeqZero)
	}
	return fmt.Errorf("esp: spi %#x seq %d: %w", sa.spi, seq, err)
}

// Error is a packet rejected by an SA: the SA's SPI and the reason, one of
// this package's Err values (errors.Is works). Each SA keeps one Error per
// reason, so rejecting a packet does not allocate.
type Error struct {
	SPI    uint32
	Reason error
}

func (e *Error) Error() string {
	return fmt.Sprintf("esp: spi %#x: %s", e.SPI, strings.TrimPrefix(e.Reason.Error(), "esp: "))
}

// Unwrap returns the reason.
func (e *Error) Unwrap() error { return e.Reason }

// packetErrors are the reasons an SA rejects a packet with.
var packetErrors = [...]error{ErrTruncated, ErrBadLength, ErrBadPadding, ErrAuth, ErrSPI, ErrReplay, ErrTooOld, ErrSeqZero, ErrDummy, ErrBadInner, ErrNextHeader, ErrDead}

// err returns the SA's preallocated error for reason.
func (sa *SA) err(reason error) error {
	for i, r := range packetErrors {
		if r == reason {
			return &sa.errs[i]
		}
	}
	return fmt.Errorf("esp: spi %#x: %w", sa.spi, reason)
}
