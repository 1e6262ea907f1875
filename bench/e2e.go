package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Implementations that bench e2e measures.
const (
	ImplGoipsec     = "goipsec"      // goipsec run at both ends (static keys)
	ImplWireguardGo = "wireguard-go" // golang.zx2c4.com/wireguard over TUN, configured with wg
	ImplStrongSwan  = "strongswan"   // strongSwan's charon with kernel-libipsec (IKEv2, PSK)
	ImplPlain       = "plain"        // the bare veth: the traffic generator's ceiling
	// ImplBaseline is a second goipsec binary (E2EConfig.Baseline), run
	// beside the first so that before and after are measured in one run.
	ImplBaseline = "goipsec-base"
)

// CompareImpls are the implementations --compare accepts, in display
// order.
var CompareImpls = []string{ImplWireguardGo, ImplStrongSwan, ImplPlain}

// allImpls is the display order of every implementation.
var allImpls = []string{ImplPlain, ImplGoipsec, ImplBaseline, ImplWireguardGo, ImplStrongSwan}

// Defaults of E2EConfig.
const (
	DefaultE2EStreams   = "1,4"
	DefaultE2EUDPSizes  = "64"
	DefaultE2EReps      = 3
	DefaultE2EDuration  = 5 * time.Second
	DefaultE2EWarmup    = 500 * time.Millisecond
	DefaultE2ETransform = "aes128gcm16"
	// WireguardGoModule is the wireguard-go version built when none is
	// found (go install MODULE@VERSION).
	WireguardGoModule = "golang.zx2c4.com/wireguard@v0.0.0-20260522210424-ecfc5a8d5446"
)

// Limits of the e2e traffic.
const (
	MaxStreams  = 64
	MaxUDPFlows = 64
	// MinUDPSize is the smallest UDP payload: the generator's 16-byte
	// header (run tag and sequence number).
	MinUDPSize = 16
	// MaxUDPSize keeps a datagram (payload, UDP and IPv4 headers) within
	// the smallest tunnel MTU of the implementations (1400).
	MaxUDPSize = 1400 - 28
)

// ParseCompare parses the --compare list: wireguard-go (also wg,
// wireguard), strongswan (also swan), plain (also veth), all, or none.
// Duplicates are dropped; the order is the display order.
func ParseCompare(list string) ([]string, error) {
	var out []string
	for _, f := range splitList(list) {
		var names []string
		switch strings.ToLower(f) {
		case "wireguard-go", "wireguard", "wg", "wireguardgo":
			names = []string{ImplWireguardGo}
		case "strongswan", "swan", "libipsec":
			names = []string{ImplStrongSwan}
		case "plain", "veth", "bare":
			names = []string{ImplPlain}
		case "all":
			names = CompareImpls
		case "none":
		default:
			return nil, fmt.Errorf("--compare %q: want a list of %s, or all or none", f, strings.Join(CompareImpls, ", "))
		}
		for _, n := range names {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return slices.Index(allImpls, a) - slices.Index(allImpls, b) })
	return out, nil
}

// ParseStreams parses a comma-separated list of TCP stream counts (1 to
// MaxStreams); an empty list (or "none") measures no TCP.
func ParseStreams(list string) ([]int, error) {
	return parseInts(list, "TCP streams", 1, MaxStreams)
}

// ParseUDPSizes parses a comma-separated list of UDP payload lengths in
// bytes (MinUDPSize to MaxUDPSize); an empty list (or "none") measures no
// UDP.
func ParseUDPSizes(list string) ([]int, error) {
	return parseInts(list, "UDP size", MinUDPSize, MaxUDPSize)
}

