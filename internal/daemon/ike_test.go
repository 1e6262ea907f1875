package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/control"
	"github.com/goipsec/goipsec/sad"
)

// ikeTestPeer is one end's configuration in these tests.
type ikeTestPeer struct {
	addr, remote     string // underlay addresses
	port, remotePort int    // 0: unset (plain IKE on 500, NAT-T on 4500)
	ike, esp         string
	id, peerID       string
	tunAddr, peerTun string
	start            string
	psk              string
	ikeRekey         string // rekey_time of the IKE SA, "" unset
	childRekey       string // rekey_time of the Child SA, "" unset
	childLife        string // life_time of the Child SA, "" unset
	childExtra       string // more YAML lines under the child
}

func (p ikeTestPeer) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections:\n  link:\n    local_addrs: [%s]\n    remote_addrs: [%s]\n", p.addr, p.remote)
	if p.port != 0 {
		fmt.Fprintf(&b, "    local_port: %d\n    remote_port: %d\n", p.port, p.remotePort)
	}
	fmt.Fprintf(&b, "    proposals: [%s]\n    dpd_delay: 5s\n", p.ike)
	if p.ikeRekey != "" {
		fmt.Fprintf(&b, "    rekey_time: %s\n", p.ikeRekey)
	}
	fmt.Fprintf(&b, "    local:  {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n", p.id, p.peerID)
	fmt.Fprintf(&b, "    children:\n      net:\n        mode: tunnel\n        local_ts: [%s/32]\n        remote_ts: [%s/32]\n", p.tunAddr, p.peerTun)
	fmt.Fprintf(&b, "        esp_proposals: [%s]\n        start_action: %s\n", p.esp, p.start)
	if p.childRekey != "" {
		fmt.Fprintf(&b, "        rekey_time: %s\n", p.childRekey)
	}
	if p.childLife != "" {
		fmt.Fprintf(&b, "        life_time: %s\n", p.childLife)
	}
	b.WriteString(p.childExtra)
	fmt.Fprintf(&b, "secrets:\n  link: {id: [a.example.org, b.example.org], secret: %q}\n", p.psk)
	fmt.Fprintf(&b, "tun:\n  mode: netstack\n  addresses: [%s/24]\ncontrol:\n  socket: \"-\"\n", p.tunAddr)
	return b.String()
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

type ikeDaemons struct {
	a, b   *Daemon
	keysA  chan ike.KeyMaterial
	cancel context.CancelFunc
}

// startIKEPair starts two netstack daemons over loopback: a initiates
// (start_action start), b responds.
func startIKEPair(t *testing.T, ikeProp, espProp, pskA, pskB string) *ikeDaemons {
	t.Helper()
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pa, remotePort: pb, ike: ikeProp, esp: espProp,
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: pskA}
	b := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pb, remotePort: pa, ike: ikeProp, esp: espProp,
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: pskB}
	return startDaemons(t, a, b)
}

// startDaemons starts b, then a.
func startDaemons(t *testing.T, a, b ikeTestPeer) *ikeDaemons {
	t.Helper()
	return startDaemonsLog(t, a, b, func(name string) *zap.Logger {
		return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named(name)
	})
}

