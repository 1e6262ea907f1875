//go:build linux

package daemon

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/interop"
)

func TestFragmentSizeConstants(t *testing.T) {
	if config.DefaultFragmentSize != ike.DefaultFragmentSize || config.MinFragmentSize != ike.MinFragmentSize ||
		config.MaxFragmentSize != ike.MaxFragmentSize {
		t.Fatal("internal/config and ike disagree on the IKE fragment sizes")
	}
}

// longID returns an FQDN identity of about 200 octets: with it IKE_AUTH
// messages of either side carry an identity larger than a 256-octet
// fragment, so that PSK authentication (no certificate chain) needs IKE
// fragmentation with a small fragment size.
func longID(name string) string {
	return name + "." + strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + ".example"
}

// TestIKEStrongSwanFragmentation runs IKE_AUTH between goipsec and charon
// with both fragment sizes at 256 octets (charon.fragment_size, goipsec's
// fragment_size) and identities of about 200 octets, so that every
// IKE_AUTH message in both directions goes as RFC 7383 fragments. Both
// ends' logs and goipsec's counters show the fragments; traffic then
// crosses the tunnel. With goipsec's fragmentation off, charon sends none.
func TestIKEStrongSwanFragmentation(t *testing.T) {
	for _, tc := range []struct {
		name        string
		goInitiates bool
		goMode      string
		frags       bool // fragments expected on the wire
	}{
		{"goipsec-initiates", true, "yes", true},
		{"strongswan-initiates", false, "yes", true},
		{"goipsec-fragmentation-no", true, "no", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			interop.RequireStrongSwan(t)
			tp := interop.NewTopology(t, interop.TopologyOptions{})
			sw := interop.StartStrongSwan(t, tp.Right, "sw", &interop.StrongSwanOptions{Charon: "fragment_size = 256"})
			goID, swID := longID("left"), longID("right")
			start := "none"
			if tc.goInitiates {
				start = "start"
			}
			y := fmt.Sprintf(`connections:
  link:
    local_addrs: [%s]
    remote_addrs: [%s]
    proposals: [aes128gcm16-prfsha256-x25519]
    fragmentation: %s
    fragment_size: 256
    local: {auth: psk, id: %s}
    remote: {auth: psk, id: %s}
    children:
      net:
        local_ts: [%s/32]
        remote_ts: [%s/32]
        esp_proposals: [aes128gcm16]
        start_action: %s
secrets:
  s: {id: [%s, %s], secret: %q}
tun: {mode: netstack, addresses: [%s/24]}
control: {socket: "-"}
`, tp.LeftAddr, tp.RightAddr, tc.goMode, goID, swID, tp.LeftInner, tp.RightInner, start, goID, swID, swPSK, tp.LeftInner)
			d, _ := newObservedDaemon(t, y)
			remote := tp.LeftAddr.String()
			if tc.goInitiates {
				remote = "%any"
			}
			sw.Load(t, &interop.SwanctlConfig{
				PSKs: []interop.PSK{{IDs: []string{goID, swID}, Secret: swPSK}},
				Connections: []interop.Connection{{Name: "ike", Version: 2, LocalAddrs: []string{tp.RightAddr.String()}, RemoteAddrs: []string{remote},
					Proposals: []string{"aes128gcm16-prfsha256-x25519"}, KeyingTries: 1,
					Local: interop.Auth{Auth: "psk", ID: swID}, Remote: interop.Auth{Auth: "psk", ID: goID},
					Children: []interop.Child{{Name: "net", LocalTS: []string{tp.RightInner.String() + "/32"}, RemoteTS: []string{tp.LeftInner.String() + "/32"},
						ESPProposals: []string{"aes128gcm16"}, Mode: "tunnel"}},
					Extra: map[string]string{"fragmentation": "yes"}}}})
			serveIn(t, tp.Left, d)
			if !tc.goInitiates {
				sw.Initiate("net")
			}
			waitChild(t, d, true)
			sw.WaitSAs(t, 10*time.Second, func(s []interop.IKESA) bool { return len(s) == 1 && len(s[0].Children) == 1 })

			st := d.IKE().Stats()
			swLog := sw.Log()
			splits, received := strings.Count(swLog, "splitting IKE message"), strings.Count(swLog, "received fragment #")
			t.Logf("goipsec: %d fragments sent, %d received, %d reassembled, %d rejected; charon: %d messages split, %d fragments logged as received",
				st.FragmentsSent, st.FragmentsReceived, st.Reassembled, st.FragmentsRejected, splits, received)
			if tc.frags {
				// IKE_AUTH both ways: each end split one message into
				// at least two fragments and reassembled the other's.
				if st.FragmentsSent < 2 || st.FragmentsReceived < 2 || st.Reassembled < 1 || st.FragmentsRejected != 0 {
					t.Errorf("goipsec counters: %+v", st)
				}
				if splits < 1 || !strings.Contains(swLog, "reassembled fragmented IKE message") {
					t.Errorf("charon did not split and reassemble IKE messages:\n%s", sw.LogSummary(80))
				}
				// (Equal unless a retransmission made goipsec send a
				// message twice.)
				if received < 2 || uint64(received) > st.FragmentsSent {
					t.Errorf("charon received %d fragments, goipsec sent %d", received, st.FragmentsSent)
				}
			} else if st.FragmentsSent+st.FragmentsReceived != 0 || splits != 0 || received != 0 {
				t.Errorf("fragments without fragmentation: goipsec %+v, charon split %d, received %d", st, splits, received)
			}

			// Traffic crosses the tunnel.
			c := dialEcho(t, tp.Right, tp.RightInner, d, sw)
			data := bytes.Repeat([]byte("fragmented IKE, whole tunnel "), 1000)
			go c.Write(data)
			got := make([]byte, len(data))
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("echo through the tunnel: %v", err)
			}
		})
	}
}

