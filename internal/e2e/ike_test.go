//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ikePeer is a goipsec configuration whose child is negotiated with IKEv2
// (PSK) instead of static keys.
type ikePeer struct {
	localPort, remotePort int
	localID, remoteID     string
	psk                   string
	proposals, esp        string
	localTS, remoteTS     string
	start                 string
	tunAddr               string
	extra                 string // more YAML under tun:
}

func (p ikePeer) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections:\n  link:\n")
	fmt.Fprintf(&b, "    local_addrs: [127.0.0.1]\n    remote_addrs: [127.0.0.1]\n")
	fmt.Fprintf(&b, "    local_port: %d\n    remote_port: %d\n", p.localPort, p.remotePort)
	fmt.Fprintf(&b, "    proposals: [%s]\n    dpd_delay: 10s\n", p.proposals)
	fmt.Fprintf(&b, "    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n", p.localID, p.remoteID)
	fmt.Fprintf(&b, "    children:\n      net:\n        mode: tunnel\n")
	fmt.Fprintf(&b, "        local_ts: [%s]\n        remote_ts: [%s]\n", p.localTS, p.remoteTS)
	fmt.Fprintf(&b, "        esp_proposals: [%s]\n        start_action: %s\n", p.esp, p.start)
	fmt.Fprintf(&b, "secrets:\n  link: {id: [%s, %s], secret: %q}\n", p.localID, p.remoteID, p.psk)
	fmt.Fprintf(&b, "tun:\n  mode: netstack\n  addresses: [%s]\n", p.tunAddr)
	b.WriteString(p.extra)
	return b.String()
}

// ctl runs a goipsec control command against a daemon. A race-enabled
// binary sleeps a second before it exits (the race runtime's
// atexit_sleep_ms) unless told not to: a short-lived client need not.
func (p *proc) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--socket", p.socket)...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ikeSAs returns the daemon's IPsec SAs from goipsec list-sas --json.
func (p *proc) ikeSAs(t *testing.T) []map[string]any {
	t.Helper()
	out, err := exec.Command(binary, "list-sas", "--json", "--socket", p.socket).Output()
	check(t, p.name+": list-sas", err)
	var list struct {
		SAs []map[string]any `json:"sas"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("%s: list-sas --json: %v\n%s", p.name, err, out)
	}
	return list.SAs
}

// TestIKEUnprivileged runs two goipsec daemons in netstack mode as nobody,
// without capabilities, on unprivileged loopback ports, with the child
// negotiated by IKEv2 with a pre-shared key: goipsec initiate brings it up,
// HTTP runs through it both ways, goipsec terminate takes it down at both
// ends, and a wrong key fails with AUTHENTICATION_FAILED at both ends.
func TestIKEUnprivileged(t *testing.T) {
	needRoot(t, "setpriv")
	web := newWebServer(t, "goipsec-ike-", 8<<20)
	token, bulk := web.token, web.bulk

	for _, tc := range []struct {
		name, ike, esp string
	}{
		{"aes-gcm", "aes128gcm16-prfsha256-x25519", "aes128gcm16"},
		{"aes-cbc", "aes256-sha384-ecp384", "aes256-sha256"},
		{"chacha", "chacha20poly1305-prfsha256-modp2048", "chacha20poly1305"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			portA, portB := freePort(t, "udp"), freePort(t, "udp")
			socks := freePort(t, "tcp")
			pa := ikePeer{localPort: portA, remotePort: portB, localID: "a.example.org", remoteID: "b.example.org",
				psk: "e2e secret", proposals: tc.ike, esp: tc.esp, localTS: "10.8.0.1/32", remoteTS: "10.8.0.2/32",
				start: "none", tunAddr: "10.8.0.1/24", extra: fmt.Sprintf("  socks5: 127.0.0.1:%d\n", socks)}
			pb := ikePeer{localPort: portB, remotePort: portA, localID: "b.example.org", remoteID: "a.example.org",
				psk: "e2e secret", proposals: tc.ike, esp: tc.esp, localTS: "10.8.0.2/32", remoteTS: "10.8.0.1/32",
				start: "none", tunAddr: "10.8.0.2/24", extra: fmt.Sprintf("  expose:\n    - {port: 80, to: %s, proto: tcp}\n", web.addr)}
			da := runDaemon(t, "goipsec-a", nil, pa.yaml(), nobody)
			db := runDaemon(t, "goipsec-b", nil, pb.yaml(), nobody)
			checkUnprivileged(t, da)

			if out, err := da.ctl(t, "initiate", "link"); err != nil {
				t.Fatalf("goipsec initiate link: %v\n%s", err, out)
			}
			da.waitFor(t, "CHILD_SA established", 10*time.Second)
			db.waitFor(t, "CHILD_SA established", 10*time.Second)

			proxy := &url.URL{Scheme: "socks5", Host: fmt.Sprintf("127.0.0.1:%d", socks)}
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
			t.Cleanup(client.CloseIdleConnections)
			for _, path := range []string{"/hello", "/bulk"} {
				resp, err := client.Get("http://10.8.0.2" + path)
				if err != nil {
					t.Fatalf("GET %s through the IKE tunnel: %v", path, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				check(t, "read body", err)
				want := []byte(token)
				if path == "/bulk" {
					want = bulk
				}
				if !bytes.Equal(body, want) {
					t.Fatalf("GET %s: %d bytes, want %d", path, len(body), len(want))
				}
			}
			for _, d := range []*proc{da, db} {
				sas := d.ikeSAs(t)
				if len(sas) != 2 {
					t.Fatalf("%s: %d SAs, want 2: %v", d.name, len(sas), sas)
				}
				for _, s := range sas {
					if s["connection"] != "link" || s["child"] != "net" || s["packets"].(float64) == 0 {
						t.Errorf("%s: SA %v", d.name, s)
					}
				}
			}
			if out, err := db.ctl(t, "terminate", "link"); err != nil {
				t.Fatalf("goipsec terminate link: %v\n%s", err, out)
			}
			da.waitFor(t, "deleted by the peer", 10*time.Second)
			for _, d := range []*proc{da, db} {
				if sas := d.ikeSAs(t); len(sas) != 0 {
					t.Errorf("%s: SAs left after terminate: %v", d.name, sas)
				}
			}
		})
	}

	t.Run("wrong-psk", func(t *testing.T) {
		portA, portB := freePort(t, "udp"), freePort(t, "udp")
		pa := ikePeer{localPort: portA, remotePort: portB, localID: "a.example.org", remoteID: "b.example.org",
			psk: "one secret", proposals: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16", localTS: "10.8.0.1/32", remoteTS: "10.8.0.2/32",
			start: "start", tunAddr: "10.8.0.1/24"}
		pb := ikePeer{localPort: portB, remotePort: portA, localID: "b.example.org", remoteID: "a.example.org",
			psk: "another secret", proposals: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16", localTS: "10.8.0.2/32", remoteTS: "10.8.0.1/32",
			start: "none", tunAddr: "10.8.0.2/24"}
		db := runDaemon(t, "goipsec-b", nil, pb.yaml(), nobody)
		da := runDaemon(t, "goipsec-a", nil, pa.yaml(), nobody)
		db.waitFor(t, "AUTHENTICATION_FAILED", 10*time.Second)
		da.waitFor(t, "AUTHENTICATION_FAILED", 10*time.Second)
		for _, d := range []*proc{da, db} {
			if sas := d.ikeSAs(t); len(sas) != 0 {
				t.Errorf("%s: SAs after a failed authentication: %v", d.name, sas)
			}
		}
	})
}
