package interop

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writePcap writes the messages as IPv4/UDP packets (port 500, or 4500 with
// the non-ESP marker) in a pcap file with link type RAW.
func writePcap(t *testing.T, path string, c *capture) {
	var out []byte
	out = binary.LittleEndian.AppendUint32(out, 0xa1b2c3d4)
	out = binary.LittleEndian.AppendUint16(out, 2)
	out = binary.LittleEndian.AppendUint16(out, 4)
	out = append(out, make([]byte, 8)...)
	out = binary.LittleEndian.AppendUint32(out, 65535)
	out = binary.LittleEndian.AppendUint32(out, 101) // LINKTYPE_RAW
	local, remote := netip.MustParseAddr(c.Local).As4(), netip.MustParseAddr(c.Remote).As4()
	for i := range c.Messages {
		ike := c.raw(t, i)
		port := uint16(500)
		if c.Messages[i].Port == 4500 {
			port = 4500
			ike = append([]byte{0, 0, 0, 0}, ike...) // non-ESP marker
		}
		src, dst := local, remote
		if strings.HasPrefix(c.Messages[i].Dir, "charon") {
			src, dst = remote, local
		}
		pkt := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0}
		binary.BigEndian.PutUint16(pkt[2:], uint16(20+8+len(ike)))
		pkt = append(append(pkt, src[:]...), dst[:]...)
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(binary.BigEndian.Uint16(pkt[j:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(pkt[10:], ^uint16(sum))
		pkt = binary.BigEndian.AppendUint16(pkt, port)
		pkt = binary.BigEndian.AppendUint16(pkt, port)
		pkt = binary.BigEndian.AppendUint16(pkt, uint16(8+len(ike)))
		pkt = binary.BigEndian.AppendUint16(pkt, 0) // no UDP checksum
		pkt = append(pkt, ike...)
		out = binary.LittleEndian.AppendUint32(out, uint32(i))
		out = binary.LittleEndian.AppendUint32(out, 0)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(pkt)))
		out = binary.LittleEndian.AppendUint32(out, uint32(len(pkt)))
		out = append(out, pkt...)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTshark gives Wireshark's IKEv2 dissector our keys (its
// ikev2_decryption_table format, as strongSwan's save-keys plugin writes
// it): it must decode every message without complaint, decrypt every
// Encrypted payload and find the integrity checksums correct.
// (Wireshark 4.0 cannot decrypt ChaCha20-Poly1305 in IKEv2.)
func TestTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	for _, tc := range []struct {
		file, encr, integ string
	}{
		{"x25519-aes128gcm16.json", "AES-GCM-128 with 16 octet ICV [RFC5282]", "NONE [RFC4306]"},
		{"ecp384-aes256-sha384.json", "AES-CBC-256 [RFC3602]", "HMAC_SHA2_384_192 [RFC4868]"},
		{"ecp256-aes256gcm16-prfsha512.json", "AES-GCM-256 with 16 octet ICV [RFC5282]", "NONE [RFC4306]"},
		{"goipsec-responder.json", "AES-GCM-256 with 16 octet ICV [RFC5282]", "NONE [RFC4306]"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := load(t, tc.file)
			pcap := filepath.Join(t.TempDir(), "ike.pcap")
			writePcap(t, pcap, c)
			n := len(c.Messages)
			spii, spir := c.Messages[n-6].Hex[:16], c.Messages[n-5].Hex[16:32]
			if c.Messages[0].Dir == "charon->goipsec" {
				spii, spir = c.Messages[0].Hex[:16], c.Messages[1].Hex[16:32]
			}
			uat := fmt.Sprintf(`%s,%s,%s,%s,"%s",%s,%s,"%s"`, spii, spir, c.Ours["SK_ei"], c.Ours["SK_er"], tc.encr, c.Ours["SK_ai"], c.Ours["SK_ar"], tc.integ)
			cmd := exec.Command("tshark", "-r", pcap, "-o", "uat:ikev2_decryption_table:"+uat, "-V")
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("tshark: %v", err)
			}
			s := string(out)
			if got := strings.Count(s, "Decrypted Data"); got != 4 {
				t.Errorf("tshark decrypted %d Encrypted payloads, want 4", got)
			}
			for _, want := range []string{"Identification Data:" + c.IDi, "Identification Data:" + c.IDr,
				"NAT_DETECTION_SOURCE_IP", "Delete", "Traffic Selector - Initiator", "Traffic Selector - Responder"} {
				if !strings.Contains(s, want) {
					t.Errorf("tshark output lacks %q", want)
				}
			}
			if tc.integ != "NONE [RFC4306]" {
				if got := strings.Count(s, "[correct]"); got != 4 {
					t.Errorf("%d integrity checksums correct, want 4", got)
				}
			}
			for _, bad := range []string{"Malformed", "[incorrect", "Expert Info (Error", "Expert Info (Warning"} {
				if strings.Contains(s, bad) {
					t.Errorf("tshark reports %q", bad)
				}
			}
		})
	}
}