// TestIKEStrongSwanFragmentedCertChain authenticates goipsec and charon
// with RSA-3072 certificates issued by an intermediate CA, each end sending
// its certificate and the intermediate: IKE_AUTH messages of about 3 KB
// that, with both ends at their default fragment size of 1280, go as RFC
// 7383 fragments in both directions.
func TestIKEStrongSwanFragmentedCertChain(t *testing.T) {
	for _, goInitiates := range []bool{true, false} {
		t.Run(fmt.Sprintf("goipsec-initiates=%v", goInitiates), func(t *testing.T) {
			p := startSWCertPair(t, swCertCase{name: "fragmented-chain", keyType: interop.RSA, size: 3072, inter: true, goInitiates: goInitiates})
			waitChild(t, p.d, true)
			p.sw.WaitSAs(t, 10*time.Second, func(s []interop.IKESA) bool { return len(s) == 1 && len(s[0].Children) == 1 })
			swLog := p.sw.Log()
			for _, s := range []string{"received end entity cert", "received issuer cert", "splitting IKE message", "reassembled fragmented IKE message"} {
				if !strings.Contains(swLog, s) {
					t.Errorf("charon's log lacks %q", s)
				}
			}
			// charon says how large the message it split was.
			var size, n int
			if i := strings.Index(swLog, "splitting IKE message ("); i >= 0 {
				fmt.Sscanf(swLog[i:], "splitting IKE message (%d bytes) into %d fragments", &size, &n)
			}
			st := p.d.IKE().Stats()
			t.Logf("charon split a message of %d octets into %d fragments; goipsec: %d fragments sent, %d received, %d reassembled",
				size, n, st.FragmentsSent, st.FragmentsReceived, st.Reassembled)
			if size <= 1280 || n < 2 {
				t.Errorf("charon split a message of %d octets into %d fragments", size, n)
			}
			if st.FragmentsSent < 2 || st.FragmentsReceived < 2 || st.Reassembled < 1 || st.FragmentsRejected != 0 {
				t.Errorf("goipsec counters: %+v", st)
			}
		})
	}
}
