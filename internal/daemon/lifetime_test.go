package daemon

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/sad"
)

// volumePair starts two netstack daemons over loopback whose child has
// the given extra YAML at a (the initiator) and none at b.
func volumePair(t *testing.T, extraA string) *ikeDaemons {
	t.Helper()
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pa, remotePort: pb, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16",
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: "k", childExtra: extraA}
	b := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pb, remotePort: pa, ike: a.ike, esp: a.esp,
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: "k"}
	p := startDaemons(t, a, b)
	waitChild(t, p.a, true)
	waitChild(t, p.b, true)
	return p
}

// outbound returns the packets sent on each of d's outbound SAs, by SPI.
func outbound(d *Daemon, into map[uint32]uint64) {
	d.SAD.Range(func(sa *sad.SA) bool {
		if sa.Dir() == sad.Outbound {
			into[sa.SPI()] = max(into[sa.SPI()], sa.Packets())
		}
		return true
	})
}

// sendSeq sends n numbered datagrams from a to b through the tunnel, gap
// apart, and returns how often each number arrived and the packets sent
// on each of a's outbound SAs.
func sendSeq(t *testing.T, p *ikeDaemons, port uint16, n int, gap time.Duration) ([]int, map[uint32]uint64) {
	t.Helper()
	dst := netip.AddrPortFrom(netip.MustParseAddr("10.98.0.2"), port)
	ln, err := p.b.Net.ListenUDPAddrPort(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := p.a.Net.DialUDPAddrPort(netip.AddrPort{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan []int, 1)
	go func() {
		seen := make([]int, n)
		buf := make([]byte, 64)
		for {
			ln.SetReadDeadline(time.Now().Add(2 * time.Second))
			k, err := ln.Read(buf)
			if err != nil {
				got <- seen
				return
			}
			if s := binary.BigEndian.Uint32(buf); k == 4 && int(s) < n {
				seen[s]++
			}
		}
	}()
	spis := map[uint32]uint64{}
	for i := range uint32(n) {
		c.Write(binary.BigEndian.AppendUint32(nil, i))
		outbound(p.a, spis)
		time.Sleep(gap)
	}
	outbound(p.a, spis)
	return <-got, spis
}

// TestIKEDaemonVolumeLifetime runs children with packet limits: a soft
// limit (rekey_packets) rekeys the Child SA by volume, many times, with
// no packet lost; a hard limit (life_packets) reached while the rekey
// cannot happen (the peer no longer answers IKE) removes the SA, so that
// not one packet more goes out on it, and the child is deleted.
func TestIKEDaemonVolumeLifetime(t *testing.T) {
	t.Run("rekey", func(t *testing.T) {
		// rekey_time stays 1h: every rekey here is one by volume.
		p := volumePair(t, "        rekey_packets: 400\n        life_packets: 600\n")
		const n = 3000
		seen, spis := sendSeq(t, p, 7100, n, time.Millisecond)
		lost, dup := 0, 0
		for _, k := range seen {
			if k == 0 {
				lost++
			}
			if k > 1 {
				dup++
			}
		}
		if lost != 0 || dup != 0 {
			t.Errorf("%d of %d datagrams lost, %d duplicated across the rekeys", lost, n, dup)
		}
		if len(spis) < n/600+1 {
			t.Errorf("%d outbound SAs carried %d packets: want at least %d, one per 400 to 600 packets", len(spis), n, n/600+1)
		}
		for spi, k := range spis {
			if k > 600 {
				t.Errorf("outbound SA %08x sent %d packets, beyond life_packets 600", spi, k)
			}
		}
		t.Logf("%d datagrams through %d outbound SAs: %v", n, len(spis), spis)
	})
	t.Run("hard", func(t *testing.T) {
		p := volumePair(t, "        rekey_packets: 100\n        life_packets: 200\n")
		// b stops answering IKE: a's rekey at the soft limit cannot
		// complete.
		p.b.Engine.SetIKEHandler(func([]byte, netip.AddrPort) {})
		seen, spis := sendSeq(t, p, 7101, 400, time.Millisecond)
		through := 0
		for i, k := range seen {
			if k > 0 {
				through++
				if i >= 200 {
					t.Errorf("datagram %d got through, after the hard limit of 200 packets", i)
				}
			}
		}
		if through != 200 || len(spis) != 1 {
			t.Errorf("%d datagrams through %d outbound SAs (%v), want exactly life_packets (200) through one", through, len(spis), spis)
		}
		if n := len(p.a.IKE().IKESAs()[0].Children); n != 0 {
			t.Errorf("a still has %d Child SAs after the hard limit", n)
		}
		in, out := p.a.SAD.Len()
		if in != 0 || out != 0 {
			t.Errorf("a's SAD holds %d inbound and %d outbound SAs after the hard limit, want none", in, out)
		}
	})
}
