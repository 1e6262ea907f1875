package pcaptool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/saspec"
)

// outerTTL is the TTL (hop limit) of tunnel mode's outer header.
const outerTTL = 64

// EncryptOptions configure Encrypt.
type EncryptOptions struct {
	// SA is the outbound SA, ESP or AH; its Seq is the first sequence
	// number used.
	SA *saspec.Spec
	// Mode is esp.Tunnel or esp.Transport (for AH SAs too).
	Mode esp.Mode
	// TunnelSrc and TunnelDst are the outer addresses of tunnel mode, of
	// the same IP version; unset in transport mode.
	TunnelSrc, TunnelDst netip.Addr
	// UDP, when set, wraps ESP in UDP with these ports (RFC 3948); not
	// for AH.
	UDP *esp.UDPPorts
	// Log receives one line per packet that could not be protected; nil
	// discards them.
	Log io.Writer
}

// Validate checks that the options are complete and consistent.
func (o *EncryptOptions) Validate() error {
	if o.SA == nil {
		return errors.New("no SA")
	}
	if o.SA.Proto != saspec.ESP && o.SA.Proto != saspec.AH {
		return fmt.Errorf("SA spi %#x is proto=%s; encrypt supports proto=esp and proto=ah", o.SA.SPI, o.SA.Proto)
	}
	switch o.Mode {
	case esp.Tunnel:
		if !o.TunnelSrc.IsValid() || !o.TunnelDst.IsValid() {
			return errors.New("tunnel mode needs the outer addresses (--tunnel-src and --tunnel-dst)")
		}
		src, dst := o.TunnelSrc.Unmap(), o.TunnelDst.Unmap()
		if src.Is4() != dst.Is4() {
			return fmt.Errorf("tunnel addresses %s and %s are of different IP versions", o.TunnelSrc, o.TunnelDst)
		}
		if src.Zone() != "" || dst.Zone() != "" {
			return errors.New("tunnel addresses take no zone")
		}
	case esp.Transport:
		if o.TunnelSrc.IsValid() || o.TunnelDst.IsValid() {
			return errors.New("tunnel addresses (--tunnel-src, --tunnel-dst) are for tunnel mode only")
		}
	default:
		return fmt.Errorf("mode %s: want tunnel or transport", o.Mode)
	}
	if o.UDP != nil {
		if o.SA.Proto == saspec.AH {
			return fmt.Errorf("UDP encapsulation (--udp-encap, RFC 3948) is for ESP only; SA spi %#x is proto=ah", o.SA.SPI)
		}
		if o.UDP.Src == 0 || o.UDP.Dst == 0 {
			return errors.New("UDP encapsulation ports must not be 0")
		}
	}
	return nil
}

// EncryptStats counts what Encrypt did with the records of a capture.
type EncryptStats struct {
	Packets   int // records read
	Encrypted int // IP packets protected and written
	Failed    int // IP packets that could not be protected, left out (see the log)
	Passed    int // records without an IP packet, written unchanged
	Written   int // records written
}

// String summarises the stats in one line.
func (s *EncryptStats) String() string {
	return fmt.Sprintf("%d packets read: %d encrypted, %d failed, %d non-IP passed through; %d written",
		s.Packets, s.Encrypted, s.Failed, s.Passed, s.Written)
}

