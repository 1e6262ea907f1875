package tun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/netstack"
)

var (
	addrA  = netip.MustParseAddr("10.66.0.1")
	addrB  = netip.MustParseAddr("10.66.0.2")
	addrA6 = netip.MustParseAddr("fd66::1")
	addrB6 = netip.MustParseAddr("fd66::2")
)

// forward copies packets from src to dst in batches until either fails.
func forward(dst, src Device) {
	n := src.BatchSize()
	bufs, sizes := makeBufs(n, 65535)
	for {
		k, err := src.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		for i := range k {
			bufs[i] = bufs[i][:sizes[i]]
		}
		_, err = dst.Write(bufs[:k], 0)
		for i := range k {
			bufs[i] = bufs[i][:cap(bufs[i])]
		}
		if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
			return
		}
	}
}

// twoStacks makes two userspace stacks joined through an in-memory pair:
// stack A <-> pair end a ... pair end b <-> stack B.
func twoStacks(t *testing.T) (netA, netB *netstack.Net) {
	t.Helper()
	devA, netA, err := CreateNetstack([]netip.Addr{addrA, addrA6}, 1420)
	if err != nil {
		t.Fatal(err)
	}
	devB, netB, err := CreateNetstack([]netip.Addr{addrB, addrB6}, 1420)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := NewPair(1420)
	var wg sync.WaitGroup
	for _, p := range [][2]Device{{pa, devA}, {devB, pb}, {pb, devB}, {devA, pa}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			forward(p[0], p[1])
		}()
	}
	t.Cleanup(func() {
		pa.Close()
		devA.Close()
		devB.Close()
		wg.Wait()
	})
	return netA, netB
}

// serveHTTP runs an HTTP server on ln answering /hello and /blob.
func serveHTTP(t *testing.T, ln net.Listener, blob []byte) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	})
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) { w.Write(blob) })
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

func get(t *testing.T, c *http.Client, u string) []byte {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %v %v", u, resp.Status, err)
	}
	return body
}

func blob(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// goroutines waits for the goroutine count to fall back to at most base.
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, want <= %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNetstackHTTP(t *testing.T) {
	netA, netB := twoStacks(t)
	body := blob(3 << 20)
	ln, err := netB.ListenTCPAddrPort(netip.AddrPortFrom(netip.Addr{}, 80))
	if err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, ln, body)
	base := runtime.NumGoroutine()

	t.Run("socks5", func(t *testing.T) {
		socks, err := ListenSOCKS5("127.0.0.1:0", netA, &ServiceOptions{Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		defer socks.Close()
		// net/http's own SOCKS5 client.
		tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "socks5", Host: socks.Addr().String()})}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		if got := string(get(t, c, "http://10.66.0.2/hello")); got != "hello from 10.66.0.2" {
			t.Fatalf("body %q", got)
		}
		if got := string(get(t, c, "http://[fd66::2]/hello")); got != "hello from [fd66::2]" {
			t.Fatalf("body %q", got)
		}
		if got := get(t, c, "http://10.66.0.2/blob"); sha256.Sum256(got) != sha256.Sum256(body) {
			t.Fatalf("blob through SOCKS5 differs (%d bytes)", len(got))
		}
	})
	checkGoroutines(t, base)

	t.Run("forward", func(t *testing.T) {
		fw, err := ListenForward("tcp", "127.0.0.1:0", "10.66.0.2:80", netA, &ServiceOptions{Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		defer fw.Close()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		if got := string(get(t, c, "http://"+fw.Addr().String()+"/hello")); !strings.HasPrefix(got, "hello from 127.0.0.1:") {
			t.Fatalf("body %q", got)
		}
		if got := get(t, c, "http://"+fw.Addr().String()+"/blob"); !bytes.Equal(got, body) {
			t.Fatalf("blob through the forward differs (%d bytes)", len(got))
		}
		// Several connections at once.
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get("http://" + fw.Addr().String() + "/hello")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		wg.Wait()
	})
	checkGoroutines(t, base)
}

// A local service exposed on stack B is reached from stack A, over IPv4 and
// IPv6.
func TestNetstackExposeTCP(t *testing.T) {
	netA, netB := twoStacks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := blob(1 << 20)
	serveHTTP(t, ln, body)
	base := runtime.NumGoroutine()
	ex, err := ListenExpose(netB, "tcp", 8080, ln.Addr().String(), &ServiceOptions{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: netA.DialContext}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	if got := string(get(t, c, "http://10.66.0.2:8080/hello")); got != "hello from 10.66.0.2:8080" {
		t.Fatalf("body %q", got)
	}
	if got := string(get(t, c, "http://[fd66::2]:8080/hello")); got != "hello from [fd66::2]:8080" {
		t.Fatalf("body %q", got)
	}
	if got := get(t, c, "http://10.66.0.2:8080/blob"); !bytes.Equal(got, body) {
		t.Fatalf("blob differs (%d bytes)", len(got))
	}
	tr.CloseIdleConnections()
	ex.Close()
	checkGoroutines(t, base)
}

// Close frees the port (once no connection lingers in TIME_WAIT).
func TestNetstackExposeReopen(t *testing.T) {
	_, n, err := CreateNetstack([]netip.Addr{addrA}, 1400)
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"tcp", "tcp", "udp", "udp"} {
		ex, err := ListenExpose(n, proto, 8080, "127.0.0.1:1", nil)
		if err != nil {
			t.Fatalf("expose %s again after Close: %v", proto, err)
		}
		ex.Close()
	}
}

// udpEcho answers every datagram on pc with "echo:" and the datagram.
func udpEcho(t *testing.T, pc net.PacketConn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
}

func exchange(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	for try := 0; ; try++ {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			if try < 3 {
				continue // UDP: the first datagram may race ARP-less setup
			}
			t.Fatalf("no echo for %q: %v", msg, err)
		}
		if got := string(buf[:n]); got != "echo:"+msg {
			t.Fatalf("echo %q, want %q", got, "echo:"+msg)
		}
		return
	}
}

