// Package demo is goipsec's embedded default: two peers in one process,
// each on its own userspace network stack, negotiating with IKEv2 (a
// random pre-shared key per run) over loopback UDP, then real traffic
// through ESP in UDP. No root, no files.
package demo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/daemon"
	"github.com/goipsec/goipsec/sad"
)

// Options tune the demo.
type Options struct {
	// Bytes is the size of the bulk transfer; 0 means 64 MiB.
	Bytes int64
	// Enc is the ESP proposal (strongSwan keywords, e.g. aes128gcm16 or
	// aes256-sha256); "" means aes128gcm16.
	Enc string
	// IKE is the IKE proposal; "" means aes128gcm16-prfsha256-x25519.
	IKE string
	// Log receives the daemons' logs; nil discards them.
	Log *zap.Logger
}

// Result is what a demo run measured.
type Result struct {
	Greeting   string
	Bytes      int64
	Elapsed    time.Duration
	Throughput float64 // bits per second
	SAs        [2][]sad.Snapshot
	// IKE is what each peer negotiated: its IKE SAs with their Child SAs.
	IKE [2][]ike.IKESAStatus
}

const peerConfig = `
connections:
  demo:
    local_addrs: [127.0.0.1]
    remote_addrs: [127.0.0.1]
    local_port: %d
    remote_port: %d
    proposals: [%s]
    local:  {auth: psk, id: %s}
    remote: {auth: psk, id: %s}
    children:
      net:
        mode: tunnel
        local_ts: [%s/32]
        remote_ts: [%s/32]
        esp_proposals: [%s]
        start_action: %s
secrets:
  demo: {id: [peer-a.demo, peer-b.demo], secret: 0x%s}
tun:
  mode: netstack
  addresses: [%s/24]
control:
  socket: "-"   # two daemons in one process: no control socket
`

// freeUDPPort asks the kernel for an unused loopback UDP port.
func freeUDPPort() (int, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// Run runs the demo and writes its report to w.
func Run(ctx context.Context, w io.Writer, opts Options) (*Result, error) {
	if opts.Bytes == 0 {
		opts.Bytes = 64 << 20
	}
	if opts.Enc == "" {
		opts.Enc = "aes128gcm16"
	}
	if opts.IKE == "" {
		opts.IKE = "aes128gcm16-prfsha256-x25519"
	}
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	portA, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	portB, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	psk := make([]byte, 32)
	rand.Read(psk)
	secret := hex.EncodeToString(psk)
	addrA, addrB := "10.99.0.1", "10.99.0.2"
	// b answers, a initiates once both listen.
	cfgA := fmt.Sprintf(peerConfig, portA, portB, opts.IKE, "peer-a.demo", "peer-b.demo", addrA, addrB, opts.Enc, "start", secret, addrA)
	cfgB := fmt.Sprintf(peerConfig, portB, portA, opts.IKE, "peer-b.demo", "peer-a.demo", addrB, addrA, opts.Enc, "none", secret, addrB)

	var ds [2]*daemon.Daemon
	for _, i := range []int{1, 0} {
		text := []string{cfgA, cfgB}[i]
		cfg, err := config.Parse(fmt.Sprintf("demo-peer-%c", 'a'+i), []byte(text))
		if err != nil {
			return nil, err
		}
		d, err := daemon.New(cfg, log.Named(fmt.Sprintf("peer-%c", 'a'+i)))
		if err != nil {
			return nil, err
		}
		if err := d.Start(ctx); err != nil {
			return nil, err
		}
		defer d.Close()
		go d.Serve(ctx)
		ds[i] = d
	}
	fmt.Fprintf(w, "goipsec demo: two peers in one process, each on its own userspace network stack\n")
	fmt.Fprintf(w, "  peer a %s (IKE and ESP/UDP on %v)  <->  peer b %s (IKE and ESP/UDP on %v)\n", addrA, ds[0].LocalAddr(), addrB, ds[1].LocalAddr())
	res := &Result{}
	start := time.Now()
	if err := waitEstablished(ctx, ds); err != nil {
		return nil, err
	}
	for i, d := range ds {
		res.IKE[i] = d.IKE().IKESAs()
	}
	fmt.Fprintf(w, "  IKEv2 with a pre-shared key (random per run): established in %v\n\n", time.Since(start).Round(time.Millisecond))
	writeIKE(w, res.IKE)

	// Peer b serves HTTP on its tunnel address.
	ln, err := ds[1].Net.ListenTCP(&net.TCPAddr{IP: net.ParseIP(addrB), Port: 80})
	if err != nil {
		return nil, fmt.Errorf("peer b listen: %w", err)
	}
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	client := &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{DialContext: ds[0].Net.DialContext, DisableCompression: true},
	}
	body, err := get(ctx, client, "http://"+addrB+"/")
	if err != nil {
		return nil, fmt.Errorf("GET /: %w", err)
	}
	res.Greeting = string(body)
	fmt.Fprintf(w, "GET http://%s/ from peer a through ESP: %q\n", addrB, res.Greeting)

	start = time.Now()
	n, sum, err := getBulk(ctx, client, fmt.Sprintf("http://%s/bulk?n=%d", addrB, opts.Bytes))
	res.Elapsed = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("bulk transfer: %w", err)
	}
	if want := bulkSum(opts.Bytes); sum != want {
		return nil, fmt.Errorf("bulk transfer: content differs (sha256 %x, want %x)", sum, want)
	}
	res.Bytes = n
	res.Throughput = float64(n*8) / res.Elapsed.Seconds()
	fmt.Fprintf(w, "bulk transfer b -> a: %d MiB in %v = %.0f Mbit/s, SHA-256 verified\n\n", n>>20, res.Elapsed.Round(time.Millisecond), res.Throughput/1e6)

	for i, d := range ds {
		res.SAs[i] = d.SAD.List()
	}
	writeSAs(w, res.SAs)
	return res, nil
}

