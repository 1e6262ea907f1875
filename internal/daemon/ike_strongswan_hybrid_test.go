//go:build linux

package daemon

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/interop"
)

// echoRound writes data on c, an echoed connection through the tunnel,
// and checks it comes back.
func echoRound(t *testing.T, c net.Conn, data []byte) {
	t.Helper()
	go c.Write(data)
	got := make([]byte, len(data))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo through the tunnel: %v", err)
	}
}

// TestIKEStrongSwanHybridFallback: strongSwan 5.9.8 knows no additional
// key exchanges (RFC 9370). goipsec offering x25519 + ML-KEM-768 with a
// classic fallback gets a classic IKE SA, and Child SA rekeys fall back
// the same way (in a proposal of their own: strongSwan 5.9.8 refuses a
// proposal with transform types it does not know, ke1_none in it or not,
// as RFC 7296 section 3.3.6 has it); goipsec insisting on ML-KEM is refused with
// NO_PROPOSAL_CHOSEN and neither end keeps state. Both directions.
func TestIKEStrongSwanHybridFallback(t *testing.T) {
	const (
		hybrid   = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
		classic  = "aes256gcm16-prfsha384-x25519"
		optional = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"
	)
	for _, tc := range []swCase{
		{name: "goipsec-initiates-fallback", ikeGo: hybrid + ", " + classic, ikeSW: classic,
			espGo: "aes256gcm16-x25519-ke1_mlkem768, aes256gcm16-x25519", espSW: "aes256gcm16-x25519", goInitiates: true},
		{name: "strongswan-initiates-optional", ikeGo: optional, ikeSW: classic,
			espGo: "aes256gcm16-x25519-ke1_mlkem768, aes256gcm16-x25519", espSW: "aes256gcm16-x25519"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startSWPair(t, tc)
			waitChild(t, p.d, true)
			p.sw.WaitSAs(t, 10*time.Second, func(s []interop.IKESA) bool { return len(s) == 1 && len(s[0].Children) == 1 })
			if sas := p.d.IKE().IKESAs(); len(sas) != 1 || sas[0].Proposal != classic {
				t.Fatalf("goipsec's IKE SA %+v, want %s", sas, classic)
			}
			c := p.echoConn(t)
			data := bytes.Repeat([]byte("hybrid fallback "), 8000)
			echoRound(t, c, data)
			p.checkKeys(t)
			// A Child SA rekey by goipsec: its proposal with ML-KEM is
			// refused by strongSwan's parser or selection, the classic
			// PFS one is taken.
			old := outSPI(p.d)
			if err := p.d.Rekey(context.Background(), "link"); err != nil {
				t.Fatal(err)
			}
			waitSPIChange(t, p.d, old)
			sas := p.d.IKE().IKESAs()
			if len(sas) != 1 || len(sas[0].Children) != 1 || sas[0].Children[0].Proposal != "aes256gcm16-x25519-noesn" {
				t.Errorf("after the rekey: %+v", sas)
			}
			echoRound(t, c, data) // the same TCP connection, over the new Child SA
		})
	}
	for _, tc := range []swCase{
		{name: "goipsec-insists-goipsec-initiates", ikeGo: hybrid, ikeSW: classic, espGo: "aes256gcm16", espSW: "aes256gcm16", goInitiates: true,
			wantGoLog: "NO_PROPOSAL_CHOSEN", wantSWL: "NO_PROP"},
		{name: "goipsec-insists-strongswan-initiates", ikeGo: hybrid, ikeSW: classic, espGo: "aes256gcm16", espSW: "aes256gcm16",
			wantGoLog: "NO_PROPOSAL_CHOSEN", wantSWL: "NO_PROP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startSWPair(t, tc)
			p.sw.WaitLog(t, tc.wantSWL, 10*time.Second)
			deadline := time.Now().Add(10 * time.Second)
			for !p.goLogged(tc.wantGoLog) {
				if time.Now().After(deadline) {
					t.Fatalf("goipsec never logged %q", tc.wantGoLog)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if tc.goInitiates && (!p.goLogged("ke1_mlkem768") || !p.goLogged("add a classic proposal")) {
				t.Error("goipsec's error does not name the refused proposal or hint at a classic fallback")
			}
			checkNothingKept(t, p.d, p.sw)
		})
	}
}