func parseInts(list, what string, lo, hi int) ([]int, error) {
	if strings.EqualFold(strings.TrimSpace(list), "none") {
		return nil, nil
	}
	var out []int
	for _, f := range splitList(list) {
		n, err := strconv.Atoi(f)
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("%s %q: want %d to %d", what, f, lo, hi)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// ParseE2ETransform parses goipsec's (and strongSwan's) ESP transform for
// bench e2e: an ESP transform as ParseTransform takes it; AH is refused
// (the dataplane has no AH path yet, and strongSwan's libipsec none).
func ParseE2ETransform(s string) (Transform, error) {
	t, err := ParseTransform(s)
	if err != nil {
		return Transform{}, err
	}
	if t.AH {
		return Transform{}, fmt.Errorf("transform %q: bench e2e measures ESP only (no AH in the dataplane, nor in strongSwan's libipsec)", s)
	}
	return t, nil
}

// E2ETest is one traffic pattern of an e2e run.
type E2ETest struct {
	Proto   string `json:"proto"`             // "tcp" or "udp"
	Streams int    `json:"streams,omitempty"` // TCP: parallel connections
	Size    int    `json:"size,omitempty"`    // UDP: payload bytes per datagram
}

// Name is "tcp-N" or "udp-SIZE".
func (t E2ETest) Name() string {
	if t.Proto == "tcp" {
		return "tcp-" + strconv.Itoa(t.Streams)
	}
	return "udp-" + strconv.Itoa(t.Size)
}

// Title is a readable name: "TCP, 1 stream", "UDP, 64-byte payloads".
func (t E2ETest) Title() string {
	if t.Proto == "tcp" {
		return fmt.Sprintf("TCP, %d stream%s", t.Streams, plural(t.Streams))
	}
	return fmt.Sprintf("UDP, %d-byte payloads", t.Size)
}

// E2EConfig is an end-to-end run.
type E2EConfig struct {
	// Compare lists the implementations measured besides goipsec
	// (CompareImpls). The bare veth (plain) is measured in any case: it
	// is the generator's ceiling.
	Compare []string
	// Streams are the TCP tests' stream counts; UDPSizes the UDP tests'
	// payload lengths.
	Streams  []int
	UDPSizes []int
	// UDPRate is the datagrams per second the UDP senders offer in all;
	// 0 sends as fast as they can.
	UDPRate int
	// UDPFlows is the number of UDP flows (sockets, source ports), each
	// with its own sender goroutine; 0 means 1.
	UDPFlows int
	// Transform is goipsec's and strongSwan's ESP transform.
	Transform Transform
	// Reps is the number of timed repetitions of each measurement.
	Reps int
	// Duration is the timed length of a measurement, split evenly across
	// its repetitions.
	Duration time.Duration
	// Warmup is run, untimed, before each repetition (fresh connections
	// each time).
	Warmup time.Duration
	// Goipsec is the goipsec binary run at both ends (goipsec run -c).
	Goipsec string
	// Baseline, if set, is another goipsec binary (an older build, say)
	// measured beside Goipsec as ImplBaseline, on its own TUN devices,
	// port and inner addresses.
	Baseline string
	// ProfileDir, if set, is where both goipsec daemons (not the
	// baseline's) write a CPU profile of the whole run (goipsec run
	// --cpuprofile): goipsec-left.pprof and goipsec-right.pprof.
	ProfileDir string
	// Version is goipsec's version, for the report.
	Version string
	// WireguardGo is the wireguard-go binary; empty: wireguard-go on
	// PATH, else the one built in the cache directory (built there with
	// go install WireguardGoModule if missing and go is on PATH).
	WireguardGo string
	// Keep leaves the work directory (configurations, logs) in place and
	// reports where it is.
	Keep bool
	// Progress, if set, is called before each measurement.
	Progress func(Progress)
	// Log, if set, receives notes as they happen (an implementation
	// skipped, wireguard-go being built).
	Log io.Writer
}

// DefaultE2EConfig returns the default e2e settings (goipsec and the bare
// veth).
func DefaultE2EConfig() E2EConfig {
	c := E2EConfig{UDPFlows: 1, Reps: DefaultE2EReps, Duration: DefaultE2EDuration, Warmup: DefaultE2EWarmup, Compare: []string{ImplPlain}}
	c.Streams, _ = ParseStreams(DefaultE2EStreams)
	c.UDPSizes, _ = ParseUDPSizes(DefaultE2EUDPSizes)
	c.Transform, _ = ParseE2ETransform(DefaultE2ETransform)
	return c
}

// Tests lists the traffic patterns of the run: TCP by stream count, then
// UDP by size.
func (c *E2EConfig) Tests() []E2ETest {
	var out []E2ETest
	for _, s := range c.Streams {
		out = append(out, E2ETest{Proto: "tcp", Streams: s})
	}
	for _, s := range c.UDPSizes {
		out = append(out, E2ETest{Proto: "udp", Size: s})
	}
	return out
}

// Impls lists the implementations of the run in display order: plain
// (always), goipsec, the baseline goipsec if set, then those of Compare.
func (c *E2EConfig) Impls() []string {
	out := []string{ImplPlain, ImplGoipsec}
	if c.Baseline != "" {
		out = append(out, ImplBaseline)
	}
	for _, n := range c.Compare {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return slices.Index(allImpls, a) - slices.Index(allImpls, b) })
	return out
}

func (c *E2EConfig) check() error {
	switch {
	case len(c.Streams) == 0 && len(c.UDPSizes) == 0:
		return fmt.Errorf("bench e2e: no tests: give TCP stream counts or UDP sizes")
	case c.Reps < 1:
		return fmt.Errorf("bench e2e: reps must be at least 1, got %d", c.Reps)
	case c.Duration <= 0:
		return fmt.Errorf("bench e2e: duration must be positive, got %v", c.Duration)
	case c.Duration/time.Duration(c.Reps) < 100*time.Millisecond:
		return fmt.Errorf("bench e2e: %v split across %d reps leaves under 100ms per rep", c.Duration, c.Reps)
	case c.Warmup < 0:
		return fmt.Errorf("bench e2e: warm-up must not be negative, got %v", c.Warmup)
	case c.UDPRate < 0:
		return fmt.Errorf("bench e2e: UDP rate must not be negative, got %d", c.UDPRate)
	case c.UDPFlows < 0 || c.UDPFlows > MaxUDPFlows:
		return fmt.Errorf("bench e2e: UDP flows: want 1 to %d, got %d", MaxUDPFlows, c.UDPFlows)
	case c.Transform.Name == "":
		return fmt.Errorf("bench e2e: no transform")
	case c.Transform.AH:
		return fmt.Errorf("bench e2e: %s: ESP only", c.Transform.Name)
	}
	return nil
}

// E2EImpl describes an implementation as the run set it up.
type E2EImpl struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Setup says how it was set up: keying, transform, port, device.
	Setup string `json:"setup"`
	// MTU is its tunnel device's MTU (the veth's for plain).
	MTU int `json:"mtu,omitempty"`
	// Skipped, if not empty, says why it was not measured.
	Skipped string `json:"skipped,omitempty"`
}

