package udp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// listen opens a Conn on a free loopback port or skips when the family is
// unavailable.
func listen(t testing.TB, network, addr string, opts *Options) *Conn {
	t.Helper()
	c, err := Listen(network, addr, opts)
	if err != nil {
		if network == "udp6" {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatalf("Listen(%q, %q): %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func makeMsgs(n, size, headroom int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i].Buf = make([]byte, headroom+size)
		msgs[i].Off = headroom
	}
	return msgs
}

// fill writes a recognisable payload for packet number seq.
func fill(b []byte, seq uint32) {
	for i := range b {
		b[i] = byte(seq) ^ byte(i*7)
	}
	if len(b) >= 4 {
		binary.BigEndian.PutUint32(b, seq)
	}
}

func check(t *testing.T, p []byte, wantLen int) uint32 {
	t.Helper()
	if len(p) != wantLen || len(p) < 4 {
		t.Fatalf("payload length %d, want %d", len(p), wantLen)
	}
	seq := binary.BigEndian.Uint32(p)
	for i := 4; i < len(p); i++ {
		if p[i] != byte(seq)^byte(i*7) {
			t.Fatalf("packet %d: byte %d is %#x, want %#x", seq, i, p[i], byte(seq)^byte(i*7))
		}
	}
	return seq
}

// sizeOf gives each packet number its own length, 4..1400 bytes.
func sizeOf(seq uint32) int { return 4 + int(seq*37%1397) }

// transfer sends count datagrams of varying sizes from a to b in batches
// and checks that every one arrives intact, from a's address.
func transfer(t *testing.T, a, b *Conn, dst netip.AddrPort, wantFrom netip.AddrPort, count int) {
	t.Helper()
	const batch = 64
	done := make(chan error, 1)
	go func() {
		out := makeMsgs(batch, 1400, 32)
		seq := uint32(0)
		for seq < uint32(count) {
			k := 0
			for ; k < batch && seq < uint32(count); k++ {
				m := &out[k]
				m.End = m.Off + sizeOf(seq)
				fill(m.Buf[m.Off:m.End], seq)
				m.Addr = dst
				seq++
			}
			n, err := a.WriteBatch(out[:k])
			if err != nil || n != k {
				done <- err
				return
			}
			// Keep the receiver's buffer from overflowing on slow runs.
			time.Sleep(50 * time.Microsecond)
		}
		done <- nil
	}()
	in := makeMsgs(batch, 2048, 16)
	seen := make([]bool, count)
	got, calls := 0, 0
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got < count {
		n, err := b.ReadBatch(in)
		if err != nil {
			t.Fatalf("ReadBatch after %d packets: %v", got, err)
		}
		calls++
		for i := range n {
			m := &in[i]
			if m.Addr != wantFrom {
				t.Fatalf("source %v, want %v", m.Addr, wantFrom)
			}
			p := m.Payload()
			if len(p) < 4 {
				t.Fatalf("short payload %d", len(p))
			}
			seq := binary.BigEndian.Uint32(p)
			if int(seq) >= count || seen[seq] {
				t.Fatalf("unexpected or duplicate packet %d", seq)
			}
			check(t, p, sizeOf(seq))
			seen[seq] = true
			got++
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("sender: %v", err)
	}
	t.Logf("%d packets in %d ReadBatch calls (%.1f per call)", got, calls, float64(got)/float64(calls))
}

func TestBatchIPv4(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", nil)
	b := listen(t, "udp4", "127.0.0.1:0", nil)
	transfer(t, a, b, b.LocalAddr(), a.LocalAddr(), 5000)
	transfer(t, b, a, a.LocalAddr(), b.LocalAddr(), 500)
}

func TestBatchIPv6(t *testing.T) {
	a := listen(t, "udp6", "[::1]:0", nil)
	b := listen(t, "udp6", "[::1]:0", nil)
	transfer(t, a, b, b.LocalAddr(), a.LocalAddr(), 5000)
}

// A dual-stack socket serves IPv4 and IPv6 peers and reports IPv4 peers as
// plain IPv4 addresses.
func TestDualStack(t *testing.T) {
	srv := listen(t, "udp", ":0", nil)
	if srv.LocalAddr().Addr().Is4() {
		t.Skip("no dual-stack socket on this host")
	}
	port := srv.LocalAddr().Port()
	c4 := listen(t, "udp4", "127.0.0.1:0", nil)
	transfer(t, c4, srv, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), c4.LocalAddr(), 300)
	// Reply to the plain IPv4 address.
	transfer(t, srv, c4, c4.LocalAddr(), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), 300)
	// IPv4-mapped destinations are accepted too.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(netip.MustParseAddr("127.0.0.1").As16()), c4.LocalAddr().Port())
	if n, err := srv.WriteBatch([]Message{{Buf: []byte("0123456789"), End: 10, Addr: mapped}}); n != 1 || err != nil {
		t.Fatalf("mapped destination: n=%d err=%v", n, err)
	}
	in := makeMsgs(4, 64, 0)
	c4.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c4.ReadBatch(in); n != 1 || err != nil || string(in[0].Payload()) != "0123456789" {
		t.Fatalf("ReadBatch: n=%d err=%v", n, err)
	}

	c6, err := Listen("udp6", "[::1]:0", nil)
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer c6.Close()
	transfer(t, c6, srv, netip.AddrPortFrom(netip.IPv6Loopback(), port), c6.LocalAddr(), 300)
	transfer(t, srv, c6, c6.LocalAddr(), netip.AddrPortFrom(netip.IPv6Loopback(), port), 300)
}

func TestListenAddrPort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want func(netip.Addr) bool
	}{
		{"127.0.0.1:0", func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") }},
		{"0.0.0.0:0", func(a netip.Addr) bool { return a.Is4() && a.IsUnspecified() }},
		{"[::1]:0", func(a netip.Addr) bool { return a == netip.IPv6Loopback() }},
		{"[::]:0", func(a netip.Addr) bool { return a.IsUnspecified() }},
	} {
		c, err := ListenAddrPort(netip.MustParseAddrPort(tc.in), nil)
		if err != nil {
			if netip.MustParseAddrPort(tc.in).Addr().Is6() {
				t.Logf("%s: %v (no IPv6?)", tc.in, err)
				continue
			}
			t.Fatalf("%s: %v", tc.in, err)
		}
		if la := c.LocalAddr(); !tc.want(la.Addr()) || la.Port() == 0 {
			t.Errorf("%s: bound to %v", tc.in, la)
		}
		c.Close()
	}
	c, err := ListenAddrPort(netip.AddrPort{}, nil)
	if err == nil {
		// Port 4500 was free: an invalid AddrPort means all addresses,
		// port 0 is a free port.
		c.Close()
	}
}

func TestDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"":             ":4500",
		"127.0.0.1":    "127.0.0.1:4500",
		"::1":          "[::1]:4500",
		"[::1]":        "[::1]:4500",
		"10.0.0.1:500": "10.0.0.1:500",
		":0":           ":0",
		"[fe80::1%lo]": "[fe80::1%lo]:4500",
	} {
		if got := withDefaultPort(in); got != want {
			t.Errorf("withDefaultPort(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := Listen("tcp", ":0", nil); err == nil {
		t.Error("Listen(tcp) succeeded")
	}
}

// Datagrams that cannot go are dropped and reported; the others still go.
func TestWriteBatchErrors(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", nil)
	b := listen(t, "udp4", "127.0.0.1:0", nil)
	buf := []byte("xhello")
	msgs := []Message{
		{Buf: buf, Off: 1, End: 6, Addr: b.LocalAddr()},
		{Buf: buf, Off: 1, End: 6, Addr: netip.MustParseAddrPort("[2001:db8::1]:4500")}, // wrong family
		{Buf: buf, Off: 1, End: 6},                                                      // no address
		{Buf: buf, Off: 4, End: 2, Addr: b.LocalAddr()},                                 // bad offsets
		{Buf: buf, Off: 0, End: 99, Addr: b.LocalAddr()},                                // bad offsets
		{Buf: buf, Off: 1, End: 6, Addr: b.LocalAddr()},
	}
	n, err := a.WriteBatch(msgs)
	if n != 2 || !errors.Is(err, ErrAddressFamily) {
		t.Fatalf("WriteBatch = %d, %v; want 2, ErrAddressFamily", n, err)
	}
	in := makeMsgs(8, 100, 0)
	got := 0
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got < 2 {
		k, err := b.ReadBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		for i := range k {
			if string(in[i].Payload()) != "hello" {
				t.Fatalf("got %q", in[i].Payload())
			}
		}
		got += k
	}
	// A datagram too big for UDP is dropped, the next one still goes.
	big := make([]byte, 70000)
	n, err = a.WriteBatch([]Message{{Buf: big, End: len(big), Addr: b.LocalAddr()}, {Buf: buf, Off: 1, End: 6, Addr: b.LocalAddr()}})
	if n != 1 || err == nil {
		t.Fatalf("oversized datagram: n=%d err=%v", n, err)
	}
	if k, err := b.ReadBatch(in); k != 1 || err != nil || string(in[0].Payload()) != "hello" {
		t.Fatalf("after oversized: k=%d err=%v", k, err)
	}
	// Read offsets are checked too.
	if _, err := b.ReadBatch([]Message{{Buf: buf, Off: 7}}); err == nil {
		t.Error("ReadBatch accepted Off > len(Buf)")
	}
	if n, err := b.ReadBatch(nil); n != 0 || err != nil {
		t.Errorf("ReadBatch(nil) = %d, %v", n, err)
	}
}

// A datagram longer than the buffer is truncated to it.
func TestReadTruncates(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", nil)
	b := listen(t, "udp4", "127.0.0.1:0", nil)
	if _, err := a.WriteTo([]byte("0123456789"), b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	in := []Message{{Buf: make([]byte, 8), Off: 2}}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := b.ReadBatch(in); n != 1 || err != nil || string(in[0].Payload()) != "012345" {
		t.Fatalf("n=%d err=%v payload=%q", n, err, in[0].Payload())
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0", nil)
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadBatch(makeMsgs(4, 100, 0))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked after Close")
	}
	if _, err := c.WriteBatch([]Message{{Buf: []byte{1}, End: 1, Addr: c.LocalAddr()}}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteBatch after Close: %v", err)
	}
}

func TestReadDeadline(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0", nil)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.ReadBatch(makeMsgs(4, 100, 0))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadBatch past deadline: %v, want a timeout", err)
	}
}

