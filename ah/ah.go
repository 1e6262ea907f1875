package ah

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/replay"
)

// Offsets index buf up to its capacity: the bytes between len(buf) and
// cap(buf) are the tailroom.

// Locate finds the AH header in the IP packet pkt and returns its offset
// and SPI, which the caller uses to find the SA.
func Locate(pkt []byte) (ahOff int, spi uint32, err error) {
	_, n, err := ipLen(pkt)
	if err != nil {
		return 0, 0, err
	}
	pkt = pkt[:n]
	ahOff, _, err = walk(pkt, -1, false, nil)
	if err != nil {
		return 0, 0, err
	}
	if ahOff+HeaderLen > n {
		return 0, 0, ErrTruncated
	}
	return ahOff, binary.BigEndian.Uint32(pkt[ahOff+4:]), nil
}

// Opened describes a packet that Open verified. Offsets index the buffer.
type Opened struct {
	AHOff      int    // start of the AH header
	NHOff      int    // the next-header byte that names AH
	PayloadOff int    // start of what AH protects after itself (end of the AH header)
	End        int    // end of the IP packet, as its header gives it
	NextHeader uint8  // AH's next header: the payload's protocol
	Seq        uint64 // full sequence number
}

// Seal authenticates the IP packet buf[off:end] with the next sequence
// number. The packet must be laid out already: its header chain names AH
// at ahOff, HeaderLen(version) bytes are free there, and its length fields
// count them. Seal writes the AH header (with nextHeader and the ICV) and
// the IPv4 header checksum. cap(buf) must leave ScratchLen after end.
func (sa *SA) Seal(buf []byte, off, ahOff, end int, nextHeader uint8) (seq uint64, err error) {
	seq, err = sa.nextSeq(1)
	if err != nil {
		return 0, err
	}
	return seq, sa.sealSeq(buf, off, ahOff, end, nextHeader, seq)
}

func (sa *SA) sealSeq(buf []byte, off, ahOff, end int, nextHeader uint8, seq uint64) error {
	buf = buf[:cap(buf)]
	if off < 0 || end < off || end+ScratchLen > len(buf) {
		return ErrNoRoom
	}
	pkt := buf[off:end]
	v, n, err := ipLen(pkt)
	if err != nil {
		return fmt.Errorf("ah: spi %#x: %w", sa.spi, err)
	}
	if n != len(pkt) {
		return fmt.Errorf("ah: spi %#x: IP length %d, packet %d: %w", sa.spi, n, len(pkt), ErrBadLength)
	}
	ahLen := sa.HeaderLen(v)
	if ahOff < off || ahOff+ahLen > end {
		return fmt.Errorf("ah: spi %#x: no room for %d bytes of AH at %d: %w", sa.spi, ahLen, ahOff-off, ErrBadLength)
	}
	h := buf[ahOff : ahOff+ahLen]
	h[0] = nextHeader
	h[1] = byte(ahLen/4 - 2)
	h[2], h[3] = 0, 0
	binary.BigEndian.PutUint32(h[4:8], sa.spi)
	binary.BigEndian.PutUint32(h[8:12], uint32(seq))
	clear(h[HeaderLen:]) // ICV and padding
	if _, err := sa.compute(buf, off, ahOff, end, end, seq, false, true); err != nil {
		return fmt.Errorf("ah: spi %#x seq %d: %w", sa.spi, seq, err)
	}
	if v == 4 {
		packet.IPv4(pkt).ComputeChecksum()
	}
	return nil
}

// Open verifies the AH packet buf[off:end], an IP packet (bytes beyond the
// length its header gives are ignored). It checks the replay window before
// and updates it after the ICV verified, and leaves the packet unchanged.
// cap(buf) must leave ScratchLen after end.
func (sa *SA) Open(buf []byte, off, end int) (Opened, error) {
	buf = buf[:cap(buf)]
	if off < 0 || end < off || end+ScratchLen > len(buf) {
		return Opened{}, ErrNoRoom
	}
	pkt := buf[off:end]
	v, n, err := ipLen(pkt)
	if err != nil {
		return Opened{}, fmt.Errorf("ah: spi %#x: %w", sa.spi, err)
	}
	pkt = pkt[:n]
	ahOff, nhOff, err := walk(pkt, -1, false, nil)
	if err != nil {
		return Opened{}, fmt.Errorf("ah: spi %#x: %w", sa.spi, err)
	}
	if ahOff+HeaderLen > n {
		return Opened{}, fmt.Errorf("ah: spi %#x: %d bytes: %w", sa.spi, n, ErrTruncated)
	}
	h := pkt[ahOff:]
	ahLen := (int(h[1]) + 2) * 4
	if want := sa.HeaderLen(v); ahLen != want {
		return Opened{}, fmt.Errorf("ah: spi %#x: AH length %d, want %d: %w", sa.spi, ahLen, want, ErrBadLength)
	}
	if ahOff+ahLen > n {
		return Opened{}, fmt.Errorf("ah: spi %#x: %d bytes: %w", sa.spi, n, ErrTruncated)
	}
	if spi := binary.BigEndian.Uint32(h[4:8]); spi != sa.spi {
		return Opened{}, fmt.Errorf("ah: spi %#x on SA %#x: %w", spi, sa.spi, ErrSPI)
	}
	seq, err := sa.window.Check(binary.BigEndian.Uint32(h[8:12]), sa.esn)
	if err != nil {
		return Opened{}, sa.replayErr(err, seq)
	}
	ok, err := sa.compute(buf, off, off+ahOff, off+n, end, seq, true, false)
	if err != nil {
		return Opened{}, fmt.Errorf("ah: spi %#x seq %d: %w", sa.spi, seq, err)
	}
	if !ok {
		return Opened{}, fmt.Errorf("ah: spi %#x seq %d: %w", sa.spi, seq, ErrAuth)
	}
	if err := sa.window.Accept(seq); err != nil {
		return Opened{}, sa.replayErr(err, seq)
	}
	return Opened{
		AHOff:      off + ahOff,
		NHOff:      off + nhOff,
		PayloadOff: off + ahOff + ahLen,
		End:        off + n,
		NextHeader: h[0],
		Seq:        seq,
	}, nil
}

func (sa *SA) replayErr(err error, seq uint64) error {
	switch {
	case errors.Is(err, replay.ErrReplay):
		return fmt.Errorf("ah: spi %#x seq %d: %w", sa.spi, seq, ErrReplay)
	case errors.Is(err, replay.ErrTooOld):
		return fmt.Errorf("ah: spi %#x seq %d: %w", sa.spi, seq, ErrTooOld)
	case errors.Is(err, replay.ErrZero):
		return fmt.Errorf("ah: spi %#x: %w", sa.spi, ErrSeqZero)
	}
	return fmt.Errorf("ah: spi %#x seq %d: %w", sa.spi, seq, err)
}
