// Package pcaptool holds the offline capture tools behind `goipsec pcap`:
// decrypting and verifying the ESP and AH packets of a capture with known
// SAs, and protecting the IP packets of a capture with an ESP or AH SA.
package pcaptool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/gopacket"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/replay"
	"github.com/goipsec/goipsec/internal/saspec"
)

// NATTPort is the UDP port of RFC 3948 ESP-in-UDP.
const NATTPort = 4500

// DecryptOptions configure Decrypt.
type DecryptOptions struct {
	// SAs are the inbound ESP and AH SAs, found by SPI; SPIs must be
	// distinct. A spec's Seq is the first sequence number expected: those
	// before it count as already received, and with ESN it gives the
	// high-order bits of a capture that starts late in the SA's life.
	SAs []*saspec.Spec
	// UDPPorts are the UDP ports that carry ESP (when either side uses
	// one); nil means NATTPort.
	UDPPorts []uint16
	// Log receives one line per packet that was rejected or dropped; nil
	// discards them.
	Log io.Writer
}

// DecryptStats counts what Decrypt did with the records of a capture.
type DecryptStats struct {
	Packets    int // records read
	IPsec      int // ESP and AH packets found
	Decrypted  int // ESP packets verified, decrypted and written
	Verified   int // AH packets verified and written without AH
	Rejected   int // IPsec packets dropped as invalid (see the log)
	Dummy      int // verified dummy packets (next header 59), dropped
	IKE        int // IKE messages on a NAT-T port (non-ESP marker), passed through
	Keepalives int // NAT-T keepalives, passed through
	Passed     int // other records, written unchanged
	Written    int // records written
}

// String summarises the stats in one line.
func (s *DecryptStats) String() string {
	return fmt.Sprintf("%d packets read: %d IPsec (%d decrypted, %d AH verified, %d rejected, %d dummy), %d IKE, %d NAT-T keepalives, %d other passed through; %d written",
		s.Packets, s.IPsec, s.Decrypted, s.Verified, s.Rejected, s.Dummy, s.IKE, s.Keepalives, s.Passed, s.Written)
}

// Decrypt reads a pcap or pcapng capture from in, verifies and decrypts its
// ESP packets (also ESP in UDP) and verifies its AH packets with the SAs of
// opts, and writes a pcap with the input's link type to out: tunnel-mode
// packets become the inner packet, transport-mode packets the IP packet
// without ESP or AH, and records that are not IPsec are copied unchanged.
// Rejected packets are left out, logged and counted; the error reports
// only I/O and format failures.
func Decrypt(in io.Reader, out io.Writer, opts *DecryptOptions) (*DecryptStats, error) {
	d := &decrypter{log: opts.Log, esp: map[uint32]*esp.SA{}, ah: map[uint32]*ah.SA{}}
	if d.log == nil {
		d.log = io.Discard
	}
	for _, sp := range opts.SAs {
		if _, dup := d.esp[sp.SPI]; dup {
			return nil, fmt.Errorf("two SAs with spi %#x", sp.SPI)
		}
		if _, dup := d.ah[sp.SPI]; dup {
			return nil, fmt.Errorf("two SAs with spi %#x", sp.SPI)
		}
		switch sp.Proto {
		case saspec.ESP:
			cfg, err := sp.ESPConfig()
			if err != nil {
				return nil, err
			}
			sa, err := esp.NewSA(cfg)
			if err != nil {
				return nil, fmt.Errorf("spi %#x: %w", sp.SPI, err)
			}
			if err := firstSeq(sa.Window(), sp); err != nil {
				return nil, err
			}
			d.esp[sp.SPI] = sa
		case saspec.AH:
			cfg, err := sp.AHConfig()
			if err != nil {
				return nil, err
			}
			sa, err := ah.NewSA(cfg)
			if err != nil {
				return nil, fmt.Errorf("spi %#x: %w", sp.SPI, err)
			}
			defer sa.Zero()
			if err := firstSeq(sa.Window(), sp); err != nil {
				return nil, err
			}
			d.ah[sp.SPI] = sa
		default:
			return nil, fmt.Errorf("spi %#x: proto=%s not supported", sp.SPI, sp.Proto)
		}
	}
	d.ports = opts.UDPPorts
	if d.ports == nil {
		d.ports = []uint16{NATTPort}
	}

	src, err := openInput(in)
	if err != nil {
		return nil, err
	}
	dst, err := newOutput(out, src.link, src.nanos, d.log)
	if err != nil {
		return nil, err
	}
	st := &d.stats
	for {
		data, ci, err := src.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("packet %d: %w", st.Packets+1, err)
		}
		st.Packets++
		rec, version := d.packet(src, data, ci)
		if rec == nil {
			continue
		}
		wci := ci
		if version != 0 {
			wci = captureInfo(ci, rec)
		}
		if err := dst.write(wci, rec, version); err != nil {
			return st, fmt.Errorf("packet %d: %w", st.Packets, err)
		}
		st.Written++
	}
	return st, nil
}

