//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var nsCount atomic.Int32

// inNetns creates a fresh network namespace, moves the test goroutine's
// thread into it (the goroutine stays locked to that thread), and removes
// the namespace at the end of the test. Do not start subtests: they would
// run on other threads, in the original namespace.
func inNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create a network namespace and a TUN device")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) from iproute2 to create the test's network namespace")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no TUN driver: %v", err)
	}
	name := fmt.Sprintf("goipsec-tun-%d-%d", os.Getpid(), nsCount.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	nsfd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(orig)
		t.Fatal(err)
	}
	err = unix.Setns(nsfd, unix.CLONE_NEWNET)
	unix.Close(nsfd)
	if err != nil {
		unix.Close(orig)
		t.Fatalf("setns: %v", err)
	}
	t.Cleanup(func() {
		// Back to the original namespace; if that fails the thread stays
		// locked and is discarded when the test's goroutine ends.
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		unix.Close(orig)
	})
	ipIn(t, name, "link", "set", "lo", "up")
	return name
}

// ipIn runs ip(8) in namespace ns and returns its output.
func ipIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipJSON runs ip -j in namespace ns and decodes its list of objects.
func ipJSON(t *testing.T, ns string, args ...string) []map[string]any {
	t.Helper()
	out := ipIn(t, ns, append([]string{"-j"}, args...)...)
	var v []map[string]any
	if strings.TrimSpace(out) == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ip -j %v: %v: %s", args, err, out)
	}
	return v
}

func linkState(t *testing.T, ns, dev string) (up bool, mtu int) {
	t.Helper()
	l := ipJSON(t, ns, "link", "show", "dev", dev)
	if len(l) != 1 {
		t.Fatalf("link %s: %v", dev, l)
	}
	for _, f := range l[0]["flags"].([]any) {
		if f == "UP" {
			up = true
		}
	}
	return up, int(l[0]["mtu"].(float64))
}

// txQueueLen returns dev's transmit queue length as ip(8) reports it.
func txQueueLen(t *testing.T, ns, dev string) int {
	t.Helper()
	l := ipJSON(t, ns, "link", "show", "dev", dev)
	if len(l) != 1 {
		t.Fatalf("link %s: %v", dev, l)
	}
	q, ok := l[0]["txqlen"].(float64)
	if !ok {
		t.Fatalf("link %s: no txqlen in %v", dev, l[0])
	}
	return int(q)
}

// addrsOf lists the addresses of dev as prefixes, link-local ones left out.
func addrsOf(t *testing.T, ns, dev string) []string {
	t.Helper()
	var r []string
	for _, l := range ipJSON(t, ns, "addr", "show", "dev", dev) {
		infos, _ := l["addr_info"].([]any)
		for _, i := range infos {
			m := i.(map[string]any)
			if m["scope"] == "link" {
				continue
			}
			r = append(r, fmt.Sprintf("%v/%v", m["local"], m["prefixlen"]))
		}
	}
	slices.Sort(r)
	return r
}

// routesOf lists the destinations routed through dev in a table.
func routesOf(t *testing.T, ns, dev, table string) []string {
	t.Helper()
	var r []string
	for _, fam := range []string{"-4", "-6"} {
		for _, m := range ipJSON(t, ns, fam, "route", "show", "table", table) {
			if m["dev"] != dev {
				continue
			}
			if d := m["dst"].(string); !strings.HasPrefix(d, "fe80::") && !strings.HasPrefix(d, "ff00::") && !strings.HasPrefix(d, "multicast") {
				r = append(r, d)
			}
		}
	}
	slices.Sort(r)
	return r
}

// routeDev asks the kernel which device a packet to dst (with an optional
// fwmark) leaves through.
func routeDev(t *testing.T, ns, dst string, mark uint32) string {
	t.Helper()
	args := []string{"route", "get", dst}
	if mark != 0 {
		args = append(args, "mark", fmt.Sprint(mark))
	}
	out, err := exec.Command("ip", append([]string{"-n", ns, "-j"}, args...)...).CombinedOutput()
	if err != nil {
		return "unreachable"
	}
	var v []map[string]any
	if json.Unmarshal(out, &v) != nil || len(v) == 0 {
		return "?"
	}
	d, _ := v[0]["dev"].(string)
	return d
}

func rules(t *testing.T, ns string) string {
	t.Helper()
	return ipIn(t, ns, "-4", "rule", "show") + ipIn(t, ns, "-6", "rule", "show")
}

// reader collects the packets a device reads until it is closed.
func reader(d Device) <-chan []byte {
	ch := make(chan []byte, 1024)
	go func() {
		defer close(ch)
		bufs, sizes := makeBufs(d.BatchSize(), 65535)
		for {
			n, err := d.Read(bufs, sizes, 0)
			if err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				continue
			}
			for i := range n {
				ch <- bytes.Clone(bufs[i][:sizes[i]])
			}
		}
	}()
	return ch
}

