//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/interop"
)

// swBulk is how much each TCP transfer of TestIKEStrongSwanKernelTUN
// moves: enough for A's kernel to hand goipsec thousands of TSO
// super-packets.
const swBulk = 32 << 20

// TestIKEStrongSwanKernelTUN checks goipsec's fast datapath on a kernel TUN
// device with offloads against a receiver that verifies every TCP
// checksum itself. A goipsec daemon (kernel TUN with its default
// offloads, TSO and USO) in namespace A and charon 5.9.8 with
// kernel-libipsec in namespace B negotiate an IKEv2 (PSK) Child SA with
// aes128gcm16 ESP in UDP over a veth; then 32 MiB of TCP go each way,
// over IPv4 and over IPv6 inner addresses (one Child SA with both).
//
// A's kernel hands goipsec TCP super-packets, which goipsec cuts into
// segments in user space, computing each segment's TCP checksum itself,
// and seals. charon opens them and writes them as plain packets (no
// virtio-net header) to its TUN device, so B's kernel verifies each TCP
// checksum: one wrong checksum would count in B's Tcp InCsumErrors and
// the segment would be dropped. The other way round, goipsec coalesces
// what it decrypts into super-packets (GRO in user space) for A's kernel.
//
// Checked per family and direction: the SHA-256 of the stream at the
// receiver; no TCP (nor UDP) checksum errors counted in B or A (A's kernel
// verifies the packets goipsec writes one by one; its super-packets go as
// CHECKSUM_PARTIAL, unverified, so their payload is checked by the
// SHA-256); goipsec's Child SA and charon's counted the stream's bytes (it
// went through ESP, not around it); A to B, that A's kernel wrote
// super-packets to the TUN device (its tx bytes per packet exceed the
// MTU: a TUN device counts one packet per super-packet, however many
// segments it holds, so this is the device's TSO at work) which goipsec
// cut (it read more packets from the device than the device wrote); B to
// A, that goipsec coalesced (it wrote fewer packets to the device than it
// decrypted).
//
// The retransmissions logged are charon's losses: its UDP socket
// overflows (A to B) and its TUN device's queue (B to A).
func TestIKEStrongSwanKernelTUN(t *testing.T) {
	interop.RequireStrongSwan(t)
	needRoot(t)
	a, b := newNetns(t, "a"), newNetns(t, "b")
	devA, devB := "gv"+runID+a.name[len(a.name)-2:], "gv"+runID+b.name[len(b.name)-2:]
	veth(t, a, devA, []string{"192.168.77.1/24"}, b, devB, []string{"192.168.77.2/24"})
	for _, addr := range []string{"10.77.2.1/32", "fd77:2::1/128"} {
		check(t, "address on b's loopback", b.nl.AddAddr("lo", addr))
	}
	tunA := "gt" + runID
	psk := "kernel TUN interop " + randHex(8)
	const (
		goID, swID = "goipsec.example", "strongswan.example"
		ts4A, ts6A = "10.77.1.1", "fd77:1::1"
		ts4B, ts6B = "10.77.2.1", "fd77:2::1"
	)

	// net=2 would log every ESP packet charon sends and receives.
	sw := interop.StartStrongSwan(t, &interop.Netns{Name: b.name, Role: "b"}, "b",
		&interop.StrongSwanOptions{LogLevels: map[string]int{"net": 1}})
	sw.Load(t, &interop.SwanctlConfig{
		PSKs: []interop.PSK{{IDs: []string{goID, swID}, Secret: psk}},
		Connections: []interop.Connection{{Name: "ike", Version: 2, LocalAddrs: []string{"192.168.77.2"}, RemoteAddrs: []string{"192.168.77.1"},
			Proposals: []string{"aes128gcm16-prfsha256-x25519"}, KeyingTries: 1,
			Local: interop.Auth{Auth: "psk", ID: swID}, Remote: interop.Auth{Auth: "psk", ID: goID},
			Children: []interop.Child{{Name: "net", Mode: "tunnel", ESPProposals: []string{"aes128gcm16"},
				LocalTS: []string{ts4B + "/32", ts6B + "/128"}, RemoteTS: []string{ts4A + "/32", ts6A + "/128"}}}}},
	})
	y := fmt.Sprintf(`connections:
  sw:
    local_addrs: [192.168.77.1]
    remote_addrs: [192.168.77.2]
    proposals: [aes128gcm16-prfsha256-x25519]
    local: {auth: psk, id: %s}
    remote: {auth: psk, id: %s}
    children:
      net:
        mode: tunnel
        local_ts: [%s/32, %s/128]
        remote_ts: [%s/32, %s/128]
        esp_proposals: [aes128gcm16]
        start_action: none
secrets:
  sw: {id: [%s, %s], secret: %q}
tun:
  mode: kernel
  name: %s
  addresses: [%s/24, %s/64]
`, goID, swID, ts4A, ts6A, ts4B, ts6B, goID, swID, psk, tunA, ts4A, ts6A)
	da := daemon(t, "goipsec-a", a, y)
	if out, err := sw.Initiate("net"); err != nil {
		t.Fatalf("charon initiating: %v\n%s", err, out)
	}
	da.waitFor(t, "CHILD_SA established", 20*time.Second)
	sas := sw.MustListSAs(t)
	if len(sas) != 1 || len(sas[0].Children) != 1 || sas[0].Children[0].State != "INSTALLED" ||
		!sas[0].Children[0].Encap || sas[0].Children[0].EncrAlg != "AES_GCM_16" {
		t.Fatalf("charon's SAs: %+v", sas)
	}

	for _, fam := range []struct{ name, addrA, addrB string }{
		{"ipv4", ts4A, ts4B},
		{"ipv6", "[" + ts6A + "]", "[" + ts6B + "]"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			for _, dir := range []struct {
				name     string
				from, to *netns
				addr     string
				aSends   bool
			}{
				{"a-to-b", a, b, fam.addrB + ":7001", true},
				{"b-to-a", b, a, fam.addrA + ":7002", false},
			} {
				before := swSnapshot(t, a, b, da, sw, tunA)
				res := transfer(t, dir.from, dir.to, dir.addr, newStream(), swBulk, 0)
				after := swSnapshot(t, a, b, da, sw, tunA)
				t.Logf("%s %s: %v", fam.name, dir.name, res)
				checkSWTransfer(t, fam.name+" "+dir.name, dir.aSends, before, after)
			}
		})
	}
	if c := da.counters(t); c != nil {
		t.Logf("goipsec-a dataplane: %v", c)
		for _, k := range []string{"seal_error", "bad_packet", "no_sa", "inbound_sa", "send_errors"} {
			if c[k] != 0 {
				t.Errorf("goipsec-a counted %d %s", c[k], k)
			}
		}
	}
}