// firstSeq sets up the anti-replay window w of the inbound SA sp for its
// first expected sequence number: the packets before it count as received
// (replays, or too old for the window), and with ESN it gives the
// high-order bits of a capture that starts late in the SA's life.
func firstSeq(w *replay.Window, sp *saspec.Spec) error {
	if sp.Seq <= 1 {
		return nil
	}
	lo := uint64(1)
	if n := uint64(w.Size()); sp.Seq > n {
		lo = sp.Seq - n
	}
	if w.Size() == 0 {
		lo = sp.Seq - 1 // anti-replay off: only the high-order bits matter
	}
	for s := lo; s < sp.Seq; s++ {
		if err := w.Accept(s); err != nil {
			return fmt.Errorf("spi %#x: seq=%d: %w", sp.SPI, sp.Seq, err)
		}
	}
	return nil
}

type decrypter struct {
	log   io.Writer
	esp   map[uint32]*esp.SA
	ah    map[uint32]*ah.SA
	ports []uint16
	stats DecryptStats
}

func (d *decrypter) reject(format string, args ...any) {
	d.stats.Rejected++
	fmt.Fprintf(d.log, "packet %d: %s\n", d.stats.Packets, fmt.Sprintf(format, args...))
}

// packet handles one record and returns the record to write (nil for none)
// and, when it is a new record holding a decrypted IP packet, its version.
func (d *decrypter) packet(src *input, data []byte, ci gopacket.CaptureInfo) ([]byte, int) {
	st := &d.stats
	f, ok := locateIP(src.link, data)
	if !ok {
		st.Passed++
		return data, 0
	}
	ip := data[f.ipOff:]
	var l packet.Layout
	if err := packet.ParseLayout(ip, &l); err != nil {
		if ci.CaptureLength < ci.Length && d.wouldBeIPsec(ip, ci.Length-ci.CaptureLength) {
			st.IPsec++
			d.reject("IPsec packet truncated by the capture (%d of %d bytes captured)", ci.CaptureLength, ci.Length)
			return nil, 0
		}
		st.Passed++
		return data, 0
	}
	ip = ip[:l.End]

	espOff, espEnd := l.ProtoOff, l.End
	switch l.Proto {
	case packet.ProtoESP:
	case packet.ProtoAH:
		st.IPsec++
		if l.Fragment {
			d.reject("AH in an IP fragment: reassembly not supported")
			return nil, 0
		}
		pkt := d.ahPacket(ip, &l)
		if pkt == nil {
			return nil, 0
		}
		return rebuild(data, f, pkt), int(pkt[0] >> 4)
	case packet.ProtoUDP:
		if l.FragmentOffset != 0 {
			st.Passed++
			return data, 0
		}
		u := ip[l.ProtoOff:]
		if len(u) < 8 || !d.isNATTPort(u) {
			st.Passed++
			return data, 0
		}
		if l.Fragment {
			st.IPsec++
			d.reject("UDP-encapsulated packet in an IP fragment: reassembly not supported")
			return nil, 0
		}
		ulen := int(binary.BigEndian.Uint16(u[4:6]))
		if ulen < 8 || ulen > len(u) {
			st.IPsec++
			d.reject("ESP in UDP: UDP length %d, %d bytes in the IP packet", ulen, len(u))
			return nil, 0
		}
		payload := u[8:ulen]
		switch {
		case len(payload) == 1 && payload[0] == 0xff:
			st.Keepalives++
			return data, 0
		case len(payload) >= 4 && binary.BigEndian.Uint32(payload) == 0:
			st.IKE++
			return data, 0
		}
		espOff, espEnd = l.ProtoOff+8, l.ProtoOff+ulen
	default:
		st.Passed++
		return data, 0
	}

	st.IPsec++
	if l.Fragment {
		d.reject("ESP in an IP fragment: reassembly not supported")
		return nil, 0
	}
	espPkt := ip[espOff:espEnd]
	if len(espPkt) < esp.HeaderLen {
		d.reject("ESP packet of %d bytes: truncated", len(espPkt))
		return nil, 0
	}
	spi := binary.BigEndian.Uint32(espPkt[0:4])
	seq := binary.BigEndian.Uint32(espPkt[4:8])
	sa := d.esp[spi]
	if sa == nil {
		if d.ah[spi] != nil {
			d.reject("spi %#x seq %d: ESP packet for an AH SA", spi, seq)
		} else {
			d.reject("spi %#x seq %d: unknown SPI", spi, seq)
		}
		return nil, 0
	}

	// The IP packet up to the ESP packet's end, with the scratch room Open needs.
	buf := make([]byte, espEnd, espEnd+esp.ScratchLen)
	copy(buf, ip[:espEnd])
	pstart, pend, nh, fullSeq, err := sa.Open(buf, espOff, espEnd)
	if errors.Is(err, esp.ErrDummy) {
		st.Dummy++
		fmt.Fprintf(d.log, "packet %d: spi %#x seq %d: dummy packet, dropped\n", st.Packets, spi, fullSeq)
		return nil, 0
	}
	if err != nil {
		d.reject("spi %#x seq %d: %s", spi, seq, reason(err))
		return nil, 0
	}
	var pkt []byte
	switch nh {
	case packet.ProtoIPv4, packet.ProtoIPv6:
		pkt, err = tunnelInner(buf[pstart:pend], nh)
	default:
		pkt, err = transportPacket(buf[:l.ProtoOff], l.ProtoNHOff, nh, buf[pstart:pend])
	}
	if err != nil {
		d.reject("spi %#x seq %d: %v", spi, fullSeq, err)
		return nil, 0
	}
	st.Decrypted++
	return rebuild(data, f, pkt), int(pkt[0] >> 4)
}

