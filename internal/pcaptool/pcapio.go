package pcaptool

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Link types read (LINKTYPE_* values of the pcap format).
const (
	LinkEthernet = layers.LinkTypeEthernet // 1
	LinkRaw      = layers.LinkTypeRaw      // 101: raw IPv4 or IPv6
	LinkSLL      = layers.LinkTypeLinuxSLL // 113: Linux cooked capture v1
	LinkIPv4     = layers.LinkTypeIPv4     // 228
	LinkIPv6     = layers.LinkTypeIPv6     // 229
)

// outSnaplen is the snap length written to output files: larger than any
// IP packet, so that grown (encrypted) packets never exceed it.
const outSnaplen = 262144

// EtherTypes of IPv4 and IPv6 (also the SLL protocol values).
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

type packetReader interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// input is an opened capture: pcap (also gzipped) or pcapng with a single
// link type.
type input struct {
	r     packetReader
	link  layers.LinkType
	nanos bool
}

// pcapngMagic is the block type of a pcapng Section Header Block.
var pcapngMagic = []byte{0x0a, 0x0d, 0x0d, 0x0a}

func openInput(r io.Reader) (*input, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("input is empty or too short for a capture file")
		}
		return nil, fmt.Errorf("reading input: %w", err)
	}
	in := &input{}
	if bytes.Equal(magic, pcapngMagic) {
		ng, err := newNgReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading pcapng: %w", err)
		}
		in.r, in.link, in.nanos = ng, ng.link, true
	} else {
		// gopacket keeps link types in a byte: check the file's own value.
		if lt, ok := pcapLinkType(br); ok && lt > 0xff {
			return nil, fmt.Errorf("link type %d not supported; want Ethernet (1), raw IP (101), Linux SLL (113), IPv4 (228) or IPv6 (229)", lt)
		}
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading pcap: %w (want a pcap or pcapng file)", err)
		}
		// Like tcpdump, take packets up to the largest snap length whatever
		// the header says: some writers store packets beyond their snaplen,
		// and a hostile header must not allow huge allocations.
		pr.SetSnaplen(outSnaplen)
		in.r, in.link = pr, pr.LinkType()
		in.nanos = pr.Resolution() == gopacket.TimestampResolutionNanosecond
	}
	switch in.link {
	case LinkEthernet, LinkRaw, LinkSLL, LinkIPv4, LinkIPv6:
	default:
		return nil, fmt.Errorf("link type %s not supported; want Ethernet (1), raw IP (101), Linux SLL (113), IPv4 (228) or IPv6 (229)", linkName(in.link))
	}
	return in, nil
}

// linkName names a link type with its number, e.g. "IPv4 (228)".
func linkName(lt layers.LinkType) string {
	var n string
	switch lt {
	case LinkEthernet:
		n = "Ethernet"
	case LinkRaw:
		n = "raw IP"
	case LinkSLL:
		n = "Linux SLL"
	case LinkIPv4:
		n = "IPv4"
	case LinkIPv6:
		n = "IPv6"
	default:
		return fmt.Sprintf("%d", int(lt))
	}
	return fmt.Sprintf("%s (%d)", n, int(lt))
}

// pcapLinkType reads the link type from a pcap file header without
// consuming input; ok is false when it cannot tell.
func pcapLinkType(br *bufio.Reader) (lt uint32, ok bool) {
	h, err := br.Peek(24)
	if err != nil {
		return 0, false
	}
	switch binary.LittleEndian.Uint32(h[0:4]) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		return binary.LittleEndian.Uint32(h[20:24]), true
	case 0xd4c3b2a1, 0x4d3cb2a1:
		return binary.BigEndian.Uint32(h[20:24]), true
	}
	return 0, false
}

// next returns the next record, io.EOF at the end.
func (in *input) next() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := in.r.ReadPacketData()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ci, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ci, errors.New("capture file ends in the middle of a packet")
		}
		return nil, ci, err
	}
	return data, ci, nil
}

// output writes pcap records with the input's link type. For the IPv4 and
// IPv6 link types, a packet of the other version switches the whole file to
// raw IP (101), which is still correct for the packets already written; that
// needs an output that can seek back to the header.
type output struct {
	w      io.Writer
	pw     *pcapgo.Writer
	link   layers.LinkType
	notice io.Writer
	n      int
}

