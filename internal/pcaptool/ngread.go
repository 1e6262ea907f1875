package pcaptool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// A pcapng reader of our own: gopacket's trusts the lengths in the file
// and allocates whatever a packet block claims (gigabytes for a few bytes
// of hostile input). This one bounds every block and packet.

// pcapng block types read; others are skipped.
const (
	ngSHB = 0x0a0d0d0a // Section Header Block
	ngIDB = 1          // Interface Description Block
	ngPB  = 2          // Packet Block (obsolete)
	ngSPB = 3          // Simple Packet Block
	ngEPB = 6          // Enhanced Packet Block
)

// maxNgBlock bounds a pcapng block: a packet of outSnaplen with room for
// options.
const maxNgBlock = outSnaplen + 1<<16

var errNgMalformed = errors.New("malformed pcapng file")

type ngIface struct {
	link    layers.LinkType
	snaplen uint32
	tsres   uint8 // if_tsresol: 10^-n, or 2^-n with the top bit set
	tsoff   int64 // if_tsoffset, seconds
}

// ngReader reads the packets of a pcapng file whose interfaces all have
// one link type.
type ngReader struct {
	r      *bufio.Reader
	bo     binary.ByteOrder
	ifaces []ngIface
	link   layers.LinkType
	hasIDB bool
	buf    []byte
}

// newNgReader reads up to the first Interface Description Block, which
// gives the link type.
func newNgReader(r *bufio.Reader) (*ngReader, error) {
	ng := &ngReader{r: r}
	for !ng.hasIDB {
		typ, body, err := ng.block()
		if err == io.EOF {
			return nil, errors.New("pcapng file without an interface")
		}
		if err != nil {
			return nil, err
		}
		if typ == ngEPB || typ == ngPB || typ == ngSPB {
			return nil, fmt.Errorf("%w: packet before any interface", errNgMalformed)
		}
		if err := ng.meta(typ, body); err != nil {
			return nil, err
		}
	}
	return ng, nil
}

// block reads the next block and returns its type and body (valid until
// the next call).
func (ng *ngReader) block() (uint32, []byte, error) {
	h, err := ng.r.Peek(12)
	if len(h) == 0 && err == io.EOF {
		return 0, nil, io.EOF
	}
	if len(h) < 12 {
		return 0, nil, fmt.Errorf("%w: file ends inside a block header", errNgMalformed)
	}
	if binary.LittleEndian.Uint32(h) == ngSHB { // the same either way round
		switch binary.LittleEndian.Uint32(h[8:]) {
		case 0x1a2b3c4d:
			ng.bo = binary.LittleEndian
		case 0x4d3c2b1a:
			ng.bo = binary.BigEndian
		default:
			return 0, nil, fmt.Errorf("%w: bad byte-order magic", errNgMalformed)
		}
	} else if ng.bo == nil {
		return 0, nil, fmt.Errorf("%w: no section header", errNgMalformed)
	}
	typ := ng.bo.Uint32(h)
	n := ng.bo.Uint32(h[4:])
	if n < 12 || n%4 != 0 || n > maxNgBlock {
		return 0, nil, fmt.Errorf("%w: block length %d", errNgMalformed, n)
	}
	if cap(ng.buf) < int(n) {
		ng.buf = make([]byte, n)
	}
	b := ng.buf[:n]
	if _, err := io.ReadFull(ng.r, b); err != nil {
		return 0, nil, fmt.Errorf("%w: file ends inside a block", errNgMalformed)
	}
	if ng.bo.Uint32(b[n-4:]) != n {
		return 0, nil, fmt.Errorf("%w: block lengths differ", errNgMalformed)
	}
	return typ, b[8 : n-4], nil
}