// waitEstablished waits until both peers have their Child SA installed.
func waitEstablished(ctx context.Context, ds [2]*daemon.Daemon) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		up := 0
		for _, d := range ds {
			for _, sa := range d.IKE().IKESAs() {
				if sa.State == "ESTABLISHED" && len(sa.Children) > 0 {
					up++
					break
				}
			}
		}
		if up == len(ds) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: IKEv2 did not establish the tunnel: %w (run with --log-level info to see why)", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// writeIKE prints what IKEv2 negotiated, as the initiator (peer a) sees it.
func writeIKE(w io.Writer, sas [2][]ike.IKESAStatus) {
	for _, sa := range sas[0] {
		fmt.Fprintf(w, "IKE SA %s: %s  a=%s (initiator) <-> b=%s, SPIs %016x_i %016x_r\n",
			sa.Connection, sa.Proposal, sa.LocalID, sa.RemoteID, sa.SPIi, sa.SPIr)
		for _, c := range sa.Children {
			fmt.Fprintf(w, "  CHILD_SA %s: ESP %s, %s mode, SPIs %08x_i (a inbound) %08x_o (a outbound), %s === %s\n",
				c.Name, c.Proposal, c.Mode, c.SPIIn, c.SPIOut, strings.Join(c.LocalTS, ","), strings.Join(c.RemoteTS, ","))
		}
	}
	fmt.Fprintln(w)
}

func writeSAs(w io.Writer, sas [2][]sad.Snapshot) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tDIR\tSPI\tMODE\tTRANSFORM\tPACKETS\tBYTES\tDROPS")
	for i, list := range sas {
		for _, s := range list {
			var drops uint64
			for _, d := range s.Drops {
				drops += d
			}
			fmt.Fprintf(tw, "%c\t%v\t%#x\t%v\t%s\t%d\t%d\t%d\n", 'a'+i, s.Dir, s.SPI, s.Mode, s.Transform, s.Packets, s.Bytes, drops)
		}
	}
	tw.Flush()
}

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from peer b, through ESP")
	})
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.CopyN(w, newStream(), n)
	})
	return mux
}

func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func getBulk(ctx context.Context, c *http.Client, url string) (int64, [32]byte, error) {
	var sum [32]byte
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, sum, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, sum, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	copy(sum[:], h.Sum(nil))
	return n, sum, err
}

// newStream is the deterministic content of the bulk transfer.
func newStream() io.Reader { return mrand.NewChaCha8([32]byte{'g', 'o', 'i', 'p', 's', 'e', 'c'}) }

func bulkSum(n int64) [32]byte {
	h := sha256.New()
	io.CopyN(h, newStream(), n)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}