func TestNetstackUDP(t *testing.T) {
	netA, netB := twoStacks(t)
	pc, err := netB.ListenUDPAddrPort(netip.AddrPortFrom(netip.Addr{}, 53))
	if err != nil {
		t.Fatal(err)
	}
	udpEcho(t, pc)
	local, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpEcho(t, local)
	base := runtime.NumGoroutine()

	t.Run("forward", func(t *testing.T) {
		fw, err := ListenForward("udp", "127.0.0.1:0", "10.66.0.2:53", netA, &ServiceOptions{Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		defer fw.Close()
		for i := range 3 {
			c, err := net.Dial("udp", fw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			exchange(t, c, fmt.Sprintf("client %d", i))
			exchange(t, c, strings.Repeat("x", 1200))
			c.Close()
		}
	})
	checkGoroutines(t, base)

	t.Run("expose", func(t *testing.T) {
		ex, err := ListenExpose(netB, "udp", 7, local.LocalAddr().String(), &ServiceOptions{Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		defer ex.Close()
		for _, dst := range []string{"10.66.0.2:7", "[fd66::2]:7"} {
			c, err := netA.Dial("udp", dst)
			if err != nil {
				t.Fatal(err)
			}
			exchange(t, c, "to "+dst)
			c.Close()
		}
	})
	checkGoroutines(t, base)

	t.Run("idle", func(t *testing.T) {
		fw, err := ListenForward("udp", "127.0.0.1:0", "10.66.0.2:53", netA, &ServiceOptions{UDPIdle: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer fw.Close()
		during := runtime.NumGoroutine()
		c, err := net.Dial("udp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		exchange(t, c, "idle")
		// The session's goroutine ends after the idle time.
		checkGoroutines(t, during)
		exchange(t, c, "again")
	})
	checkGoroutines(t, base)
}

// socksClient speaks SOCKS5 by hand: greeting, then one request.
func socksRequest(t *testing.T, proxy string, cmd byte, dst netip.AddrPort) (net.Conn, byte, netip.AddrPort) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 0})
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b != [2]byte{5, 0} {
		t.Fatalf("greeting reply % x, %v", b, err)
	}
	c.Write(appendSOCKSAddr([]byte{5, cmd, 0}, dst))
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	host, port, err := readSOCKSAddr(c, h[3], make([]byte, 262))
	if err != nil {
		t.Fatalf("reply address: %v", err)
	}
	c.SetDeadline(time.Time{})
	return c, h[1], netip.AddrPortFrom(netip.MustParseAddr(host), port)
}

func TestSOCKS5Protocol(t *testing.T) {
	netA, netB := twoStacks(t)
	pc, err := netB.ListenUDPAddrPort(netip.AddrPortFrom(netip.Addr{}, 53))
	if err != nil {
		t.Fatal(err)
	}
	udpEcho(t, pc)
	base := runtime.NumGoroutine()
	socks, err := ListenSOCKS5("127.0.0.1:0", netA, &ServiceOptions{Logf: t.Logf, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	proxy := socks.Addr().String()

	t.Run("refused", func(t *testing.T) {
		c, code, _ := socksRequest(t, proxy, socksConnect, netip.MustParseAddrPort("10.66.0.2:9"))
		defer c.Close()
		if code != socksConnRefused {
			t.Fatalf("reply %d, want %d (connection refused)", code, socksConnRefused)
		}
	})
	t.Run("bind unsupported", func(t *testing.T) {
		c, code, _ := socksRequest(t, proxy, 2, netip.MustParseAddrPort("10.66.0.2:80"))
		defer c.Close()
		if code != socksCmdNotSupported {
			t.Fatalf("reply %d, want %d", code, socksCmdNotSupported)
		}
	})
	t.Run("no acceptable auth", func(t *testing.T) {
		c, err := net.Dial("tcp", proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{5, 1, 2}) // username/password only
		var b [2]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b != [2]byte{5, 0xFF} {
			t.Fatalf("reply % x, %v", b, err)
		}
	})
	t.Run("udp associate", func(t *testing.T) {
		ctl, code, relay := socksRequest(t, proxy, socksUDPAssociate, netip.AddrPort{})
		defer ctl.Close()
		if code != socksSucceeded || !relay.IsValid() {
			t.Fatalf("associate: reply %d relay %v", code, relay)
		}
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		buf := make([]byte, 2000)
		for _, dst := range []netip.AddrPort{netip.MustParseAddrPort("10.66.0.2:53"), netip.MustParseAddrPort("[fd66::2]:53")} {
			dg := append(appendSOCKSAddr([]byte{0, 0, 0}, dst), "ping "+dst.String()...)
			var n int
			for try := 0; ; try++ {
				u.WriteToUDPAddrPort(dg, relay)
				u.SetReadDeadline(time.Now().Add(time.Second))
				n, _, err = u.ReadFromUDPAddrPort(buf)
				if err == nil || try == 3 {
					break
				}
			}
			if err != nil {
				t.Fatalf("no reply from %v: %v", dst, err)
			}
			r := bytesReader{buf[4:n]}
			host, port, err := readSOCKSAddr(&r, buf[3], make([]byte, 262))
			if err != nil || buf[2] != 0 {
				t.Fatalf("reply header: %v", err)
			}
			if from := netip.AddrPortFrom(netip.MustParseAddr(host), port); from != dst {
				t.Fatalf("reply from %v, want %v", from, dst)
			}
			if string(r.b) != "echo:ping "+dst.String() {
				t.Fatalf("reply %q", r.b)
			}
		}
		// Fragments are dropped.
		u.WriteToUDPAddrPort(append(appendSOCKSAddr([]byte{0, 0, 1}, netip.MustParseAddrPort("10.66.0.2:53")), "frag"...), relay)
		u.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := u.ReadFromUDPAddrPort(buf); err == nil {
			t.Fatal("a fragment was relayed")
		}
	})
	socks.Close()
	checkGoroutines(t, base)
	if _, err := net.DialTimeout("tcp", proxy, time.Second); err == nil {
		t.Error("proxy still listening after Close")
	}
}

// Close ends connections that are in the middle of a transfer.
func TestServiceCloseWithOpenConnections(t *testing.T) {
	netA, netB := twoStacks(t)
	ln, err := netB.ListenTCPAddrPort(netip.AddrPortFrom(netip.Addr{}, 22))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c) // an echo that never closes
		}
	}()
	t.Cleanup(func() { ln.Close() })
	base := runtime.NumGoroutine()
	fw, err := ListenForward("tcp", "127.0.0.1:0", "10.66.0.2:22", netA, nil)
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("ping"))
		var b [4]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || string(b[:]) != "ping" {
			t.Fatalf("echo %q, %v", b, err)
		}
		conns = append(conns, c)
	}
	done := make(chan struct{})
	go func() {
		fw.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs with open connections")
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("connection still open after Close")
		}
	}
	// net.Conn goroutines of the echo side may linger until their stack
	// notices; ours must be gone.
	checkGoroutines(t, base+4)
	fw.Close() // idempotent
}

func TestServiceErrors(t *testing.T) {
	if _, err := ListenForward("sctp", "127.0.0.1:0", "10.0.0.1:1", nil, nil); err == nil {
		t.Error("ListenForward(sctp) succeeded")
	}
	if _, err := ListenForward("tcp", "256.0.0.1:0", "10.0.0.1:1", nil, nil); err == nil {
		t.Error("ListenForward on a bad address succeeded")
	}
	if _, err := ListenSOCKS5("256.0.0.1:0", nil, nil); err == nil {
		t.Error("ListenSOCKS5 on a bad address succeeded")
	}
	_, n, err := CreateNetstack([]netip.Addr{addrA}, 1400)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ListenExpose(n, "icmp", 1, "127.0.0.1:1", nil); err == nil {
		t.Error("ListenExpose(icmp) succeeded")
	}
	// A forward whose target refuses: the client's connection is closed.
	netA, _ := twoStacks(t)
	fw, err := ListenForward("tcp", "127.0.0.1:0", "10.66.0.2:1", netA, &ServiceOptions{DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	c, err := net.Dial("tcp", fw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read from a forward to a closed port: %v", err)
	}
}