// startDaemonsLog is startDaemons with the daemons' loggers from newLog.
func startDaemonsLog(t *testing.T, a, b ikeTestPeer, newLog func(name string) *zap.Logger) *ikeDaemons {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &ikeDaemons{cancel: cancel, keysA: make(chan ike.KeyMaterial, 16)}
	t.Cleanup(cancel)
	// b first, so that a's first message finds it listening.
	for i, text := range []string{b.yaml(), a.yaml()} {
		name := []string{"b", "a"}[i]
		cfg, err := config.Parse(name, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(cfg, newLog(name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "a" {
			d.SetIKEKeyHook(func(k ike.KeyMaterial) {
				select {
				case p.keysA <- k:
				default:
				}
			})
			p.a = d
		} else {
			p.b = d
		}
		if err := d.Start(ctx); err != nil {
			if strings.Contains(err.Error(), "address already in use") {
				t.Skipf("skipping: %v", err)
			}
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		go d.Serve(ctx)
	}
	return p
}

// waitChild waits until d has an installed IKE Child SA.
func waitChild(t *testing.T, d *Daemon, want bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		up := false
		for _, sa := range d.IKE().IKESAs() {
			up = up || (sa.State == "ESTABLISHED" && len(sa.Children) > 0)
		}
		if up == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("child up = %v never reached; SAs %+v", want, d.IKE().IKESAs())
}

// nextPort numbers the tunnel's TCP listeners (a closed one's port may
// linger).
var nextPort atomic.Int32

func init() { nextPort.Store(7000) }

// exchange sends data from a to b's echo-free sink through the tunnel and
// checks it arrived.
func exchange(t *testing.T, p *ikeDaemons, n int) {
	t.Helper()
	port := int(nextPort.Add(1))
	ln, err := p.b.Net.ListenTCP(&net.TCPAddr{IP: net.IPv4(10, 98, 0, 2), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := make([]byte, n)
	rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := p.a.Net.DialContext(ctx, "tcp", fmt.Sprintf("10.98.0.2:%d", port))
	if err != nil {
		t.Fatalf("dial through the tunnel: %v", err)
	}
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Fatalf("received %d bytes, want %d identical", len(b), len(data))
		}
	case <-ctx.Done():
		t.Fatal("transfer timed out")
	}
}

func TestIKEDaemons(t *testing.T) {
	for _, tc := range []struct{ ike, esp string }{
		{"aes128gcm16-prfsha256-x25519", "aes128gcm16"},
		{"aes256-sha384-ecp384", "aes256-sha384"},
		{"chacha20poly1305-prfsha256-modp2048", "chacha20poly1305"},
	} {
		t.Run(tc.ike, func(t *testing.T) {
			p := startIKEPair(t, tc.ike, tc.esp, "a shared secret", "a shared secret")
			waitChild(t, p.a, true)
			waitChild(t, p.b, true)
			exchange(t, p, 1<<20)
			sas := p.a.IKE().IKESAs()
			if len(sas) != 1 || !strings.HasPrefix(sas[0].Proposal, strings.SplitN(tc.ike, "-", 2)[0]) {
				t.Errorf("IKE SAs %+v", sas)
			}
			for _, s := range p.a.ListSAs() {
				if s.Connection != "link" || s.Child != "net" || s.Packets == 0 {
					t.Errorf("SA listing %+v", s)
				}
			}
			if k := <-p.keysA; k.IKE == nil || len(k.IKE.D) == 0 {
				t.Error("key hook got no IKE keys")
			}
		})
	}
}

func TestIKEDaemonControl(t *testing.T) {
	p := startIKEPair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", "a shared secret", "a shared secret")
	waitChild(t, p.a, true)
	ctx := context.Background()
	if err := p.a.Terminate(ctx, "link"); err != nil {
		t.Fatal(err)
	}
	waitChild(t, p.a, false)
	waitChild(t, p.b, false)
	if in, out := p.b.SAD.Len(); in+out != 0 {
		t.Errorf("b keeps %d SAs after the peer terminated", in+out)
	}
	if err := p.a.Terminate(ctx, "link"); !errors.Is(err, control.ErrConflict) {
		t.Errorf("terminating what is down: %v", err)
	}
	if err := p.b.Initiate(ctx, "link.net"); err != nil {
		t.Fatalf("initiate from the responder's side: %v", err)
	}
	waitChild(t, p.a, true)
	exchange(t, p, 64<<10)
	if err := p.a.Initiate(ctx, "nope"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("initiate unknown: %v", err)
	}
	if st := p.a.Status(); st.Children != 1 || st.SAsIn != 1 || st.SAsOut != 1 {
		t.Errorf("status %+v", st)
	}
	oldA, oldB := outSPI(p.a), outSPI(p.b)
	if err := p.a.Rekey(ctx, "link"); err != nil {
		t.Fatalf("rekey: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for outSPI(p.a) == oldA || outSPI(p.b) == oldB {
		if time.Now().After(deadline) {
			t.Fatalf("outbound SPIs %08x, %08x did not change after the rekey", outSPI(p.a), outSPI(p.b))
		}
		time.Sleep(10 * time.Millisecond)
	}
	exchange(t, p, 64<<10)
	checkTimesLeft(t, p.a)
	if err := p.a.Rekey(ctx, "nope"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("rekey unknown: %v", err)
	}
}

// checkTimesLeft checks that list-sas tells the time left to rekey and
// expiry of the IKE SA and of the negotiated Child SAs (default lifetimes).
func checkTimesLeft(t *testing.T, d *Daemon) {
	t.Helper()
	ikes := d.ListIKESAs()
	if len(ikes) != 1 {
		t.Fatalf("%d IKE SAs listed, want 1", len(ikes))
	}
	ik := ikes[0]
	if r, e := ik.RekeyInSeconds, ik.ExpiresInSeconds; r == nil || e == nil || *r <= 0 || *e <= *r {
		t.Errorf("IKE SA times left: rekey %v, expires %v; want 0 < rekey < expires", deref(r), deref(e))
	}
	current := map[string]bool{}
	for _, c := range d.IKE().IKESAs()[0].Children {
		current[control.FormatSPI(c.SPIIn)], current[control.FormatSPI(c.SPIOut)] = true, true
	}
	n := 0
	for _, sa := range d.ListSAs() {
		if !current[sa.SPI] {
			continue // an old inbound SA kept after a rekey: only its hard end
		}
		n++
		if r, e := sa.RekeyInSeconds, sa.ExpiresInSeconds; r == nil || e == nil || *r <= 0 || *e < *r {
			t.Errorf("%s SA %s times left: rekey %v, expires %v; want 0 < rekey <= expires", sa.Direction, sa.SPI, deref(r), deref(e))
		}
	}
	if n != 2 {
		t.Errorf("%d current Child SAs listed, want 2", n)
	}
}

func deref(p *int64) any {
	if p == nil {
		return "none"
	}
	return *p
}

// outSPI returns the SPI of d's (first) outbound SA.
func outSPI(d *Daemon) uint32 {
	var spi uint32
	d.SAD.Range(func(sa *sad.SA) bool {
		if sa.Dir() == sad.Outbound {
			spi = sa.SPI()
			return false
		}
		return true
	})
	return spi
}

func TestIKEDaemonWrongPSK(t *testing.T) {
	p := startIKEPair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", "one secret", "another secret")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := p.a.Initiate(ctx, "link")
	var ae *ike.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("initiate: %v, want AUTHENTICATION_FAILED", err)
	}
	for _, d := range []*Daemon{p.a, p.b} {
		if sas := d.IKE().IKESAs(); len(sas) != 0 {
			t.Errorf("IKE SAs left: %+v", sas)
		}
		if in, out := d.SAD.Len(); in+out != 0 {
			t.Errorf("%d Child SAs left", in+out)
		}
	}
}

// TestIKEDaemonTrap: traffic to a trapped child starts IKE; the first
// packets are dropped, TCP's retransmission gets through.
func TestIKEDaemonTrap(t *testing.T) {
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pa, remotePort: pb, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16",
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "trap", psk: "s"}
	b := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pb, remotePort: pa, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16",
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: "s"}
	p := startDaemons(t, a, b)
	if sas := p.a.IKE().IKESAs(); len(sas) != 0 {
		t.Fatalf("IKE before any traffic: %+v", sas)
	}
	if n := p.a.SPD.Len(); n != 1 {
		t.Fatalf("%d policies, want the trap", n)
	}
	exchange(t, p, 4096)
	waitChild(t, p.a, true)
	if p.a.Engine.Stats.NoSA.Load() == 0 {
		t.Error("no packet waited for the SA")
	}
	// Terminating brings the trap back.
	if err := p.a.Terminate(context.Background(), "link"); err != nil {
		t.Fatal(err)
	}
	waitChild(t, p.a, false)
	if n := p.a.SPD.Len(); n != 1 {
		t.Errorf("%d policies after terminate, want the trap", n)
	}
	exchange(t, p, 4096)
}

// TestIKEDaemonPort500 runs IKE the default way, with real sockets: plain
// IKE on port 500, then the float to the NAT-T port 4500 for IKE_AUTH and
// ESP. Both ends listen on their own loopback address; it needs root.
func TestIKEDaemonPort500(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: binding port 500 needs root")
	}
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.2", ike: "aes256-sha384-ecp384", esp: "aes256gcm16",
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: "s"}
	b := ikeTestPeer{addr: "127.0.0.2", remote: "127.0.0.1", ike: "aes256-sha384-ecp384", esp: "aes256gcm16",
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: "s"}
	p := startDaemons(t, a, b)
	waitChild(t, p.a, true)
	waitChild(t, p.b, true)
	for _, d := range []*Daemon{p.a, p.b} {
		sa := d.IKE().IKESAs()[0]
		if !sa.NATT || sa.Remote.Port() != 4500 {
			t.Errorf("IKE SA with %v (natt %v), want the peer's port 4500", sa.Remote, sa.NATT)
		}
	}
	exchange(t, p, 256<<10)
	for _, s := range p.a.SAD.List() {
		if s.Peer != netip.MustParseAddrPort("127.0.0.2:4500") {
			t.Errorf("ESP to %v, want 127.0.0.2:4500", s.Peer)
		}
	}
}

