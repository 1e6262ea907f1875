//go:build linux

package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFailClosed runs links whose receiving side does not hold the sender's
// SA (wrong keys, or no SA under the SPI the sender uses): ping and TCP
// must fail, and a capture on the veth must show the attempts leaving as
// ESP in UDP only, never in clear, even in transport mode where the peer's
// own address is reachable in clear over the very same veth.
func TestFailClosed(t *testing.T) {
	needRoot(t, "ping", "dumpcap", "tshark")
	for _, tc := range []struct {
		name string
		c    linkCase
		// b gets this instead of the SA a sends with.
		wrong func(good sa) sa
		// counter is b's dataplane counter (goipsec status) of the drops.
		counter string
	}{
		{"transport/ipv4/wrong-keys", linkCase{mode: "transport"}, wrongKey, "inbound_sa"},
		{"transport/ipv4/no-SA", linkCase{mode: "transport"}, otherSPI, "unknown_spi"},
		{"transport/ipv6/wrong-keys", linkCase{mode: "transport", underlay6: true}, wrongKey, "inbound_sa"},
		{"tunnel/inner4/wrong-keys", linkCase{mode: "tunnel"}, wrongKey, "inbound_sa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Both directions broken: each side rejects what the other
			// sends (a's replies would be rejected too).
			var wrongB, wrongA sa
			l := newLinkOpts(t, tc.c, func(ab, ba sa) linkOptions {
				wrongB, wrongA = tc.wrong(ab), tc.wrong(ba)
				return linkOptions{bIn: &wrongB, aIn: &wrongA}
			})
			// A listener on b, so that a SYN that got through would
			// connect rather than be refused.
			ln, err := l.b.listen("tcp", l.serverAddr())
			check(t, "listen on b", err)
			defer ln.Close()
			capt := startCapture(t, l.a, l.devA, 0)
			pinged := make(chan struct{})
			go func() {
				defer close(pinged)
				if out, ok := l.a.ping(l.innerB, 3); ok || !strings.Contains(out, " 0 received") {
					t.Errorf("ping %s got replies though b cannot decrypt:\n%s", l.innerB, out)
				}
			}()
			if c, err := l.a.dial("tcp", l.serverAddr(), waitTimeout); err == nil {
				c.Close()
				t.Errorf("TCP connect to %s succeeded though b cannot decrypt", l.serverAddr())
			}
			<-pinged
			capt.stop(t)
			st := checkOnlyESP(t, capt, 4500)
			t.Logf("capture on %s: %v", l.devA, st)
			if st.esp < 3 {
				t.Errorf("only %d ESP frames: the pings and SYNs were not sent protected", st.esp)
			}
			// The attempts did leave, encrypted under a's SA.
			d := decryptEchoes(t, capt, l.abSA)
			if d < 3 {
				t.Errorf("tshark decrypted %d echo requests under a's SA, want 3", d)
			}
			// And b rejected and counted them.
			if c := l.daemonB.counters(t); c != nil {
				t.Logf("b: received %d, %s %d, delivered %d", c["received_packets"], tc.counter, c[tc.counter], c["delivered"])
				if c["delivered"] != 0 || c[tc.counter] < 3 {
					t.Errorf("b's counters: delivered %d (want 0), %s %d (want at least the 3 pings)", c["delivered"], tc.counter, c[tc.counter])
				}
			}
		})
	}

	// A crash (SIGKILL) of the daemon must not open a clear path either.
	t.Run("transport/ipv4/daemon-killed", func(t *testing.T) {
		l := newLink(t, linkCase{mode: "transport"}, linkOptions{})
		if out, ok := l.a.ping(l.innerB, 1); !ok {
			t.Fatalf("ping through the link failed:\n%s", out)
		}
		l.daemonA.stop(syscall.SIGKILL, time.Second)
		capt := startCapture(t, l.a, l.devA, 0)
		out, ok := l.a.ping(l.innerB, 3)
		capt.stop(t)
		lines := capt.tshark(t, "-Y", "icmp || tcp || udp.port != 4500")
		if len(lines) > 0 || ok {
			// The fail-closed route (unreachable, lowest preference) in
			// the policy table must outlive the TUN device.
			t.Fatalf("after the daemon was killed, traffic to the protected peer left in clear (%d frames, ping ok=%v):\n%s\n%s",
				len(lines), ok, strings.Join(lines, "\n"), out)
		}
	})
}

// wrongKey is good's SPI with another key.
func wrongKey(good sa) sa { return sa{spi: good.spi, key: randBytes(20)} }

// otherSPI is an SA under an SPI the peer does not use.
func otherSPI(good sa) sa { return newSA(good.spi + 0x100000) }

// decryptEchoes counts the ICMP or ICMPv6 echo requests tshark decrypts in
// the capture with the SA.
func decryptEchoes(t *testing.T, c *capture, s sa) int {
	t.Helper()
	lines := c.tshark(t, append(wiresharkSAs(s), "-Y", "esp && (icmp.type == 8 || icmpv6.type == 128)")...)
	return len(lines)
}