// Encrypt reads a pcap or pcapng capture from in, protects each IP packet
// in it with the ESP or AH SA of opts, in tunnel or transport mode (ESP
// optionally inside UDP), and writes a pcap with the input's link type to
// out. Records without an IP packet are copied unchanged; IP packets that
// cannot be protected are left out (never written in clear), logged and
// counted. The error reports bad options and I/O and format failures.
func Encrypt(in io.Reader, out io.Writer, opts *EncryptOptions) (*EncryptStats, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	e := &encrypter{opts: opts, log: opts.Log, src: opts.TunnelSrc.Unmap(), dst: opts.TunnelDst.Unmap()}
	if opts.SA.Proto == saspec.AH {
		cfg, err := opts.SA.AHConfig()
		if err != nil {
			return nil, err
		}
		if e.ah, err = ah.NewSA(cfg); err != nil {
			return nil, fmt.Errorf("spi %#x: %w", opts.SA.SPI, err)
		}
		defer e.ah.Zero()
	} else {
		cfg, err := opts.SA.ESPConfig()
		if err != nil {
			return nil, err
		}
		if e.sa, err = esp.NewSA(cfg); err != nil {
			return nil, fmt.Errorf("spi %#x: %w", opts.SA.SPI, err)
		}
	}
	if e.log == nil {
		e.log = io.Discard
	}

	in2, err := openInput(in)
	if err != nil {
		return nil, err
	}
	w, err := newOutput(out, in2.link, in2.nanos, e.log)
	if err != nil {
		return nil, err
	}
	st := &e.stats
	for {
		data, ci, err := in2.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("packet %d: %w", st.Packets+1, err)
		}
		st.Packets++
		f, ok := locateIP(in2.link, data)
		if !ok {
			st.Passed++
			if err := w.write(ci, data, 0); err != nil {
				return st, fmt.Errorf("packet %d: %w", st.Packets, err)
			}
			st.Written++
			continue
		}
		if ci.CaptureLength < ci.Length {
			st.Failed++
			fmt.Fprintf(e.log, "packet %d: truncated by the capture (%d of %d bytes captured), not encrypted\n", st.Packets, ci.CaptureLength, ci.Length)
			continue
		}
		pkt, err := e.protect(data[f.ipOff:])
		if err != nil {
			st.Failed++
			fmt.Fprintf(e.log, "packet %d: not encrypted: %v\n", st.Packets, err)
			if errors.Is(err, esp.ErrSeqOverflow) || errors.Is(err, ah.ErrSeqOverflow) {
				return st, err
			}
			continue
		}
		rec := rebuild(data, f, pkt)
		if err := w.write(captureInfo(ci, rec), rec, int(pkt[0]>>4)); err != nil {
			return st, fmt.Errorf("packet %d: %w", st.Packets, err)
		}
		st.Encrypted++
		st.Written++
	}
	return st, nil
}

type encrypter struct {
	opts     *EncryptOptions
	sa       *esp.SA // the ESP SA, or nil
	ah       *ah.SA  // the AH SA, or nil
	log      io.Writer
	src, dst netip.Addr
	ipID     uint16
	stats    EncryptStats
}

// protect returns the protected form of the IP packet at the start of ip.
func (e *encrypter) protect(ip []byte) ([]byte, error) {
	var l packet.Layout
	if err := packet.ParseLayout(ip, &l); err != nil {
		return nil, fmt.Errorf("bad IP packet: %w", err)
	}
	ip = ip[:l.End]
	if e.ah != nil {
		if e.opts.Mode == esp.Transport {
			if l.Fragment {
				return nil, errors.New("an IP fragment cannot be protected in transport mode")
			}
			return e.ahTransport(ip)
		}
		return e.ahTunnel(ip)
	}
	udpLen := 0
	if e.opts.UDP != nil {
		udpLen = esp.UDPEncapLen
	}
	if e.opts.Mode == esp.Transport {
		if l.Fragment {
			return nil, errors.New("an IP fragment cannot be protected in transport mode")
		}
		return e.transport(ip, udpLen)
	}
	return e.tunnel(ip, udpLen)
}

func (e *encrypter) transport(ip []byte, udpLen int) ([]byte, error) {
	if n := len(ip) + udpLen + e.sa.Overhead(len(ip)); n > 0xffff+packet.IPv6HeaderLen || (ip[0]>>4 == 4 && n > 0xffff) {
		return nil, fmt.Errorf("protected packet of %d bytes exceeds the IP length limit", n)
	}
	head := udpLen + e.sa.Headroom()
	buf := make([]byte, head+len(ip), head+len(ip)+e.sa.Tailroom())
	copy(buf[head:], ip)
	start, end, err := e.sa.EncapTransport(buf, head, head+len(ip), e.opts.UDP)
	if err != nil {
		return nil, err
	}
	return buf[start:end], nil
}