// TestIKEDaemonRekeyStream sends a continuous sequence-numbered UDP stream
// through two daemons whose Child SAs (every 2 s) and IKE SAs (every 5 s)
// are rekeyed by both ends, and forced to rekey at the same moment every
// 2 s: nothing may be lost or duplicated.
func TestIKEDaemonRekeyStream(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 15 s")
	}
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pa, remotePort: pb, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16-x25519",
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: "k",
		ikeRekey: "5s", childRekey: "2s", childLife: "5s"}
	b := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pb, remotePort: pa, ike: a.ike, esp: a.esp,
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: "k",
		ikeRekey: "5s", childRekey: "2s", childLife: "5s"}
	p := startDaemons(t, a, b)
	waitChild(t, p.a, true)
	waitChild(t, p.b, true)
	ln, err := p.b.Net.ListenUDPAddrPort(netip.MustParseAddrPort("10.98.0.2:7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := p.a.Net.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("10.98.0.2:7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 6000 // 2 ms apart: 12 s
	got := make(chan []uint32, 1)
	go func() {
		var seq []uint32
		buf := make([]byte, 64)
		for {
			ln.SetReadDeadline(time.Now().Add(3 * time.Second))
			k, err := ln.Read(buf)
			if err != nil || k != 4 {
				got <- seq
				return
			}
			seq = append(seq, binary.BigEndian.Uint32(buf))
		}
	}()
	spis := map[uint32]bool{}
	for i := range uint32(n) {
		if _, err := c.Write(binary.BigEndian.AppendUint32(nil, i)); err != nil {
			t.Fatal(err)
		}
		spis[outSPI(p.a)] = true
		if i%1000 == 500 {
			// Both ends at the same moment: a collision (RFC 7296
			// section 2.8.1) while the stream flows.
			go p.a.IKE().Rekey("link")
			go p.b.IKE().Rekey("link")
		}
		time.Sleep(2 * time.Millisecond)
	}
	seq := <-got
	missing, dup := 0, 0
	seen := make([]bool, n)
	for _, s := range seq {
		if s >= n || seen[s] {
			dup++
			continue
		}
		seen[s] = true
	}
	for _, ok := range seen {
		if !ok {
			missing++
		}
	}
	if missing != 0 || dup != 0 {
		t.Errorf("%d of %d packets lost, %d duplicated", missing, n, dup)
	}
	if len(spis) < 4 {
		t.Errorf("only %d outbound SAs used: the Child SAs were not rekeyed often enough", len(spis))
	}
	t.Logf("%d packets through %d outbound SAs", len(seq), len(spis))
	for _, d := range []*Daemon{p.a, p.b} {
		sas := d.IKE().IKESAs()
		if len(sas) != 1 || len(sas[0].Children) != 1 {
			t.Errorf("IKE SAs %+v, want one with one child", sas)
		}
	}
}
