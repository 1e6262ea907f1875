//go:build linux

package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// nobody is the unprivileged user (and group) the netstack daemons run as.
const nobody = 65534

// TestUnprivileged runs two goipsec daemons in netstack mode as nobody,
// with no capabilities at all (none effective, permitted, inheritable,
// ambient or in the bounding set; no new privileges), talking ESP over
// loopback on unprivileged UDP ports. a offers a SOCKS5 proxy and a port
// forward into the tunnel; b exposes the test's HTTP server on its tunnel
// address. HTTP GETs through the proxy and through the forward return the
// server's body, and a 32 MiB download arrives intact.
func TestUnprivileged(t *testing.T) {
	needRoot(t, "setpriv")
	web := newWebServer(t, "goipsec-e2e-", 32<<20)
	token, bulk := web.token, web.bulk

	espA, espB := freePort(t, "udp"), freePort(t, "udp")
	socks, fwd := freePort(t, "tcp"), freePort(t, "tcp")
	ab, ba := newSA(0x4001), newSA(0x4002)
	pa := peer{local: "127.0.0.1", remote: "127.0.0.1", localPort: espA, remotePort: espB, mode: "tunnel",
		localTS: []string{"10.7.0.1"}, remoteTS: []string{"10.7.0.2"}, in: ba, out: ab,
		tunMode: "netstack", tunAddrs: []string{"10.7.0.1/24"},
		extra: fmt.Sprintf("  socks5: 127.0.0.1:%d\n  forwards:\n    - {listen: 127.0.0.1:%d, to: 10.7.0.2:80, proto: tcp}\n", socks, fwd)}
	pb := peer{local: "127.0.0.1", remote: "127.0.0.1", localPort: espB, remotePort: espA, mode: "tunnel",
		localTS: []string{"10.7.0.2"}, remoteTS: []string{"10.7.0.1"}, in: ab, out: ba,
		tunMode: "netstack", tunAddrs: []string{"10.7.0.2/24"},
		extra: fmt.Sprintf("  expose:\n    - {port: 80, to: %s, proto: tcp}\n", web.addr)}
	da := runDaemon(t, "goipsec-a", nil, pa.yaml(), nobody)
	db := runDaemon(t, "goipsec-b", nil, pb.yaml(), nobody)
	for _, p := range []*proc{da, db} {
		checkUnprivileged(t, p)
	}

	get := func(client *http.Client, u string) []byte {
		t.Helper()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s, %v", u, resp.Status, err)
		}
		return body
	}
	proxy := &url.URL{Scheme: "socks5", Host: fmt.Sprintf("127.0.0.1:%d", socks)}
	viaSOCKS := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	direct := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	t.Cleanup(viaSOCKS.CloseIdleConnections)
	t.Cleanup(direct.CloseIdleConnections)

	if body := get(viaSOCKS, "http://10.7.0.2/hello"); string(body) != token {
		t.Errorf("GET http://10.7.0.2/hello through SOCKS5 %v: %q, want %q", proxy, body, token)
	}
	fwdURL := fmt.Sprintf("http://127.0.0.1:%d", fwd)
	if body := get(direct, fwdURL+"/hello"); string(body) != token {
		t.Errorf("GET %s/hello through the forward: %q, want %q", fwdURL, body, token)
	}
	for _, c := range []struct {
		name, url string
		client    *http.Client
	}{{"SOCKS5", "http://10.7.0.2/bulk", viaSOCKS}, {"forward", fwdURL + "/bulk", direct}} {
		begin := time.Now()
		body := get(c.client, c.url)
		dur := time.Since(begin)
		if !bytes.Equal(body, bulk) {
			t.Errorf("GET %s through the %s: %d bytes, SHA-256 %x, want %d bytes, %x", c.url, c.name, len(body), sha256.Sum256(body), len(bulk), sha256.Sum256(bulk))
			continue
		}
		t.Logf("GET %s through the %s: %v", c.url, c.name, transferResult{bytes: int64(len(body)), dur: dur})
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		check(t, "udp port", err)
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(t, "tcp port", err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// checkUnprivileged checks from /proc that the daemon runs as nobody with
// no capabilities of any kind.
func checkUnprivileged(t *testing.T, p *proc) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	check(t, p.name, err)
	want := map[string]string{
		"Uid":    strings.Repeat(fmt.Sprint(nobody, "\t"), 3) + fmt.Sprint(nobody),
		"Gid":    strings.Repeat(fmt.Sprint(nobody, "\t"), 3) + fmt.Sprint(nobody),
		"Groups": "",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1",
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			got[k] = strings.TrimSpace(v)
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s (pid %d): %s: %q, want %q", p.name, p.cmd.Process.Pid, k, got[k], v)
		}
	}
	t.Logf("%s (pid %d): uid %s, CapEff %s, CapBnd %s, NoNewPrivs %s", p.name, p.cmd.Process.Pid, got["Uid"], got["CapEff"], got["CapBnd"], got["NoNewPrivs"])
}

// webServer is an HTTP server on the test's loopback that serves /hello
// (a random token) and /bulk (random bytes), closed when the test ends.
type webServer struct {
	addr  net.Addr
	token string
	bulk  []byte
}

// newWebServer starts a webServer whose token starts with prefix and
// whose bulk body is size bytes.
func newWebServer(t *testing.T, prefix string, size int) *webServer {
	t.Helper()
	s := &webServer{token: prefix + randHex(8), bulk: randBytes(size)}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, s.token) })
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) { w.Write(s.bulk) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(t, "listen", err)
	s.addr = ln.Addr()
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}
