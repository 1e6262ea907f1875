package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SOCKS5 protocol values (RFC 1928).
const (
	socksVersion = 5

	socksNoAuth       = 0x00
	socksNoAcceptable = 0xFF

	socksConnect      = 1
	socksUDPAssociate = 3

	socksIPv4   = 1
	socksDomain = 3
	socksIPv6   = 4

	socksSucceeded          = 0
	socksGeneralFailure     = 1
	socksNetUnreachable     = 3
	socksHostUnreachable    = 4
	socksConnRefused        = 5
	socksCmdNotSupported    = 7
	socksAddrTypeNotSupport = 8
)

// socksHandshakeTimeout bounds the greeting and request of a client.
const socksHandshakeTimeout = 30 * time.Second

// ListenSOCKS5 runs a SOCKS5 proxy (RFC 1928, no authentication) on listen
// (host:port, normally loopback): CONNECT and UDP ASSOCIATE requests go out
// through d, into the tunnel.
func ListenSOCKS5(listen string, d Dialer, opts *ServiceOptions) (*Service, error) {
	s := newService(opts)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.addr = ln.Addr()
	s.track(ln)
	s.goTracked(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if s.ctx.Err() == nil {
					s.opts.Logf("socks5: accept: %v", err)
				}
				return
			}
			if !s.track(c) {
				return
			}
			s.goTracked(func() {
				defer s.release(c)
				if err := s.serveSOCKS5(c, d); err != nil && s.ctx.Err() == nil {
					s.opts.Logf("socks5 %v: %v", c.RemoteAddr(), err)
				}
			})
		}
	})
	return s, nil
}

func (s *Service) serveSOCKS5(c net.Conn, d Dialer) error {
	_ = c.SetDeadline(time.Now().Add(socksHandshakeTimeout))
	var b [262]byte
	// Greeting: VER NMETHODS METHODS...
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return err
	}
	if b[0] != socksVersion {
		return fmt.Errorf("version %d", b[0])
	}
	methods := b[2 : 2+int(b[1])]
	if _, err := io.ReadFull(c, methods); err != nil {
		return err
	}
	if !containsByte(methods, socksNoAuth) {
		_, _ = c.Write([]byte{socksVersion, socksNoAcceptable})
		return errors.New("client offers no acceptable authentication method")
	}
	if _, err := c.Write([]byte{socksVersion, socksNoAuth}); err != nil {
		return err
	}
	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return err
	}
	if b[0] != socksVersion {
		return fmt.Errorf("request version %d", b[0])
	}
	cmd := b[1]
	host, port, err := readSOCKSAddr(c, b[3], b[:])
	if err != nil {
		if errors.Is(err, errSOCKSAddrType) {
			writeSOCKSReply(c, socksAddrTypeNotSupport, netip.AddrPort{})
		}
		return err
	}
	switch cmd {
	case socksConnect:
		return s.socksConnect(c, d, net.JoinHostPort(host, strconv.Itoa(int(port))))
	case socksUDPAssociate:
		return s.socksAssociate(c, d, host, port)
	default:
		writeSOCKSReply(c, socksCmdNotSupported, netip.AddrPort{})
		return fmt.Errorf("command %d not supported", cmd)
	}
}

var errSOCKSAddrType = errors.New("socks5: unsupported address type")

// readSOCKSAddr reads DST.ADDR and DST.PORT of type atyp, using buf as
// scratch.
func readSOCKSAddr(r io.Reader, atyp byte, buf []byte) (string, uint16, error) {
	var host string
	switch atyp {
	case socksIPv4, socksIPv6:
		n := 4
		if atyp == socksIPv6 {
			n = 16
		}
		if _, err := io.ReadFull(r, buf[:n+2]); err != nil {
			return "", 0, err
		}
		a, _ := netip.AddrFromSlice(buf[:n])
		return a.Unmap().String(), binary.BigEndian.Uint16(buf[n:]), nil
	case socksDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return "", 0, err
		}
		n := int(buf[0])
		if _, err := io.ReadFull(r, buf[:n+2]); err != nil {
			return "", 0, err
		}
		host = string(buf[:n])
		return host, binary.BigEndian.Uint16(buf[n:]), nil
	}
	return "", 0, errSOCKSAddrType
}