// swCounters are the counters TestIKEStrongSwanKernelTUN compares before
// and after a transfer.
type swCounters struct {
	// snmpA and snmpB are the namespaces' TCP and UDP counters.
	snmpA, snmpB snmpCounters
	// tunA is goipsec's TUN device's kernel statistics: TX is what A's
	// kernel wrote for goipsec to read (one packet per super-packet), RX
	// what goipsec wrote. tunB is charon's (ipsec0).
	tunA, tunB linkCounters
	// goOut and goIn are the bytes goipsec's outbound and inbound SAs of
	// the child counted; goRead and goDelivered its dataplane's packets
	// read from the TUN (segments) and written to it (before
	// coalescing).
	goOut, goIn, goRead, goDelivered uint64
	// swIn and swOut are the bytes charon's Child SA counted.
	swIn, swOut uint64
}

func swSnapshot(t *testing.T, a, b *netns, da *proc, sw *interop.StrongSwan, tun string) swCounters {
	t.Helper()
	var s swCounters
	s.snmpA, s.snmpB = readSNMP(t, a), readSNMP(t, b)
	s.tunA, s.tunB = readLink(t, a, tun), readLink(t, b, "ipsec0")
	for _, sa := range da.ikeSAs(t) {
		if sa["child"] != "net" {
			continue
		}
		n, _ := sa["bytes"].(float64)
		switch sa["direction"] {
		case "out":
			s.goOut += uint64(n)
		case "in":
			s.goIn += uint64(n)
		}
	}
	c := da.counters(t)
	if c == nil {
		t.Fatal("goipsec-a gave no dataplane counters")
	}
	s.goRead, s.goDelivered = c["cleartext_packets"], c["delivered"]
	for _, ike := range sw.MustListSAs(t) {
		for _, ch := range ike.Children {
			s.swIn += ch.BytesIn
			s.swOut += ch.BytesOut
		}
	}
	return s
}