// ahPacket verifies the AH packet ip (trimmed to its IP length), whose
// AH header l locates (after the IPv4 header or the IPv6 extension headers
// before it), and returns what to write: the inner packet of tunnel mode
// (AH's next header IPv4 or IPv6), otherwise the packet without AH. It
// returns nil for a rejected packet.
func (d *decrypter) ahPacket(ip []byte, l *packet.Layout) []byte {
	h := ip[l.ProtoOff:]
	if len(h) < ah.HeaderLen {
		d.reject("AH header of %d bytes: truncated", len(h))
		return nil
	}
	spi := binary.BigEndian.Uint32(h[4:8])
	seq := binary.BigEndian.Uint32(h[8:12])
	sa := d.ah[spi]
	if sa == nil {
		if d.esp[spi] != nil {
			d.reject("spi %#x seq %d: AH packet for an ESP SA", spi, seq)
		} else {
			d.reject("spi %#x seq %d: unknown SPI", spi, seq)
		}
		return nil
	}
	// A copy with the scratch room Open needs; Open leaves it unchanged.
	buf := make([]byte, len(ip), len(ip)+ah.ScratchLen)
	copy(buf, ip)
	o, err := sa.Open(buf, 0, len(buf))
	if err != nil {
		d.reject("spi %#x seq %d: %s", spi, seq, reason(err))
		return nil
	}
	var pkt []byte
	switch o.NextHeader {
	case packet.ProtoIPv4, packet.ProtoIPv6:
		pkt, err = tunnelInner(buf[o.PayloadOff:o.End], o.NextHeader)
	default:
		pkt, err = transportPacket(buf[:o.AHOff], o.NHOff, o.NextHeader, buf[o.PayloadOff:o.End])
	}
	if err != nil {
		d.reject("spi %#x seq %d: %v", spi, o.Seq, err)
		return nil
	}
	d.stats.Verified++
	return pkt
}