// appendSOCKSAddr appends ATYP DST.ADDR DST.PORT for ap.
func appendSOCKSAddr(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().Unmap()
	if a.Is6() {
		b = append(b, socksIPv6)
		b = append(b, a.AsSlice()...)
	} else {
		if !a.IsValid() {
			a = netip.IPv4Unspecified()
		}
		b = append(b, socksIPv4)
		b = append(b, a.AsSlice()...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func writeSOCKSReply(w io.Writer, code byte, bnd netip.AddrPort) error {
	b := appendSOCKSAddr([]byte{socksVersion, code, 0}, bnd)
	_, err := w.Write(b)
	return err
}

// socksReplyCode maps a dial error to a SOCKS5 reply code. gVisor's errors
// are plain strings, so this goes by their text.
func socksReplyCode(err error) byte {
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "refused"):
		return socksConnRefused
	case strings.Contains(msg, "network is unreachable") || strings.Contains(msg, "no route"):
		return socksNetUnreachable
	case strings.Contains(msg, "unreachable") || strings.Contains(msg, "timeout") ||
		strings.Contains(msg, "timed out") || strings.Contains(msg, "deadline") ||
		strings.Contains(msg, "no such host"):
		return socksHostUnreachable
	}
	return socksGeneralFailure
}

func (s *Service) socksConnect(c net.Conn, d Dialer, target string) error {
	up, err := s.dial(d.DialContext, "tcp", target)
	if err != nil {
		writeSOCKSReply(c, socksReplyCode(err), netip.AddrPort{})
		return fmt.Errorf("connect %s: %w", target, err)
	}
	if !s.track(up) {
		return nil
	}
	defer s.release(up)
	bnd, _ := addrPortOf(up.LocalAddr())
	if err := writeSOCKSReply(c, socksSucceeded, bnd); err != nil {
		return err
	}
	_ = c.SetDeadline(time.Time{})
	splice(c, up)
	return nil
}

// socksAssociate relays UDP for the client until its control connection
// closes (RFC 1928 section 7). Each destination gets its own connected
// socket in the tunnel; replies come back with the SOCKS UDP header.
func (s *Service) socksAssociate(c net.Conn, d Dialer, host string, port uint16) error {
	// The relay listens on the address the client reached us on.
	local, _ := addrPortOf(c.LocalAddr())
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		writeSOCKSReply(c, socksGeneralFailure, netip.AddrPort{})
		return err
	}
	if !s.track(pc) {
		return nil
	}
	bnd, _ := addrPortOf(pc.LocalAddr())
	if err := writeSOCKSReply(c, socksSucceeded, bnd); err != nil {
		s.release(pc)
		return err
	}
	_ = c.SetDeadline(time.Time{})

	// Datagrams are accepted only from the control connection's host, and
	// from the port the client announced if it announced one.
	remote, _ := addrPortOf(c.RemoteAddr())
	a := &socksAssoc{s: s, d: d, pc: pc, clientIP: remote.Addr(), dests: map[string]net.Conn{}}
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
		a.clientIP = ip.Unmap()
	}
	if port != 0 {
		a.client = netip.AddrPortFrom(a.clientIP, port)
	}
	done := make(chan struct{})
	s.goTracked(func() {
		defer close(done)
		a.run()
	})
	// The association lasts as long as the control connection.
	_, _ = io.Copy(io.Discard, c)
	s.release(pc)
	<-done
	a.closeAll()
	return nil
}

type socksAssoc struct {
	s        *Service
	d        Dialer
	pc       *net.UDPConn
	clientIP netip.Addr

	mu     sync.Mutex
	client netip.AddrPort // fixed by the request or the first datagram
	dests  map[string]net.Conn
	closed bool
}

// socksUDPHeaderMax is the longest SOCKS UDP header we write (IPv6).
const socksUDPHeaderMax = 3 + 1 + 16 + 2

func (a *socksAssoc) run() {
	buf := make([]byte, 65535)
	scratch := make([]byte, 262)
	for {
		n, from, err := a.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != a.clientIP {
			continue
		}
		a.mu.Lock()
		if !a.client.IsValid() {
			a.client = from
		}
		ok := a.client == from
		a.mu.Unlock()
		if !ok {
			continue
		}
		p := buf[:n]
		// RSV RSV FRAG ATYP DST.ADDR DST.PORT DATA; fragments are dropped.
		if len(p) < 4 || p[2] != 0 {
			continue
		}
		r := bytesReader{p[4:]}
		host, port, err := readSOCKSAddr(&r, p[3], scratch)
		if err != nil {
			continue
		}
		up := a.dest(net.JoinHostPort(host, strconv.Itoa(int(port))))
		if up == nil {
			continue
		}
		if _, err := up.Write(r.b); err != nil {
			a.s.opts.Logf("socks5 udp to %s: %v", host, err)
		}
	}
}

// dest finds or dials the tunnel socket for a destination.
func (a *socksAssoc) dest(target string) net.Conn {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	if up := a.dests[target]; up != nil {
		return up
	}
	if len(a.dests) >= a.s.opts.MaxUDPSessions {
		return nil
	}
	up, err := a.s.dial(a.d.DialContext, "udp", target)
	if err != nil {
		a.s.opts.Logf("socks5 udp %s: %v", target, err)
		return nil
	}
	if !a.s.track(up) {
		return nil
	}
	a.dests[target] = up
	src, _ := addrPortOf(up.RemoteAddr())
	a.s.goTracked(func() {
		buf := make([]byte, socksUDPHeaderMax+65535)
		for {
			n, err := up.Read(buf[socksUDPHeaderMax:])
			if err != nil {
				return
			}
			h := appendSOCKSAddr(append(buf[:0:socksUDPHeaderMax], 0, 0, 0), src)
			start := socksUDPHeaderMax - len(h)
			copy(buf[start:], h)
			a.mu.Lock()
			client := a.client
			a.mu.Unlock()
			if _, err := a.pc.WriteToUDPAddrPort(buf[start:socksUDPHeaderMax+n], client); err != nil {
				return
			}
		}
	})
	return up
}

func (a *socksAssoc) closeAll() {
	a.mu.Lock()
	a.closed = true
	dests := a.dests
	a.dests = nil
	a.mu.Unlock()
	for _, up := range dests {
		a.s.release(up)
	}
}

// bytesReader reads from a byte slice and leaves the rest in b.
type bytesReader struct{ b []byte }

func (r *bytesReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}