// E2EResult is one implementation's figures for one test.
type E2EResult struct {
	Test    string `json:"test"` // E2ETest.Name
	Proto   string `json:"proto"`
	Streams int    `json:"streams,omitempty"`
	Size    int    `json:"size,omitempty"`
	Impl    string `json:"impl"`

	// Gbps is the payload received per second (TCP goodput; UDP payload
	// bytes of the datagrams received).
	Gbps Stat `json:"gbps"`
	// Kpps and SentKpps are UDP datagrams received and sent, thousands
	// per second; Loss is the fraction of those sent in the timed window
	// that never arrived.
	Kpps     Stat `json:"kpps"`
	SentKpps Stat `json:"sent_kpps"`
	Loss     Stat `json:"loss"`

	// CPU time per payload byte received: the left (sending) end's
	// daemon, the right (receiving) end's, and the generator (this
	// process: senders and receivers). No daemon for plain: NaN.
	LeftCPUNsPerByte  Stat `json:"left_cpu_ns_per_byte"`
	RightCPUNsPerByte Stat `json:"right_cpu_ns_per_byte"`
	GenCPUNsPerByte   Stat `json:"gen_cpu_ns_per_byte"`
	// UDP: CPU time per datagram received.
	LeftCPUNsPerPacket  Stat `json:"left_cpu_ns_per_packet"`
	RightCPUNsPerPacket Stat `json:"right_cpu_ns_per_packet"`
	// Cores are CPU seconds per second: how busy each side was.
	LeftCores  Stat `json:"left_cores"`
	RightCores Stat `json:"right_cores"`
	GenCores   Stat `json:"gen_cores"`

	Bytes   uint64        `json:"bytes"`             // payload received in the timed windows
	Packets uint64        `json:"packets,omitempty"` // UDP datagrams received in them
	Reps    int           `json:"reps"`              // repetitions measured
	Failed  int           `json:"failed,omitempty"`  // repetitions that failed
	Elapsed time.Duration `json:"elapsed_ns"`        // timed wall time, all repetitions

	// Ratio is goipsec's median over this row's (Gbit/s for TCP, received
	// datagrams for UDP): above 1, goipsec is faster. 1 for goipsec.
	Ratio float64 `json:"goipsec_ratio,omitempty"`
	// CPURatio is this row's daemon CPU time per byte (both ends) over
	// goipsec's: above 1, goipsec spends less CPU per byte.
	CPURatio float64 `json:"goipsec_cpu_ratio,omitempty"`
	Err      string  `json:"error,omitempty"`
}

