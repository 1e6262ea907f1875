package esp

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/goipsec/goipsec/internal/replay"
	"github.com/goipsec/goipsec/internal/xform"
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
	buf = buf[:cap(buf)]
	if off < sa.preroom() || end < off || end+ScratchLen > len(buf) {
		return 0, 0, 0, 0, ErrNoRoom
	}
	pkt := buf[off:end]
	if len(pkt) < sa.hdrLen+2+sa.icvLen {
		return 0, 0, 0, 0, fmt.Errorf("esp: spi %#x: %d bytes: %w", sa.spi, len(pkt), ErrTruncated)
	}
	spi := binary.BigEndian.Uint32(pkt)
	if spi != sa.spi {
		return 0, 0, 0, 0, fmt.Errorf("esp: spi %#x on SA %#x: %w", spi, sa.spi, ErrSPI)
	}
	ctLen := len(pkt) - sa.hdrLen - sa.icvLen
	if sa.block != nil && ctLen%sa.align != 0 {
		return 0, 0, 0, 0, fmt.Errorf("esp: spi %#x: ciphertext of %d bytes not a multiple of the block size: %w", sa.spi, ctLen, ErrBadLength)
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
		nonce := scratch[:12]
		copy(nonce, sa.salt[:])
		copy(nonce[4:], pkt[HeaderLen:sa.hdrLen])
		if sa.enc.Kind == xform.KindGMAC {
			ok = sa.gmac(full, off, ctEnd, seq, nonce, scratch[24:], true)
		} else {
			aad := sa.aad(pkt, scratch[12:24], seq)
			_, oerr := sa.aead.Open(full[ctStart:ctStart], nonce, full[ctStart:end], aad)
			ok = oerr == nil
		}
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
	}
	clear(scratch)
	if !ok {
		return 0, 0, 0, 0, fmt.Errorf("esp: spi %#x seq %d: %w", sa.spi, seq, ErrAuth)
	}
	if err := sa.window.Accept(seq); err != nil {
		return 0, 0, 0, 0, sa.replayErr(err, seq)
	}
	padLen := int(full[ctEnd-2])
	nextHeader = full[ctEnd-1]
	pend = ctEnd - 2 - padLen
	if pend < ctStart {
		return 0, 0, 0, 0, fmt.Errorf("esp: spi %#x seq %d: pad length %d exceeds payload: %w", sa.spi, seq, padLen, ErrBadLength)
	}
	if !monotonicPad(full[pend : ctEnd-2]) {
		return 0, 0, 0, 0, fmt.Errorf("esp: spi %#x seq %d: %w", sa.spi, seq, ErrBadPadding)
	}
	if nextHeader == NextHeaderNone {
		return ctStart, pend, nextHeader, seq, ErrDummy
	}
	return ctStart, pend, nextHeader, seq, nil
}

// monotonicPad reports whether the padding is 1, 2, 3, ... (RFC 4303 2.4).
func monotonicPad(p []byte) bool {
	var bad byte
	for i, b := range p {
		bad |= b ^ byte(i+1)
	}
	return subtle.ConstantTimeByteEq(bad, 0) == 1
}

func (sa *SA) replayErr(err error, seq uint64) error {
	switch {
	case errors.Is(err, replay.ErrReplay):
		return fmt.Errorf("esp: spi %#x seq %d: %w", sa.spi, seq, ErrReplay)
	case errors.Is(err, replay.ErrTooOld):
		return fmt.Errorf("esp: spi %#x seq %d: %w", sa.spi, seq, ErrTooOld)
	case errors.Is(err, replay.ErrZero):
		return fmt.Errorf("esp: spi %#x: %w", sa.spi, ErrSeqZero)
	}
	return fmt.Errorf("esp: spi %#x seq %d: %w", sa.spi, seq, err)
}
