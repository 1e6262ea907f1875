//go:build linux

package interop

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteTestdata remakes testdata/ from a live strongSwan-to-strongSwan
// run when GOIPSEC_INTEROP_WRITE_TESTDATA=1: both charons' logs and
// list-sas outputs after an IKE SA with CBC+HMAC, a Child SA with PFS, a
// Child SA rekey started by the responder and an IKE SA rekey started by
// the initiator. The parser tests (parse_test.go) read them.
func TestWriteTestdata(t *testing.T) {
	if os.Getenv("GOIPSEC_INTEROP_WRITE_TESTDATA") != "1" {
		t.Skip("set GOIPSEC_INTEROP_WRITE_TESTDATA=1 to remake testdata/")
	}
	RequireStrongSwan(t)
	tp := NewTopology(t, TopologyOptions{})
	left := StartStrongSwan(t, tp.Left, "left", nil)
	right := StartStrongSwan(t, tp.Right, "right", nil)
	base := peerConfig{
		local: tp.LeftAddr.String(), remote: tp.RightAddr.String(),
		localID: "left.example", remoteID: "right.example",
		ike: "aes256-sha384-ecp256", esp: "aes128-sha256-x25519", psk: "testdata secret",
	}
	lc, rc := base, base
	lc.localInner, lc.remoteIn = []netip.Addr{tp.LeftInner}, []netip.Addr{tp.RightInner}
	rc.local, rc.remote, rc.localID, rc.remoteID = tp.RightAddr.String(), "%any", base.remoteID, base.localID
	rc.localInner, rc.remoteIn = lc.remoteIn, lc.localInner
	left.Load(t, lc.swanctl())
	right.Load(t, rc.swanctl())
	left.MustInitiate(t, "net")
	if out, err := tp.Left.Ping(tp.LeftInner.String(), tp.RightInner.String(), 2); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := right.Rekey("net"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if out, err := left.RekeyIKE("ike"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if out, err := tp.Right.Ping(tp.RightInner.String(), tp.LeftInner.String(), 2); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, s := range []*StrongSwan{left, right} {
		sas, err := s.Swanctl("--list-sas", "--pretty")
		if err != nil {
			t.Fatal(err)
		}
		write(t, "list-sas-"+s.Name+".txt", sas)
		write(t, "charon-"+s.Name+".log", s.Log())
	}
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join("testdata", name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote testdata/%s (%d bytes)", name, len(content))
}
