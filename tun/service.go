package tun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun/netstack"
)

// Dialer opens connections through the tunnel; *netstack.Net implements it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// ServiceOptions tune a Service. The zero value is a good default.
type ServiceOptions struct {
	// Logf, if set, gets a line for each connection or session that fails.
	Logf func(format string, args ...any)
	// DialTimeout bounds each outgoing dial; 0 means 10 seconds.
	DialTimeout time.Duration
	// UDPIdle ends a UDP session after this long without traffic; 0 means
	// 2 minutes.
	UDPIdle time.Duration
	// MaxUDPSessions bounds the UDP sessions of one service; 0 means 1024.
	MaxUDPSessions int
}

func (o *ServiceOptions) withDefaults() ServiceOptions {
	var r ServiceOptions
	if o != nil {
		r = *o
	}
	if r.Logf == nil {
		r.Logf = func(string, ...any) {}
	}
	if r.DialTimeout <= 0 {
		r.DialTimeout = 10 * time.Second
	}
	if r.UDPIdle <= 0 {
		r.UDPIdle = 2 * time.Minute
	}
	if r.MaxUDPSessions <= 0 {
		r.MaxUDPSessions = 1024
	}
	return r
}

// Service is a running helper: a SOCKS5 proxy, a port forward or an
// exposed port. Close stops it, closes its connections and waits for its
// goroutines.
type Service struct {
	opts   ServiceOptions
	addr   net.Addr
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	open   map[io.Closer]struct{} // listeners and connections
}

func newService(o *ServiceOptions) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{opts: o.withDefaults(), ctx: ctx, cancel: cancel, open: map[io.Closer]struct{}{}}
}

// Addr returns the address the service listens on.
func (s *Service) Addr() net.Addr { return s.addr }

// Close stops the service and waits until all its goroutines have ended.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	open := s.open
	s.open = nil
	s.mu.Unlock()
	s.cancel()
	for c := range open {
		forceClose(c)
	}
	s.wg.Wait()
	return nil
}

// track registers c to be closed by Close; it reports false (and closes c)
// when the service is already closed.
func (s *Service) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		forceClose(c)
		return false
	}
	s.open[c] = struct{}{}
	return true
}

// release closes c and forgets it.
func (s *Service) release(c io.Closer) {
	s.mu.Lock()
	if s.open != nil {
		delete(s.open, c)
	}
	s.mu.Unlock()
	forceClose(c)
}

// goTracked runs f on a goroutine that Close waits for.
func (s *Service) goTracked(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// forceClose unblocks every pending call on c and closes it: gVisor's
// listener needs Shutdown, deadlines wake blocked reads and writes.
func forceClose(c io.Closer) {
	if sh, ok := c.(interface{ Shutdown() }); ok {
		sh.Shutdown()
	}
	if d, ok := c.(interface{ SetDeadline(time.Time) error }); ok {
		_ = d.SetDeadline(time.Unix(1, 0))
	}
	_ = c.Close()
}

func (s *Service) dial(d func(ctx context.Context, network, address string) (net.Conn, error), network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.DialTimeout)
	defer cancel()
	return d(ctx, network, address)
}

// serveTCP accepts on ln and splices each connection with one dialled by
// dial.
func (s *Service) serveTCP(ln net.Listener, dial func() (net.Conn, error)) {
	s.goTracked(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if s.ctx.Err() == nil {
					s.opts.Logf("accept on %v: %v", ln.Addr(), err)
				}
				return
			}
			if !s.track(c) {
				return
			}
			s.goTracked(func() {
				up, err := dial()
				if err != nil {
					s.opts.Logf("forward from %v: %v", c.RemoteAddr(), err)
					s.release(c)
					return
				}
				if !s.track(up) {
					s.release(c)
					return
				}
				splice(c, up)
				s.release(c)
				s.release(up)
			})
		}
	})
}

// splice copies both ways until both directions end; a clean end of one
// direction is passed on as a half-close, an error ends both.
func splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(b, a)
	}()
	pipe(a, b)
	<-done
}

func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
	}
	// An error, or no half-close: end both directions.
	forceClose(dst)
	forceClose(src)
}

// udpRelay serves a datagram socket: each client address gets its own
// upstream connection (made by dial) whose replies go back to that client.
type udpRelay struct {
	s     *Service
	pc    net.PacketConn
	dial  func() (net.Conn, error)
	mu    sync.Mutex
	peers map[netip.AddrPort]*udpSession
}

type udpSession struct {
	up   net.Conn
	last atomic.Int64 // unix nanos of the last datagram either way
}

func (s *Service) serveUDP(pc net.PacketConn, dial func() (net.Conn, error)) {
	r := &udpRelay{s: s, pc: pc, dial: dial, peers: map[netip.AddrPort]*udpSession{}}
	s.goTracked(r.run)
}