// meta handles a section header or an interface description.
func (ng *ngReader) meta(typ uint32, body []byte) error {
	switch typ {
	case ngSHB:
		if len(body) < 16 || ng.bo.Uint16(body[4:]) != 1 {
			return fmt.Errorf("%w: unsupported section header", errNgMalformed)
		}
		ng.ifaces = ng.ifaces[:0] // interfaces are per section
	case ngIDB:
		if len(body) < 8 {
			return fmt.Errorf("%w: short interface description", errNgMalformed)
		}
		ifc := ngIface{link: layers.LinkType(0), snaplen: ng.bo.Uint32(body[4:]), tsres: 6}
		lt := ng.bo.Uint16(body)
		if lt > 0xff {
			return fmt.Errorf("link type %d not supported; want Ethernet (1), raw IP (101), Linux SLL (113), IPv4 (228) or IPv6 (229)", lt)
		}
		ifc.link = layers.LinkType(lt)
		for opts := body[8:]; len(opts) >= 4; {
			code, l := ng.bo.Uint16(opts), int(ng.bo.Uint16(opts[2:]))
			if code == 0 {
				break
			}
			if 4+l > len(opts) {
				return fmt.Errorf("%w: interface option overruns its block", errNgMalformed)
			}
			v := opts[4 : 4+l]
			switch {
			case code == 9 && l == 1: // if_tsresol
				ifc.tsres = v[0]
			case code == 14 && l == 8: // if_tsoffset
				ifc.tsoff = int64(ng.bo.Uint64(v))
			}
			opts = opts[4+(l+3)&^3:]
		}
		if ifc.tsres&0x80 == 0 && ifc.tsres > 19 || ifc.tsres&0x7f > 63 {
			return fmt.Errorf("%w: timestamp resolution %#x", errNgMalformed, ifc.tsres)
		}
		if !ng.hasIDB {
			ng.link, ng.hasIDB = ifc.link, true
		} else if ifc.link != ng.link {
			return errors.New("pcapng interfaces with different link types are not supported")
		}
		ng.ifaces = append(ng.ifaces, ifc)
	}
	return nil
}

// ReadPacketData returns the next packet, io.EOF at the end.
func (ng *ngReader) ReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	var ci gopacket.CaptureInfo
	for {
		typ, body, err := ng.block()
		if err != nil {
			return nil, ci, err
		}
		var data []byte
		var ifc ngIface
		switch typ {
		case ngEPB, ngPB:
			if len(body) < 20 {
				return nil, ci, fmt.Errorf("%w: short packet block", errNgMalformed)
			}
			idx := int(ng.bo.Uint32(body))
			if typ == ngPB {
				idx = int(ng.bo.Uint16(body))
			}
			if idx >= len(ng.ifaces) {
				return nil, ci, fmt.Errorf("%w: packet on undeclared interface %d", errNgMalformed, idx)
			}
			ifc = ng.ifaces[idx]
			ts := uint64(ng.bo.Uint32(body[4:]))<<32 | uint64(ng.bo.Uint32(body[8:]))
			caplen, length := ng.bo.Uint32(body[12:]), ng.bo.Uint32(body[16:])
			if uint64(caplen) > uint64(len(body)-20) || caplen > length {
				return nil, ci, fmt.Errorf("%w: packet length %d in a block of %d bytes", errNgMalformed, caplen, len(body)+12)
			}
			data = body[20 : 20+caplen]
			ci.Timestamp = ifc.time(ts)
			ci.Length = int(length)
			ci.InterfaceIndex = idx
		case ngSPB:
			if len(body) < 4 || len(ng.ifaces) == 0 {
				return nil, ci, fmt.Errorf("%w: bad simple packet block", errNgMalformed)
			}
			ifc = ng.ifaces[0]
			length := ng.bo.Uint32(body)
			caplen := length
			if ifc.snaplen != 0 && caplen > ifc.snaplen {
				caplen = ifc.snaplen
			}
			if uint64(caplen) > uint64(len(body)-4) {
				return nil, ci, fmt.Errorf("%w: packet length %d in a block of %d bytes", errNgMalformed, caplen, len(body)+12)
			}
			data = body[4 : 4+caplen]
			ci.Length = int(length)
		default:
			if err := ng.meta(typ, body); err != nil {
				return nil, ci, err
			}
			continue
		}
		if len(data) > outSnaplen {
			return nil, ci, fmt.Errorf("packet of %d bytes: larger than %d", len(data), outSnaplen)
		}
		ci.CaptureLength = len(data)
		return append([]byte(nil), data...), ci, nil
	}
}

// time converts a timestamp in the interface's resolution.
func (ifc ngIface) time(ts uint64) time.Time {
	var sec, nsec uint64
	if ifc.tsres&0x80 != 0 {
		shift := uint(ifc.tsres & 0x7f)
		sec = ts >> shift
		hi, lo := bits.Mul64(ts&(1<<shift-1), 1e9)
		nsec = hi<<(64-shift) | lo>>shift // (frac * 1e9) >> shift
	} else {
		unit := uint64(1)
		for i := uint8(0); i < ifc.tsres; i++ {
			unit *= 10
		}
		sec = ts / unit
		frac := ts % unit
		if ifc.tsres <= 9 {
			for i := ifc.tsres; i < 9; i++ {
				frac *= 10
			}
		} else {
			for i := uint8(9); i < ifc.tsres; i++ {
				frac /= 10
			}
		}
		nsec = frac
	}
	return time.Unix(int64(sec)+ifc.tsoff, int64(nsec)).UTC()
}