func newOutput(w io.Writer, link layers.LinkType, nanos bool, notice io.Writer) (*output, error) {
	o := &output{w: w, link: link, notice: notice}
	if nanos {
		o.pw = pcapgo.NewWriterNanos(w)
	} else {
		o.pw = pcapgo.NewWriter(w)
	}
	if err := o.pw.WriteFileHeader(outSnaplen, link); err != nil {
		return nil, fmt.Errorf("writing output: %w", err)
	}
	return o, nil
}

// write writes a record; version is the IP version of the packet in it (0
// when it is not an IP packet written by us).
func (o *output) write(ci gopacket.CaptureInfo, data []byte, version int) error {
	if (o.link == LinkIPv4 && version == 6) || (o.link == LinkIPv6 && version == 4) {
		if err := o.switchToRaw(version); err != nil {
			return err
		}
	}
	if err := o.pw.WritePacket(ci, data); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	o.n++
	return nil
}

func (o *output) switchToRaw(version int) error {
	ws, ok := o.w.(io.WriteSeeker)
	if !ok {
		return fmt.Errorf("an IPv%d packet cannot be written with link type %s, and the output cannot seek to switch to raw IP (101)", version, linkName(o.link))
	}
	cur, err := ws.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = ws.Seek(20, io.SeekStart)
	}
	if err == nil {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(LinkRaw))
		_, err = ws.Write(b[:])
	}
	if err == nil {
		_, err = ws.Seek(cur, io.SeekStart)
	}
	if err != nil {
		return fmt.Errorf("switching output to raw IP: %w", err)
	}
	if o.notice != nil {
		fmt.Fprintf(o.notice, "note: output link type changed from %s to raw IP (101): it holds both IPv4 and IPv6 packets\n", linkName(o.link))
	}
	o.link = LinkRaw
	return nil
}

// frame locates the IP packet in a record of the given link type.
type frame struct {
	ipOff   int // start of the IP packet
	typeOff int // offset of the EtherType / protocol field to fix; -1 if none
}

// locateIP finds the IP packet in data; ok is false for records that hold
// no IPv4 or IPv6 packet (ARP, LLDP, truncated link headers...).
func locateIP(link layers.LinkType, data []byte) (f frame, ok bool) {
	f.typeOff = -1
	switch link {
	case LinkEthernet:
		off := 12
		for {
			if len(data) < off+2 {
				return f, false
			}
			et := binary.BigEndian.Uint16(data[off:])
			if et == 0x8100 || et == 0x88a8 || et == 0x9100 { // VLAN tags
				off += 4
				continue
			}
			if et != etherTypeIPv4 && et != etherTypeIPv6 {
				return f, false
			}
			f.ipOff, f.typeOff = off+2, off
			break
		}
	case LinkSLL:
		if len(data) < 16 {
			return f, false
		}
		f.ipOff, f.typeOff = 16, 14
	case LinkRaw, LinkIPv4, LinkIPv6:
	default:
		return f, false
	}
	if f.typeOff >= 0 {
		et := binary.BigEndian.Uint16(data[f.typeOff:])
		if et != etherTypeIPv4 && et != etherTypeIPv6 {
			return f, false
		}
	}
	if len(data) <= f.ipOff {
		return f, false
	}
	v := data[f.ipOff] >> 4
	return f, v == 4 || v == 6
}

// rebuild returns a new record: the link header of the original record
// (data[:f.ipOff]) with its EtherType fixed for pkt's IP version, then pkt.
func rebuild(data []byte, f frame, pkt []byte) []byte {
	out := make([]byte, 0, f.ipOff+len(pkt))
	out = append(out, data[:f.ipOff]...)
	out = append(out, pkt...)
	if f.typeOff >= 0 {
		et := uint16(etherTypeIPv4)
		if pkt[0]>>4 == 6 {
			et = etherTypeIPv6
		}
		binary.BigEndian.PutUint16(out[f.typeOff:], et)
	}
	return out
}

func captureInfo(ci gopacket.CaptureInfo, data []byte) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: ci.Timestamp, CaptureLength: len(data), Length: len(data), InterfaceIndex: ci.InterfaceIndex}
}