// checkSWTransfer checks the counters of one transfer of swBulk bytes,
// sent by A (aSends) or by B.
func checkSWTransfer(t *testing.T, what string, aSends bool, before, after swCounters) {
	t.Helper()
	d := func(x, y uint64) uint64 { return y - x }
	for _, c := range []struct {
		name string
		n    uint64
	}{
		{"b's Tcp InCsumErrors", d(before.snmpB.tcpCsum, after.snmpB.tcpCsum)},
		{"a's Tcp InCsumErrors", d(before.snmpA.tcpCsum, after.snmpA.tcpCsum)},
		{"b's Udp InCsumErrors", d(before.snmpB.udpCsum, after.snmpB.udpCsum)},
		{"a's Udp InCsumErrors", d(before.snmpA.udpCsum, after.snmpA.udpCsum)},
	} {
		if c.n != 0 {
			t.Errorf("%s: %s went up by %d", what, c.name, c.n)
		}
	}
	txBytes, txPackets := d(before.tunA.TX.Bytes, after.tunA.TX.Bytes), d(before.tunA.TX.Packets, after.tunA.TX.Packets)
	rxBytes, rxPackets := d(before.tunA.RX.Bytes, after.tunA.RX.Bytes), d(before.tunA.RX.Packets, after.tunA.RX.Packets)
	read, delivered := d(before.goRead, after.goRead), d(before.goDelivered, after.goDelivered)
	goOut, goIn := d(before.goOut, after.goOut), d(before.goIn, after.goIn)
	swIn, swOut := d(before.swIn, after.swIn), d(before.swOut, after.swOut)
	t.Logf("%s: TUN tx %d bytes in %d packets (kernel to goipsec), goipsec read %d segments; TUN rx %d bytes in %d packets (goipsec to kernel) for %d delivered",
		what, txBytes, txPackets, read, rxBytes, rxPackets, delivered)
	t.Logf("%s: goipsec's SAs out %d in %d bytes; charon's in %d out %d bytes", what, goOut, goIn, swIn, swOut)
	// Where the stream lost packets (charon's UDP socket overflows: its
	// kernel-libipsec is slower than goipsec): what TCP retransmitted.
	t.Logf("%s: TCP segments retransmitted by a %d, by b %d; UDP receive buffer overflows at a %d, at b %d", what,
		d(before.snmpA.tcpRetrans, after.snmpA.tcpRetrans), d(before.snmpB.tcpRetrans, after.snmpB.tcpRetrans),
		d(before.snmpA.udpRcvbuf, after.snmpA.udpRcvbuf), d(before.snmpB.udpRcvbuf, after.snmpB.udpRcvbuf))
	t.Logf("%s: dropped by goipsec's TUN device tx %d rx %d, by charon's tx %d rx %d", what,
		d(before.tunA.TX.Dropped, after.tunA.TX.Dropped), d(before.tunA.RX.Dropped, after.tunA.RX.Dropped),
		d(before.tunB.TX.Dropped, after.tunB.TX.Dropped), d(before.tunB.RX.Dropped, after.tunB.RX.Dropped))
	if aSends {
		if goOut < swBulk || swIn < swBulk {
			t.Errorf("%s: the stream did not go through ESP: goipsec's outbound SA counted %d bytes, charon's inbound %d, want at least %d", what, goOut, swIn, swBulk)
		}
		if txPackets == 0 || txBytes/txPackets <= config.DefaultMTU {
			t.Errorf("%s: A's kernel wrote %d bytes in %d packets to the TUN device: no super-packets (TSO off?)", what, txBytes, txPackets)
		}
		if read <= txPackets {
			t.Errorf("%s: goipsec read %d packets for the %d the TUN device wrote: no super-packet was cut", what, read, txPackets)
		}
	} else {
		if goIn < swBulk || swOut < swBulk {
			t.Errorf("%s: the stream did not go through ESP: goipsec's inbound SA counted %d bytes, charon's outbound %d, want at least %d", what, goIn, swOut, swBulk)
		}
		if rxBytes < swBulk {
			t.Errorf("%s: goipsec wrote %d bytes to the TUN device, want at least %d", what, rxBytes, swBulk)
		}
		if rxPackets >= delivered {
			t.Errorf("%s: goipsec wrote %d packets to the TUN device for the %d it delivered: nothing coalesced", what, rxPackets, delivered)
		}
	}
}

// snmpCounters are a namespace's TCP and UDP counters from /proc/net/snmp
// (the Tcp ones count IPv4 and IPv6).
type snmpCounters struct {
	tcpCsum, tcpRetrans, udpCsum, udpRcvbuf uint64
}

// readSNMP reads the namespace's /proc/net/snmp.
func readSNMP(t *testing.T, ns *netns) snmpCounters {
	t.Helper()
	out, err := ns.nl.Output("cat", "/proc/net/snmp")
	check(t, "/proc/net/snmp in "+ns.name, err)
	return snmpCounters{
		tcpCsum:    snmpField(t, out, "Tcp:", "InCsumErrors"),
		tcpRetrans: snmpField(t, out, "Tcp:", "RetransSegs"),
		udpCsum:    snmpField(t, out, "Udp:", "InCsumErrors"),
		udpRcvbuf:  snmpField(t, out, "Udp:", "RcvbufErrors"),
	}
}

// snmpField finds field in /proc/net/snmp's pair of lines starting with
// prefix (names, then values).
func snmpField(t *testing.T, snmp, prefix, field string) uint64 {
	t.Helper()
	lines := strings.Split(snmp, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], prefix) || !strings.HasPrefix(lines[i+1], prefix) {
			continue
		}
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j, n := range names {
			if n == field && j < len(values) {
				v, err := strconv.ParseUint(values[j], 10, 64)
				check(t, "/proc/net/snmp "+prefix+field, err)
				return v
			}
		}
	}
	t.Fatalf("no %s %s in /proc/net/snmp:\n%s", prefix, field, snmp)
	return 0
}

// linkCounters are a device's kernel statistics.
type linkCounters struct {
	RX, TX struct{ Bytes, Packets, Dropped uint64 }
}

// readLink returns dev's kernel statistics in ns (ip -s -j link show).
func readLink(t *testing.T, ns *netns, dev string) linkCounters {
	t.Helper()
	out := ns.ip(t, "-s", "-j", "link", "show", "dev", dev)
	var links []struct {
		Stats linkCounters `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show dev %s in %s: %v: %s", dev, ns.name, err, out)
	}
	return links[0].Stats
}