// awaitUDP waits for a UDP packet to dst carrying payload.
func awaitUDP(ch <-chan []byte, dst netip.AddrPort, payload []byte, wait time.Duration) bool {
	timeout := time.After(wait)
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				return false
			}
			if d, pl, ok := parseUDP(p); ok && d == dst && bytes.Equal(pl, payload) {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// parseUDP returns the destination and payload of an IPv4 or IPv6 UDP
// packet without extension headers.
func parseUDP(p []byte) (netip.AddrPort, []byte, bool) {
	if len(p) < 1 {
		return netip.AddrPort{}, nil, false
	}
	var dst netip.Addr
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0xf) * 4
		if len(p) < ihl+8 || p[9] != unix.IPPROTO_UDP {
			return netip.AddrPort{}, nil, false
		}
		dst = netip.AddrFrom4([4]byte(p[16:20]))
		l4 = p[ihl:]
	case 6:
		if len(p) < 48 || p[6] != unix.IPPROTO_UDP {
			return netip.AddrPort{}, nil, false
		}
		dst = netip.AddrFrom16([16]byte(p[24:40]))
		l4 = p[40:]
	default:
		return netip.AddrPort{}, nil, false
	}
	return netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:])), l4[8:], true
}

func csum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// udpPacket builds an IPv4 or IPv6 UDP packet with correct checksums.
func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()
	pseudo := csum(csum(0, s), d) + unix.IPPROTO_UDP + uint32(len(udp))
	c := fold(csum(pseudo, udp))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	if src.Addr().Is4() {
		h := make([]byte, 20)
		h[0], h[8], h[9] = 0x45, 64, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(udp)))
		copy(h[12:], s)
		copy(h[16:], d)
		binary.BigEndian.PutUint16(h[10:], fold(csum(0, h)))
		return append(h, udp...)
	}
	h := make([]byte, 40)
	h[0], h[6], h[7] = 0x60, unix.IPPROTO_UDP, 64
	binary.BigEndian.PutUint16(h[4:], uint16(len(udp)))
	copy(h[8:], s)
	copy(h[24:], d)
	return append(h, udp...)
}

func TestKernelTUN(t *testing.T) {
	ns := inNetns(t)
	const name = "gitun0"
	dev, err := CreateKernel(name, 1400)
	if err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	if n, _ := dev.Name(); n != name {
		t.Fatalf("Name() = %q", n)
	}
	if up, mtu := linkState(t, ns, name); up || mtu != 1400 {
		t.Fatalf("new link: up=%v mtu=%d", up, mtu)
	}
	qlen0 := txQueueLen(t, ns, name)
	cfg := Config{
		MTU:        1380,
		TxQueueLen: DefaultTxQueueLen,
		Addresses:  []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("fd77::1/64")},
		Routes:     []netip.Prefix{netip.MustParsePrefix("10.78.0.0/16"), netip.MustParsePrefix("fd78::/48")},
	}
	undo, err := Configure(name, cfg)
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if up, mtu := linkState(t, ns, name); !up || mtu != 1380 {
		t.Errorf("configured link: up=%v mtu=%d", up, mtu)
	}
	if m, err := dev.MTU(); err != nil || m != 1380 {
		t.Errorf("dev.MTU() = %d, %v", m, err)
	}
	if q := txQueueLen(t, ns, name); q != DefaultTxQueueLen || qlen0 == DefaultTxQueueLen {
		t.Errorf("transmit queue length %d (before: %d), want %d", q, qlen0, DefaultTxQueueLen)
	}
	if got, want := addrsOf(t, ns, name), []string{"10.77.0.1/24", "fd77::1/64"}; !slices.Equal(got, want) {
		t.Errorf("addresses %v, want %v", got, want)
	}
	if got, want := routesOf(t, ns, name, "main"), []string{"10.77.0.0/24", "10.78.0.0/16", "fd77::/64", "fd78::/48"}; !slices.Equal(got, want) {
		t.Errorf("routes %v, want %v", got, want)
	}

	// Packets: sent by a local socket into a routed prefix, they are read
	// from the device; written to the device, they reach the socket.
	pkts := reader(dev)
	for _, tc := range []struct{ local, remote string }{
		{"10.77.0.1:0", "10.78.1.1:9999"},
		{"[fd77::1]:0", "[fd78::1]:9999"},
	} {
		sock, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.local)))
		if err != nil {
			t.Fatal(err)
		}
		defer sock.Close()
		local := sock.LocalAddr().(*net.UDPAddr).AddrPort()
		remote := netip.MustParseAddrPort(tc.remote)
		payload := []byte("out through the TUN to " + tc.remote)
		if _, err := sock.WriteToUDPAddrPort(payload, remote); err != nil {
			t.Fatal(err)
		}
		if !awaitUDP(pkts, remote, payload, 5*time.Second) {
			t.Fatalf("packet to %v not read from the device", remote)
		}
		in := []byte("in through the TUN from " + tc.remote)
		buf := append(make([]byte, 16), udpPacket(remote, local, in)...)
		got := make([]byte, 1500)
		var n int
		var from netip.AddrPort
		// The kernel installs a new IPv6 address's local route a moment
		// after the link comes up (its DAD work runs even with nodad), so
		// the first packet may be dropped: resend, as a peer would.
		for try := 0; try < 10; try++ {
			// wireguard-go's Linux Write counts bytes, not packets.
			if k, err := dev.Write([][]byte{buf}, 16); k == 0 || err != nil {
				t.Fatalf("Write = %d, %v", k, err)
			}
			sock.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if n, from, err = sock.ReadFromUDPAddrPort(got); err == nil {
				break
			}
		}
		if err != nil || from != remote || !bytes.Equal(got[:n], in) {
			t.Fatalf("socket got %q from %v, %v", got[:n], from, err)
		}
	}

	if err := undo(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	if err := undo(); err != nil {
		t.Fatalf("second undo: %v", err)
	}
	if up, mtu := linkState(t, ns, name); up || mtu != 1400 {
		t.Errorf("after undo: up=%v mtu=%d", up, mtu)
	}
	if q := txQueueLen(t, ns, name); q != qlen0 {
		t.Errorf("transmit queue length after undo %d, want %d", q, qlen0)
	}
	if got := addrsOf(t, ns, name); len(got) != 0 {
		t.Errorf("addresses after undo: %v", got)
	}
	if got := routesOf(t, ns, name, "main"); len(got) != 0 {
		t.Errorf("routes after undo: %v", got)
	}
}