func TestKeepaliveAndIKEOverSocket(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", nil)
	b := listen(t, "udp4", "127.0.0.1:0", nil)
	ike := make([]byte, NonESPMarkerLen+IKEHeaderLen+8)
	ike[NonESPMarkerLen] = 0xAA
	esp := []byte{0, 0, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad}
	out := []Message{
		{Buf: KeepaliveBytes(), End: 1, Addr: b.LocalAddr()},
		{Buf: ike, End: len(ike), Addr: b.LocalAddr()},
		{Buf: esp, End: len(esp), Addr: b.LocalAddr()},
	}
	if n, err := a.WriteBatch(out); n != 3 || err != nil {
		t.Fatal(n, err)
	}
	want := []Kind{KindKeepalive, KindIKE, KindESP}
	in := makeMsgs(8, 100, 0)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []Kind
	for len(got) < 3 {
		n, err := b.ReadBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			got = append(got, Classify(in[i].Payload()))
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("kinds %v, want %v", got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	ike := make([]byte, NonESPMarkerLen+IKEHeaderLen)
	for _, tc := range []struct {
		name string
		p    []byte
		want Kind
	}{
		{"empty", nil, KindInvalid},
		{"keepalive", []byte{0xFF}, KindKeepalive},
		{"one other byte", []byte{0x00}, KindInvalid},
		{"two bytes", []byte{0xFF, 0xFF}, KindInvalid},
		{"three bytes", []byte{1, 2, 3}, KindInvalid},
		{"marker only", []byte{0, 0, 0, 0}, KindInvalid},
		{"marker and short IKE", make([]byte, NonESPMarkerLen+IKEHeaderLen-1), KindInvalid},
		{"marker and IKE header", ike, KindIKE},
		{"marker and IKE message", make([]byte, 300), KindIKE},
		{"zero SPI, 7 bytes", make([]byte, 7), KindInvalid},
		{"ESP 4 bytes", []byte{0, 0, 1, 0}, KindInvalid},
		{"ESP 7 bytes", []byte{0, 0, 1, 0, 0, 0, 0}, KindInvalid},
		{"ESP header", []byte{0, 0, 1, 0, 0, 0, 0, 1}, KindESP},
		{"ESP SPI ffffffff", []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 2, 3}, KindESP},
		{"ESP low byte only", []byte{0, 0, 0, 1, 0, 0, 0, 1, 2, 3}, KindESP},
		{"ESP high byte only", []byte{1, 0, 0, 0, 0, 0, 0, 1}, KindESP},
		{"0xFF then more", []byte{0xFF, 0, 0, 0, 0, 0, 0, 1}, KindESP},
	} {
		if got := Classify(tc.p); got != tc.want {
			t.Errorf("%s: Classify(% x) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
	if KindESP.String() != "esp" || KindIKE.String() != "ike" || KindKeepalive.String() != "keepalive" || KindInvalid.String() != "invalid" || Kind(9).String() != "invalid" {
		t.Error("Kind.String")
	}
	if k := KeepaliveBytes(); len(k) != 1 || k[0] != 0xFF {
		t.Errorf("KeepaliveBytes() = % x", k)
	}
	if a := testing.AllocsPerRun(100, func() { Classify(ike) }); a != 0 {
		t.Errorf("Classify allocates %v", a)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0xFF})
	f.Add([]byte{0, 0, 0, 0})
	f.Add(make([]byte, 32))
	f.Add([]byte{0, 0, 1, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		k := Classify(p)
		switch k {
		case KindKeepalive:
			if len(p) != 1 || p[0] != 0xFF {
				t.Fatalf("keepalive: % x", p)
			}
		case KindIKE:
			if len(p) < NonESPMarkerLen+IKEHeaderLen || p[0]|p[1]|p[2]|p[3] != 0 {
				t.Fatalf("IKE: % x", p)
			}
		case KindESP:
			if len(p) < ESPMinLen || p[0]|p[1]|p[2]|p[3] == 0 {
				t.Fatalf("ESP: % x", p)
			}
		case KindInvalid:
			if len(p) == 1 && p[0] == 0xFF {
				t.Fatal("keepalive classified invalid")
			}
			if len(p) >= ESPMinLen && p[0]|p[1]|p[2]|p[3] != 0 {
				t.Fatalf("ESP classified invalid: % x", p)
			}
			if len(p) >= NonESPMarkerLen+IKEHeaderLen && p[0]|p[1]|p[2]|p[3] == 0 {
				t.Fatalf("IKE classified invalid: % x", p)
			}
		default:
			t.Fatalf("unknown kind %d", k)
		}
	})
}

// pump moves one batch of n datagrams from a to b and reads them all back.
func pump(tb testing.TB, a, b *Conn, out, in []Message) int {
	if _, err := a.WriteBatch(out); err != nil {
		tb.Fatal(err)
	}
	calls := 0
	for got := 0; got < len(out); {
		n, err := b.ReadBatch(in)
		if err != nil {
			tb.Fatal(err)
		}
		got += n
		calls++
	}
	return calls
}

// The steady-state batch path allocates nothing.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, network := range []string{"udp4", "udp6", "udp"} {
		host := "127.0.0.1:0"
		if network != "udp4" {
			host = "[::1]:0"
		}
		c, err := Listen(network, host, nil)
		if err != nil {
			t.Logf("%s: %v", network, err)
			continue
		}
		defer c.Close()
		d := listen(t, network, host, nil)
		out := makeMsgs(32, 200, 0)
		for i := range out {
			out[i].End = 200
			out[i].Addr = d.LocalAddr()
		}
		in := makeMsgs(32, 2048, 64)
		pump(t, c, d, out, in) // warm up
		if a := testing.AllocsPerRun(50, func() { pump(t, c, d, out, in) }); a != 0 {
			t.Errorf("%s: %v allocations per 32-datagram round", network, a)
		}
	}
}