func (e *encrypter) tunnel(ip []byte, udpLen int) ([]byte, error) {
	outerLen := packet.IPv4MinHeaderLen
	if !e.src.Is4() {
		outerLen = packet.IPv6HeaderLen
	}
	n := udpLen + e.sa.Overhead(len(ip)) + len(ip)
	if (e.src.Is4() && n+outerLen > 0xffff) || n > 0xffff {
		return nil, fmt.Errorf("protected packet of %d bytes exceeds the IP length limit", n+outerLen)
	}
	head := outerLen + udpLen + e.sa.Headroom()
	buf := make([]byte, head+len(ip), head+len(ip)+e.sa.Tailroom())
	copy(buf[head:], ip)
	start, end, err := e.sa.EncapTunnel(buf, head, head+len(ip))
	if err != nil {
		return nil, err
	}
	proto := uint8(packet.ProtoESP)
	if udpLen > 0 {
		start -= udpLen
		proto = packet.ProtoUDP
	}
	start -= outerLen
	pkt := buf[start:end]
	if e.src.Is4() {
		e.ipID++
		h := packet.IPv4(pkt)
		h[0] = 0x45
		h.SetTOS(0)
		h.SetTotalLength(uint16(len(pkt)))
		h.SetID(e.ipID)
		h.SetFlagsFragmentOffset(0, 0)
		h.SetTTL(outerTTL)
		h.SetProtocol(proto)
		h.SetSrc(e.src)
		h.SetDst(e.dst)
		h.ComputeChecksum()
	} else {
		h := packet.IPv6(pkt)
		binary.BigEndian.PutUint32(h[0:4], 6<<28)
		h.SetPayloadLength(uint16(len(pkt) - packet.IPv6HeaderLen))
		h.SetNextHeader(proto)
		h.SetHopLimit(outerTTL)
		h.SetSrc(e.src)
		h.SetDst(e.dst)
	}
	if udpLen > 0 {
		writeUDP(pkt, outerLen, e.opts.UDP, e.src, e.dst)
	}
	return pkt, nil
}

// ahTransport inserts AH into the IP packet ip after its IP header (and
// the IPv6 extension headers that go before it).
func (e *encrypter) ahTransport(ip []byte) ([]byte, error) {
	v := int(ip[0] >> 4)
	head := e.ah.HeaderLen(v)
	if n := len(ip) + head; n > 0xffff+packet.IPv6HeaderLen || (v == 4 && n > 0xffff) {
		return nil, fmt.Errorf("protected packet of %d bytes exceeds the IP length limit", n)
	}
	buf := make([]byte, head+len(ip), head+len(ip)+ah.ScratchLen)
	copy(buf[head:], ip)
	start, end, err := e.ah.EncapTransport(buf, head, head+len(ip))
	if err != nil {
		return nil, err
	}
	return buf[start:end], nil
}

// ahTunnel puts the IP packet ip behind AH and a new outer header. The AH
// engine fills in the outer header's lengths, protocol and checksum; the
// ICV covers its immutable fields, so nothing changes it afterwards.
func (e *encrypter) ahTunnel(ip []byte) ([]byte, error) {
	var outer []byte
	if e.src.Is4() {
		outer = make([]byte, packet.IPv4MinHeaderLen)
		h := packet.IPv4(outer)
		outer[0] = 0x45
		e.ipID++
		h.SetID(e.ipID) // 0 after a wrap: the engine uses the sequence number's low bits
		h.SetTTL(outerTTL)
		h.SetSrc(e.src)
		h.SetDst(e.dst)
	} else {
		outer = make([]byte, packet.IPv6HeaderLen)
		h := packet.IPv6(outer)
		binary.BigEndian.PutUint32(outer[0:4], 6<<28)
		h.SetHopLimit(outerTTL)
		h.SetSrc(e.src)
		h.SetDst(e.dst)
	}
	ahLen := e.ah.HeaderLen(int(outer[0] >> 4))
	n := len(outer) + ahLen + len(ip)
	if (e.src.Is4() && n > 0xffff) || n-packet.IPv6HeaderLen > 0xffff {
		return nil, fmt.Errorf("protected packet of %d bytes exceeds the IP length limit", n)
	}
	head := len(outer) + ahLen
	buf := make([]byte, head+len(ip), head+len(ip)+ah.ScratchLen)
	copy(buf[head:], ip)
	start, end, err := e.ah.EncapTunnel(buf, head, head+len(ip), outer)
	if err != nil {
		return nil, err
	}
	return buf[start:end], nil
}

// writeUDP writes the RFC 3948 UDP header at pkt[off:], covering the rest
// of pkt: checksum 0 over IPv4 (RFC 3948 section 2.1), computed over IPv6.
func writeUDP(pkt []byte, off int, ports *esp.UDPPorts, src, dst netip.Addr) {
	u := pkt[off:]
	binary.BigEndian.PutUint16(u[0:2], ports.Src)
	binary.BigEndian.PutUint16(u[2:4], ports.Dst)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	u[6], u[7] = 0, 0
	if !src.Is4() {
		sum := packet.PseudoHeaderSum(packet.ProtoUDP, src, dst, uint32(len(u)))
		c := ^packet.Checksum(u, uint32(sum))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(u[6:8], c)
	}
}