func (r *udpRelay) run() {
	buf := make([]byte, 65535)
	for {
		n, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			if r.s.ctx.Err() == nil {
				r.s.opts.Logf("read on %v: %v", r.pc.LocalAddr(), err)
			}
			return
		}
		ap, ok := addrPortOf(from)
		if !ok {
			continue
		}
		sess := r.session(ap)
		if sess == nil {
			continue
		}
		sess.last.Store(time.Now().UnixNano())
		if _, err := sess.up.Write(buf[:n]); err != nil {
			r.s.opts.Logf("udp to upstream for %v: %v", ap, err)
		}
	}
}

// session finds or makes the session of a client.
func (r *udpRelay) session(from netip.AddrPort) *udpSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sess := r.peers[from]; sess != nil {
		return sess
	}
	if len(r.peers) >= r.s.opts.MaxUDPSessions {
		r.s.opts.Logf("udp: too many sessions, dropping datagram from %v", from)
		return nil
	}
	up, err := r.dial()
	if err != nil {
		r.s.opts.Logf("udp session for %v: %v", from, err)
		return nil
	}
	if !r.s.track(up) {
		return nil
	}
	sess := &udpSession{up: up}
	sess.last.Store(time.Now().UnixNano())
	r.peers[from] = sess
	dst := net.UDPAddrFromAddrPort(from)
	r.s.goTracked(func() {
		defer func() {
			r.mu.Lock()
			delete(r.peers, from)
			r.mu.Unlock()
			r.s.release(up)
		}()
		buf := make([]byte, 65535)
		idle := r.s.opts.UDPIdle
		for {
			_ = up.SetReadDeadline(time.Now().Add(idle))
			n, err := up.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && r.s.ctx.Err() == nil &&
					time.Since(time.Unix(0, sess.last.Load())) < idle {
					continue // traffic went the other way
				}
				return
			}
			sess.last.Store(time.Now().UnixNano())
			if _, err := r.pc.WriteTo(buf[:n], dst); err != nil && r.s.ctx.Err() == nil {
				r.s.opts.Logf("udp reply to %v: %v", from, err)
			}
		}
	})
	return sess
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// ListenForward listens locally on listen (host:port) and forwards each
// connection (proto "tcp") or each client's datagrams (proto "udp") to to
// (host:port in the tunnel), dialled through d.
func ListenForward(proto, listen, to string, d Dialer, opts *ServiceOptions) (*Service, error) {
	s := newService(opts)
	dial := func() (net.Conn, error) { return s.dial(d.DialContext, proto, to) }
	var lc net.ListenConfig
	switch proto {
	case "tcp":
		ln, err := lc.Listen(s.ctx, "tcp", listen)
		if err != nil {
			s.cancel()
			return nil, err
		}
		s.addr = ln.Addr()
		s.track(ln)
		s.serveTCP(ln, dial)
	case "udp":
		pc, err := lc.ListenPacket(s.ctx, "udp", listen)
		if err != nil {
			s.cancel()
			return nil, err
		}
		s.addr = pc.LocalAddr()
		s.track(pc)
		s.serveUDP(pc, dial)
	default:
		s.cancel()
		return nil, fmt.Errorf("tun: forward protocol %q: want tcp or udp", proto)
	}
	return s, nil
}

// ListenExpose listens on port of the userspace stack n (all its
// addresses) and forwards each connection (proto "tcp") or each peer's
// datagrams (proto "udp") to the local service to (host:port). After Close,
// a TCP port stays taken while its connections linger in TIME_WAIT.
func ListenExpose(n *netstack.Net, proto string, port uint16, to string, opts *ServiceOptions) (*Service, error) {
	s := newService(opts)
	var nd net.Dialer
	dial := func() (net.Conn, error) { return s.dial(nd.DialContext, proto, to) }
	// An IPv6 wildcard endpoint of gVisor takes IPv4 too.
	wild := netip.AddrPortFrom(netip.Addr{}, port)
	switch proto {
	case "tcp":
		ln, err := n.ListenTCPAddrPort(wild)
		if err != nil {
			s.cancel()
			return nil, fmt.Errorf("tun: expose tcp port %d: %w", port, err)
		}
		s.addr = ln.Addr()
		s.track(ln)
		s.serveTCP(ln, dial)
	case "udp":
		pc, err := n.ListenUDPAddrPort(wild)
		if err != nil {
			s.cancel()
			return nil, fmt.Errorf("tun: expose udp port %d: %w", port, err)
		}
		s.addr = pc.LocalAddr()
		s.track(pc)
		s.serveUDP(pc, dial)
	default:
		s.cancel()
		return nil, fmt.Errorf("tun: expose protocol %q: want tcp or udp", proto)
	}
	return s, nil
}
