//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// kernelIKEPeer is a goipsec configuration for a kernel-mode daemon in a
// namespace whose child is negotiated with IKEv2 (ports 500 and 4500).
type kernelIKEPeer struct {
	local, remote     string
	localID, remoteID string
	inner, peerInner  string
	tunName, psk      string
	extra             string // more connections
	log               string // a log section
}

func (p kernelIKEPeer) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections:\n  link:\n    local_addrs: [%s]\n    remote_addrs: [%s]\n", p.local, p.remote)
	fmt.Fprintf(&b, "    proposals: [aes128gcm16-prfsha256-x25519]\n    dpd_delay: 10s\n")
	fmt.Fprintf(&b, "    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n", p.localID, p.remoteID)
	fmt.Fprintf(&b, "    children:\n      net:\n        local_ts: [%s/32]\n        remote_ts: [%s/32]\n", p.inner, p.peerInner)
	fmt.Fprintf(&b, "        esp_proposals: [aes128gcm16]\n        start_action: none\n")
	b.WriteString(p.extra)
	fmt.Fprintf(&b, "secrets:\n  link: {id: [%s, %s], secret: %q}\n", p.localID, p.remoteID, p.psk)
	fmt.Fprintf(&b, "tun:\n  mode: kernel\n  name: %s\n  addresses: [%s/24]\n", p.tunName, p.inner)
	b.WriteString(p.log)
	return b.String()
}

// ctlOK runs a control command and fails the test unless it succeeds.
func (p *proc) ctlOK(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.ctl(t, args...)
	if err != nil {
		t.Fatalf("%s: goipsec %s: %v\n%s", p.name, strings.Join(args, " "), err, out)
	}
	return out
}

// spis returns the daemon's IPsec SAs as "connection.child dir spi",
// sorted, from goipsec list-sas --json.
func (p *proc) spis(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, s := range p.ikeSAs(t) {
		out = append(out, fmt.Sprintf("%s.%s %s %s", s["connection"], s["child"], s["direction"], s["spi"]))
	}
	sort.Strings(out)
	return out
}