func (d *decrypter) isNATTPort(udp []byte) bool {
	sp := binary.BigEndian.Uint16(udp[0:2])
	dp := binary.BigEndian.Uint16(udp[2:4])
	for _, p := range d.ports {
		if sp == p || dp == p {
			return true
		}
	}
	return false
}

// wouldBeIPsec reports whether the truncated packet ip, missing bytes at
// its end, carries ESP, AH or UDP on a NAT-T port.
func (d *decrypter) wouldBeIPsec(ip []byte, missing int) bool {
	if missing > 1<<16 {
		return false
	}
	full := make([]byte, len(ip)+missing)
	copy(full, ip)
	var l packet.Layout
	if packet.ParseLayout(full, &l) != nil {
		return false
	}
	switch l.Proto {
	case packet.ProtoESP, packet.ProtoAH:
		return true
	case packet.ProtoUDP:
		// Only if the ports were captured.
		return l.ProtoOff+4 <= len(ip) && d.isNATTPort(full[l.ProtoOff:])
	}
	return false
}

// reason words an ESP or AH error for the per-packet report.
func reason(err error) string {
	switch {
	case errors.Is(err, esp.ErrAuth), errors.Is(err, ah.ErrAuth):
		return "bad ICV"
	case errors.Is(err, esp.ErrReplay), errors.Is(err, ah.ErrReplay):
		return "replay (sequence number already received)"
	case errors.Is(err, esp.ErrTooOld), errors.Is(err, ah.ErrTooOld):
		return "replay window: sequence number too old"
	case errors.Is(err, esp.ErrSeqZero), errors.Is(err, ah.ErrSeqZero):
		return "sequence number 0"
	case errors.Is(err, esp.ErrTruncated):
		return "truncated: shorter than the ESP header, IV and ICV"
	case errors.Is(err, esp.ErrBadLength):
		return "bad length: " + err.Error()
	case errors.Is(err, esp.ErrBadPadding):
		return "bad padding"
	case errors.Is(err, ah.ErrTruncated):
		return "truncated: shorter than the AH header and ICV"
	case errors.Is(err, ah.ErrBadLength):
		return "bad length: the AH header's length does not match the SA's integrity algorithm"
	case errors.Is(err, ah.ErrFragment):
		return "IP fragment: reassembly not supported"
	case errors.Is(err, ah.ErrBadHeader):
		return "malformed IP header, IPv4 options or IPv6 extension headers"
	}
	return err.Error()
}

// tunnelInner checks the decrypted tunnel-mode payload p and returns the
// inner IP packet without TFC padding.
func tunnelInner(p []byte, nh uint8) ([]byte, error) {
	var n int
	switch nh {
	case packet.ProtoIPv4:
		ip, err := packet.ParseIPv4(p)
		if err != nil {
			return nil, fmt.Errorf("inner IPv4 packet: %w", err)
		}
		n = len(ip)
	case packet.ProtoIPv6:
		ip, err := packet.ParseIPv6(p)
		if err != nil {
			return nil, fmt.Errorf("inner IPv6 packet: %w", err)
		}
		n = len(ip)
	}
	return p[:n], nil // the rest is TFC padding (RFC 4303 section 2.7)
}

// transportPacket rebuilds a transport-mode IP packet: the outer IP header
// chain hdr (without ESP or its UDP header), whose byte at nhOff named ESP
// (or UDP), then the decrypted payload, with that byte set to nh and the
// lengths and IPv4 checksum fixed.
func transportPacket(hdr []byte, nhOff int, nh uint8, payload []byte) ([]byte, error) {
	n := len(hdr) + len(payload)
	pkt := make([]byte, 0, n)
	pkt = append(pkt, hdr...)
	pkt = append(pkt, payload...)
	pkt[nhOff] = nh
	if pkt[0]>>4 == 4 {
		ip := packet.IPv4(pkt)
		ip.SetTotalLength(uint16(n))
		ip.ComputeChecksum()
	} else {
		packet.IPv6(pkt).SetPayloadLength(uint16(n - packet.IPv6HeaderLen))
	}
	return pkt, nil
}
