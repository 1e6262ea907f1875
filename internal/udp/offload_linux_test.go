//go:build linux

package udp

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// gsoBatch makes runs of datagrams for b: sizes[i] bytes each, payloads
// numbered from 0 (see fill).
func gsoBatch(dst *Conn, sizes []int) []Message {
	out := makeMsgs(len(sizes), 2000, 16)
	for i, n := range sizes {
		m := &out[i]
		m.End = m.Off + n
		fill(m.Buf[m.Off:m.End], uint32(i))
		m.Addr = dst.LocalAddr()
	}
	return out
}

// readAll reads until want datagrams arrived, splitting coalesced
// messages, and checks their order, sizes and contents. It returns the
// number of messages that came coalesced.
func readAll(t *testing.T, c *Conn, sizes []int) int {
	t.Helper()
	in := makeMsgs(8, 65535, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, coalesced := 0, 0
	for got < len(sizes) {
		n, err := c.ReadBatch(in)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", got, err)
		}
		for i := range n {
			m := &in[i]
			if m.Segment > 0 {
				coalesced++
			}
			for j := range m.Datagrams() {
				off, end := m.Datagram(j)
				if got >= len(sizes) {
					t.Fatalf("more datagrams than sent")
				}
				if seq := check(t, m.Buf[off:end], sizes[got]); seq != uint32(got) {
					t.Fatalf("datagram %d arrived as number %d", seq, got)
				}
				got++
			}
		}
	}
	return coalesced
}

func runSizes(runs ...[2]int) []int {
	var s []int
	for _, r := range runs {
		for range r[0] {
			s = append(s, r[1])
		}
	}
	return s
}

// Runs of equal-size datagrams go out segmented and arrive intact and in
// order, as separate datagrams to a plain socket and coalesced to one with
// GRO on; runs break at a size change, a shorter datagram and 64 segments.
func TestGSOAndGRO(t *testing.T) {
	for _, network := range []string{"udp4", "udp6", "udp"} {
		host := "127.0.0.1:0"
		if network != "udp4" {
			host = "[::1]:0"
		}
		a, err := Listen(network, host, nil)
		if err != nil {
			t.Logf("%s: %v", network, err)
			continue
		}
		defer a.Close()
		if gso, gro := a.Offloads(); !gso || gro {
			t.Fatalf("%s: offloads gso=%v gro=%v, want GSO only", network, gso, gro)
		}
		sizes := runSizes([2]int{100, 1400}, [2]int{1, 900}, [2]int{3, 64}, [2]int{1, 1400}, [2]int{40, 700}, [2]int{1, 4})
		plain := listen(t, network, host, nil)
		if n, err := a.WriteBatch(gsoBatch(plain, sizes)); n != len(sizes) || err != nil {
			t.Fatalf("%s: WriteBatch = %d, %v", network, n, err)
		}
		if c := readAll(t, plain, sizes); c != 0 {
			t.Fatalf("%s: %d coalesced messages without GRO", network, c)
		}
		gro := listen(t, network, host, nil)
		if !gro.EnableGRO() {
			t.Skipf("%s: the kernel refuses UDP_GRO", network)
		}
		if n, err := a.WriteBatch(gsoBatch(gro, sizes)); n != len(sizes) || err != nil {
			t.Fatalf("%s: WriteBatch = %d, %v", network, n, err)
		}
		if c := readAll(t, gro, sizes); c == 0 {
			t.Errorf("%s: nothing came coalesced with GRO on", network)
		}
		// The same datagrams back to back in one buffer (one iovec per
		// run): they still arrive one by one, intact and in order.
		if n, err := a.WriteBatch(packed(gsoBatch(plain, sizes))); n != len(sizes) || err != nil {
			t.Fatalf("%s: packed WriteBatch = %d, %v", network, n, err)
		}
		if c := readAll(t, plain, sizes); c != 0 {
			t.Fatalf("%s: %d coalesced messages without GRO", network, c)
		}
	}
}

// packed copies the datagrams of msgs back to back into one buffer.
func packed(msgs []Message) []Message {
	total := 0
	for _, m := range msgs {
		total += m.End - m.Off
	}
	buf := make([]byte, total)
	out := make([]Message, len(msgs))
	at := 0
	for i, m := range msgs {
		n := copy(buf[at:], m.Buf[m.Off:m.End])
		out[i] = Message{Buf: buf, Off: at, End: at + n, Addr: m.Addr}
		at += n
	}
	return out
}

// extend merges an iovec with the slice that follows it in memory, and
// only with that.
func TestExtendIovec(t *testing.T) {
	buf := make([]byte, 100)
	var iov unix.Iovec
	setIov(&iov, buf[10:20])
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{buf[21:30], false}, // a gap
		{buf[19:30], false}, // overlapping
		{buf[20:20], false}, // empty
		{make([]byte, 5), false},
		{buf[20:35], true},
		{buf[35:40], true},
	} {
		before := int(iov.Len)
		if got := extend(&iov, tc.b); got != tc.want {
			t.Fatalf("extend by %d bytes at %p: %v, want %v", len(tc.b), tc.b, got, tc.want)
		}
		if tc.want && int(iov.Len) != before+len(tc.b) || !tc.want && int(iov.Len) != before {
			t.Fatalf("length %d after extend by %d from %d", iov.Len, len(tc.b), before)
		}
	}
	if iov.Len != 30 || iov.Base != &buf[10] {
		t.Errorf("iovec %p+%d, want %p+30", iov.Base, iov.Len, &buf[10])
	}
}

// A run the kernel refuses to segment is sent datagram by datagram; larger
// runs are not tried again. SO_NO_CHECK makes Linux refuse UDP_SEGMENT
// with EINVAL.
func TestGSORefused(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", nil)
	b := listen(t, "udp4", "127.0.0.1:0", nil)
	if err := a.sys.rc.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
			t.Skip(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	sizes := runSizes([2]int{10, 1000}, [2]int{5, 200})
	if n, err := a.WriteBatch(gsoBatch(b, sizes)); n != len(sizes) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	readAll(t, b, sizes)
	if m := a.sys.gsoMax.Load(); m >= 200 {
		t.Errorf("gsoMax = %d after refusals, want < 200", m)
	}
	if gso, _ := a.Offloads(); !gso {
		t.Error("EINVAL turned GSO off; only EIO should")
	}
}

func TestDisableGSO(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0", &Options{DisableGSO: true})
	b := listen(t, "udp4", "127.0.0.1:0", nil)
	if gso, _ := a.Offloads(); gso {
		t.Fatal("GSO on despite DisableGSO")
	}
	if !b.EnableGRO() {
		t.Skip("no UDP_GRO")
	}
	sizes := runSizes([2]int{30, 1000})
	if n, err := a.WriteBatch(gsoBatch(b, sizes)); n != len(sizes) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	readAll(t, b, sizes)
}

// Segmented sends and coalesced receives allocate nothing.
func TestZeroAllocsOffload(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	a := listen(t, "udp4", "127.0.0.1:0", nil)
	b := listen(t, "udp4", "127.0.0.1:0", nil)
	if !b.EnableGRO() {
		t.Skip("no UDP_GRO")
	}
	out := gsoBatch(b, runSizes([2]int{64, 1400}))
	in := makeMsgs(8, 65535, 64)
	round := func() {
		if _, err := a.WriteBatch(out); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(out); {
			n, err := b.ReadBatch(in)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				got += in[i].Datagrams()
			}
		}
	}
	round()
	if a := testing.AllocsPerRun(50, round); a != 0 {
		t.Errorf("%v allocations per 64-datagram round", a)
	}
}