// ikeSPIs returns the SPIs of the daemon's established IKE SAs, from
// goipsec list-sas --json.
func (p *proc) ikeSPIs(t *testing.T) []string {
	t.Helper()
	out := p.ctlOK(t, "list-sas", "--json")
	var list struct {
		IKE []struct {
			Connection, State string
			SPIi              string `json:"spi_i"`
			SPIr              string `json:"spi_r"`
		} `json:"ike_sas"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%s: list-sas --json: %v\n%s", p.name, err, out)
	}
	var spis []string
	for _, ik := range list.IKE {
		if ik.State == "ESTABLISHED" {
			spis = append(spis, ik.Connection+" "+ik.SPIi+"_"+ik.SPIr)
		}
	}
	return spis
}

// configFile is where runDaemon wrote the daemon's configuration.
func (p *proc) configFile() string {
	return filepath.Join(filepath.Dir(filepath.Dir(p.socket)), p.name+".yaml")
}

// rewrite replaces the daemon's configuration file (for a reload),
// keeping its control section.
func (p *proc) rewrite(t *testing.T, config string) {
	t.Helper()
	config += "control:\n  socket: " + p.socket + "\n"
	if err := os.WriteFile(p.configFile(), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestControlSocket drives two kernel-mode daemons in namespaces with
// every control command through their sockets: status, list-sas (text and
// JSON), initiate, traffic, rekey, reload (keeping the running SAs, adding
// a connection, changing log levels; a bad file refused), terminate, and
// the errors for unknown names.
func TestControlSocket(t *testing.T) {
	needRoot(t, "ping")
	a, b := newNetns(t, "a"), newNetns(t, "b")
	devA, devB := "gv"+runID+a.name[len(a.name)-2:], "gv"+runID+b.name[len(b.name)-2:]
	veth(t, a, devA, []string{"192.168.78.1/24"}, b, devB, []string{"192.168.78.2/24"})
	psk := randHex(16)
	pa := kernelIKEPeer{local: "192.168.78.1", remote: "192.168.78.2", localID: "a.example.org", remoteID: "b.example.org",
		inner: "10.9.0.1", peerInner: "10.9.0.2", tunName: "gt" + runID, psk: psk}
	pb := kernelIKEPeer{local: "192.168.78.2", remote: "192.168.78.1", localID: "b.example.org", remoteID: "a.example.org",
		inner: "10.9.0.2", peerInner: "10.9.0.1", tunName: "gt" + runID, psk: psk}
	da := daemon(t, "goipsec-a", a, pa.yaml())
	db := daemon(t, "goipsec-b", b, pb.yaml())

	status := da.ctlOK(t, "status")
	for _, re := range []string{`(?m)^goipsec \S+, pid [0-9]+, up `, `listening on 192\.168\.78\.1:4500, tun kernel gt` + runID,
		`(?m)^  1 connections, 1 children, SAs: 0 in, 0 out$`, `(?m)^dataplane:$`} {
		if !regexp.MustCompile(re).MatchString(status) {
			t.Errorf("status lacks %s:\n%s", re, status)
		}
	}
	if sas := da.spis(t); len(sas) != 0 {
		t.Errorf("SAs before initiate: %v", sas)
	}

	if out := da.ctlOK(t, "initiate", "link"); out != "initiated link\n" {
		t.Errorf("initiate: %q", out)
	}
	before := da.spis(t)
	if len(before) != 2 || !strings.HasPrefix(before[0], "link.net in 0x") || !strings.HasPrefix(before[1], "link.net out 0x") {
		t.Fatalf("a's SAs after initiate: %v", before)
	}
	if got := db.spis(t); len(got) != 2 {
		t.Fatalf("b's SAs after initiate: %v", got)
	}
	if out, ok := a.ping("10.9.0.2", 3); !ok {
		t.Fatalf("ping through the tunnel:\n%s", out)
	}
	ikeBefore := da.ikeSPIs(t)
	if len(ikeBefore) != 1 || strings.Join(db.ikeSPIs(t), " ") != ikeBefore[0] {
		t.Fatalf("IKE SAs: a %v, b %v", ikeBefore, db.ikeSPIs(t))
	}
	list := da.ctlOK(t, "list-sas")
	for _, re := range []string{`(?m)^link:$`, `(?m)^  IKE #[0-9]+, ESTABLISHED, IKEv2, [0-9a-f]{16}_i\* [0-9a-f]{16}_r, peer 192\.168\.78\.2:4500$`,
		`(?m)^    local 'a\.example\.org', remote 'b\.example\.org'$`, `(?m)^    aes128gcm16-prfsha256-x25519, established \S+ ago, rekeying in \S+, expires in \S+$`, `(?m)^  net: #[0-9]+, INSTALLED, TUNNEL, ESP:aes128gcm16, peer 192\.168\.78\.2:4500$`,
		`(?m)^    in  0x[0-9a-f]{8}, +[1-9][0-9]* bytes, +[1-9][0-9]* packets`, `(?m)^    out 0x[0-9a-f]{8}, +[1-9][0-9]* bytes, +[1-9][0-9]* packets`} {
		if !regexp.MustCompile(re).MatchString(list) {
			t.Errorf("list-sas lacks %s:\n%s", re, list)
		}
	}
	status = da.ctlOK(t, "status", "--json")
	var st struct {
		Connections, Children int
		SAsIn                 int `json:"sas_in"`
	}
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.Connections != 1 || st.SAsIn != 1 {
		t.Errorf("status --json: %+v %v\n%s", st, err, status)
	}

	// Rekey: new SPIs at both ends, traffic still flows.
	if out := da.ctlOK(t, "rekey", "link"); out != "rekeyed link\n" {
		t.Errorf("rekey: %q", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := da.spis(t)
		if len(now) == 2 && now[0] != before[0] && now[1] != before[1] {
			before = now
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SPIs after rekey: %v", now)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, ok := a.ping("10.9.0.2", 2); !ok {
		t.Fatalf("ping after the rekey:\n%s", out)
	}

	// Reload: a second connection (not started) and debug logs for IKE;
	// the running SAs stay.
	pa.extra = "  spare:\n    local_addrs: [192.168.78.1]\n    remote_addrs: [192.168.78.2]\n" +
		"    local: {auth: psk, id: spare-a.example.org}\n    remote: {auth: psk, id: spare-b.example.org}\n" +
		"    children:\n      net:\n        local_ts: [10.9.0.1/32]\n        remote_ts: [10.9.0.2/32]\n"
	pa.log = "log:\n  levels: {ike: debug}\n"
	da.rewrite(t, pa.yaml())
	if out := da.ctlOK(t, "reload"); out != "configuration reloaded\n" {
		t.Errorf("reload: %q", out)
	}
	da.waitFor(t, `"added": ["spare"]`, 5*time.Second)
	if got := da.spis(t); strings.Join(got, " ") != strings.Join(before, " ") {
		t.Errorf("SAs changed by the reload: %v, were %v", got, before)
	}
	if got := da.ikeSPIs(t); strings.Join(got, " ") != strings.Join(ikeBefore, " ") {
		t.Errorf("IKE SA changed by the reload: %v, was %v", got, ikeBefore)
	}
	if !strings.Contains(da.ctlOK(t, "status"), "  2 connections, 2 children, SAs: 1 in, 1 out\n") {
		t.Errorf("status after the reload:\n%s", da.ctlOK(t, "status"))
	}
	da.ctlOK(t, "rekey", "link") // at debug level now
	da.waitFor(t, "\tDEBUG\tike\t", 5*time.Second)

	// A bad file is refused, naming the file and the key; nothing changes.
	da.rewrite(t, strings.Replace(pa.yaml(), "start_action: none", "start_action: later", 1))
	out, err := da.ctl(t, "reload")
	if err == nil || !strings.Contains(out, da.configFile()) || !strings.Contains(out, "connections.link.children.net.start_action") {
		t.Errorf("reload of a bad file: %v\n%s", err, out)
	}

	// Unknown names.
	for _, cmd := range []string{"initiate", "terminate", "rekey"} {
		out, err := da.ctl(t, cmd, "nope")
		if err == nil || !strings.Contains(out, `not found`) {
			t.Errorf("%s nope: %v\n%s", cmd, err, out)
		}
	}

	// Terminate: both ends lose the SAs.
	if out := db.ctlOK(t, "terminate", "link"); out != "terminated link\n" {
		t.Errorf("terminate: %q", out)
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(da.spis(t))+len(db.spis(t)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("SAs after terminate: a %v, b %v", da.spis(t), db.spis(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, ok := a.ping("10.9.0.2", 1); ok {
		t.Errorf("ping answered with the SAs gone:\n%s", out)
	}
}