// A failing step undoes the steps before it.
func TestKernelConfigureRollback(t *testing.T) {
	ns := inNetns(t)
	const name = "gitun2"
	dev, err := CreateKernel(name, 1400)
	if err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	_, err = Configure(name, Config{
		MTU:       1300,
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.80.0.1/24")},
		Routes:    []netip.Prefix{netip.MustParsePrefix("10.81.0.0/16"), netip.MustParsePrefix("10.81.0.0/16")},
	})
	if err == nil {
		t.Fatal("Configure with a duplicate route succeeded")
	}
	t.Logf("expected error: %v", err)
	if up, mtu := linkState(t, ns, name); up || mtu != 1400 {
		t.Errorf("after rollback: up=%v mtu=%d", up, mtu)
	}
	if got := addrsOf(t, ns, name); len(got) != 0 {
		t.Errorf("addresses after rollback: %v", got)
	}
	if got := routesOf(t, ns, name, "main"); len(got) != 0 {
		t.Errorf("routes after rollback: %v", got)
	}
	if _, err := Configure("no-such-if0", Config{}); err == nil {
		t.Error("Configure on a missing link succeeded")
	}
	l, err := OpenLink(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Name() != name || l.Index() == 0 {
		t.Errorf("Link %q index %d", l.Name(), l.Index())
	}
	for _, pr := range []PolicyRouting{
		{Table: 100, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{Mark: 1, Table: 254},
		{Mark: 1, Table: 0},
		{Mark: 1, Table: 100, Prefixes: []netip.Prefix{{}}},
	} {
		if _, err := l.AddPolicyRouting(pr); err == nil {
			t.Errorf("AddPolicyRouting(%+v) succeeded", pr)
		}
	}
	if _, err := l.SetMTU(0); err == nil {
		t.Error("SetMTU(0) succeeded")
	}
	if _, err := l.SetTxQueueLen(0); err == nil {
		t.Error("SetTxQueueLen(0) succeeded")
	}
	// Up on a link that is up already: the undo leaves it up.
	u1, err := l.Up()
	if err != nil {
		t.Fatal(err)
	}
	u2, err := l.Up()
	if err != nil {
		t.Fatal(err)
	}
	u2()
	if up, _ := linkState(t, ns, name); !up {
		t.Error("undo of a redundant Up took the link down")
	}
	u1()
	if up, _ := linkState(t, ns, name); up {
		t.Error("undo of Up left the link up")
	}
	// Undo after the device is gone counts as done.
	ua, err := l.AddAddress(netip.MustParsePrefix("10.82.0.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	dev.Close()
	time.Sleep(50 * time.Millisecond)
	if err := ua(); err != nil {
		t.Errorf("undo after the link went away: %v", err)
	}
}

// markedSocket opens a UDP socket whose packets carry a firewall mark.
func markedSocket(t *testing.T, network string, mark uint32) *net.UDPConn {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)) })
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(t.Context(), network, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// The peer's own underlay address is routed through the TUN for ordinary
// traffic, while marked packets (the daemon's) still use the underlay.
func TestKernelPolicyRouting(t *testing.T) {
	ns := inNetns(t)
	// The underlay: one end of a veth pair (no dummy driver on every kernel).
	ipIn(t, ns, "link", "add", "under0", "type", "veth", "peer", "name", "under1")
	ipIn(t, ns, "link", "set", "under1", "up")
	ipIn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "under0")
	ipIn(t, ns, "addr", "add", "2001:db8::1/64", "dev", "under0", "nodad")
	ipIn(t, ns, "link", "set", "under0", "up")
	before := rules(t, ns)

	const name, mark = "gitun1", 0x4242
	dev, err := CreateKernel(name, 1400)
	if err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	pkts := reader(dev)
	undo, err := Configure(name, Config{
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.79.0.1/32"), netip.MustParsePrefix("fd79::1/128")},
		Policy: &PolicyRouting{Mark: mark, Table: 4242, Prefixes: []netip.Prefix{
			netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::7/128"),
		}},
	})
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	for _, tc := range []struct {
		dst  string
		mark uint32
		want string
	}{
		{"192.0.2.7", 0, name},
		{"192.0.2.7", mark, "under0"},
		{"192.0.2.8", 0, "under0"},
		{"2001:db8::7", 0, name},
		{"2001:db8::7", mark, "under0"},
		{"2001:db8::8", 0, "under0"},
	} {
		if got := routeDev(t, ns, tc.dst, tc.mark); got != tc.want {
			t.Errorf("route to %s (mark %#x) via %s, want %s", tc.dst, tc.mark, got, tc.want)
		}
	}
	r := rules(t, ns)
	if !strings.Contains(r, "not from all fwmark 0x4242 lookup 4242") || strings.Contains(r, "suppress_prefixlength") {
		t.Errorf("rules:\n%s", r)
	}
	if got, want := routesOf(t, ns, name, "4242"), []string{"192.0.2.7", "2001:db8::7"}; !slices.Equal(got, want) {
		t.Errorf("table 4242: %v, want %v", got, want)
	}

	// Real packets: an ordinary socket's go through the TUN, a marked
	// socket's do not.
	for _, peer := range []string{"192.0.2.7:500", "[2001:db8::7]:500"} {
		dst := netip.MustParseAddrPort(peer)
		plain, err := net.ListenUDP("udp", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		msg := []byte("protected " + peer)
		plain.WriteToUDPAddrPort(msg, dst)
		if !awaitUDP(pkts, dst, msg, 5*time.Second) {
			t.Errorf("unmarked packet to %v did not go through the TUN", dst)
		}
		m := markedSocket(t, "udp", mark)
		msg = []byte("bypass " + peer)
		if _, err := m.WriteToUDPAddrPort(msg, dst); err != nil {
			t.Fatal(err)
		}
		if awaitUDP(pkts, dst, msg, 300*time.Millisecond) {
			t.Errorf("marked packet to %v went through the TUN", dst)
		}
	}

	if err := undo(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	if after := rules(t, ns); after != before {
		t.Errorf("rules after undo:\n%s\nwant:\n%s", after, before)
	}
	if got := routesOf(t, ns, name, "4242"); len(got) != 0 {
		t.Errorf("table 4242 after undo: %v", got)
	}

	// A default route: the suppress rule keeps main's specific routes.
	ipIn(t, ns, "route", "add", "default", "dev", "under0")
	ipIn(t, ns, "-6", "route", "add", "default", "dev", "under0")
	before = rules(t, ns)
	undo, err = Configure(name, Config{
		Policy: &PolicyRouting{Mark: mark, Table: 4243, Priority: 1000, Prefixes: []netip.Prefix{
			netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"),
		}},
	})
	if err != nil {
		t.Fatalf("Configure with default routes: %v", err)
	}
	r = rules(t, ns)
	if !strings.Contains(r, "1000:\tnot from all fwmark 0x4242 lookup 4243") || !strings.Contains(r, "999:\tfrom all lookup main suppress_prefixlength 0") {
		t.Errorf("rules:\n%s", r)
	}
	for _, tc := range []struct {
		dst  string
		mark uint32
		want string
	}{
		{"198.51.100.1", 0, name},
		{"198.51.100.1", mark, "under0"},
		{"192.0.2.8", 0, "under0"},
		{"2001:db9::1", 0, name},
		{"2001:db9::1", mark, "under0"},
		{"2001:db8::8", 0, "under0"},
	} {
		if got := routeDev(t, ns, tc.dst, tc.mark); got != tc.want {
			t.Errorf("route to %s (mark %#x) via %s, want %s", tc.dst, tc.mark, got, tc.want)
		}
	}
	if err := undo(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	if after := rules(t, ns); after != before {
		t.Errorf("rules after undo:\n%s\nwant:\n%s", after, before)
	}
}