// E2ESettings are the settings of an e2e report.
type E2ESettings struct {
	Tests     []E2ETest     `json:"tests"`
	Impls     []string      `json:"impls"`
	Transform string        `json:"transform"`
	UDPRate   int           `json:"udp_rate"` // 0: as fast as the senders go
	UDPFlows  int           `json:"udp_flows"`
	Reps      int           `json:"reps"`
	Duration  time.Duration `json:"duration_ns"` // timed, per measurement
	Warmup    time.Duration `json:"warmup_ns"`   // per repetition
	Topology  []string      `json:"topology"`
	Method    []string      `json:"method"`
}

// E2EMethod describes how the e2e figures are made.
var E2EMethod = []string{
	"topology: two network namespaces (left, right) joined by a veth pair; every implementation runs at once over it, each on its own inner addresses; traffic goes left to right.",
	"generator: this process, on sockets made inside the namespaces (LockOSThread + setns): TCP bulk with N connections writing 128 KiB at a time; UDP from one connected socket per flow with sendmmsg in batches of 64 (receivers: recvmmsg, SO_REUSEPORT), each datagram tagged with its flow and sequence number. The generator shares the CPUs with the tunnel it measures, as iperf3 would.",
	"measurement: every repetition opens fresh connections, runs the warm-up untimed, then the timed window; the repetitions of all implementations are interleaved (rep 1 of each, rep 2 of each, in a rotating order) so that a machine shared with other work disturbs them alike; median [min-max] over the repetitions.",
	"Gbit/s: payload bytes received per second of the timed window (TCP goodput); UDP kpps: datagrams received among those sent in the window, per second; loss: the fraction of them that never arrived.",
	"CPU: utime+stime of each end's daemon (/proc/PID/stat, 10 ms ticks) and the generator's (getrusage) over the window, per payload byte (and per datagram for UDP); cores: CPU seconds per second. Kernel work done in softirq context is charged to whichever process was running.",
	"plain is the bare veth: the generator's own ceiling. goipsec/x is goipsec's median over x's (above 1: goipsec faster); CPU x/goipsec is x's daemon CPU per byte (both ends) over goipsec's (above 1: goipsec cheaper).",
}

// E2EReport is the outcome of an e2e run.
type E2EReport struct {
	Machine  Machine       `json:"machine"`
	Settings E2ESettings   `json:"settings"`
	Started  time.Time     `json:"started"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Partial  bool          `json:"partial,omitempty"`
	Impls    []E2EImpl     `json:"impls"`
	Results  []E2EResult   `json:"results"`
	// Notes are warnings about the figures (the generator near its
	// ceiling, a busy machine, wide spreads) and what was swept or kept.
	Notes []string `json:"notes,omitempty"`
}

// Result returns the row of test and impl, or nil.
func (r *E2EReport) Result(test, impl string) *E2EResult {
	for i := range r.Results {
		if r.Results[i].Test == test && r.Results[i].Impl == impl {
			return &r.Results[i]
		}
	}
	return nil
}

// RunE2E sets up the topology and the implementations, measures every
// test over every implementation and tears everything down, also when ctx
// is cancelled (the report then holds what was measured, Partial set) or
// something fails. It needs root on Linux.
func RunE2E(ctx context.Context, cfg E2EConfig) (*E2EReport, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return runE2E(ctx, &cfg)
}
