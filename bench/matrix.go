package bench

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goipsec/goipsec/internal/xform"
)

// DefaultTransforms is the transform list of a default run.
const DefaultTransforms = "aes128gcm16,aes256gcm16,chacha20poly1305,aes128gmac,aes128-sha256,null-sha256,ah-sha256"

// DefaultSizes is the packet size list of a default run.
const DefaultSizes = "64,512,1400,8192,imix"

// DefaultGoroutines is the goroutine list of a default run: 1 and the
// number of CPUs.
const DefaultGoroutines = "1,cpus"

// Defaults of Config's measurement settings.
const (
	DefaultReps      = 5
	DefaultDuration  = 60 * time.Millisecond
	DefaultWarmup    = 5 * time.Millisecond
	DefaultRingBytes = 2 << 20
)

// IMIX is the packet size mix that the size "imix" cycles through: 7:4:1
// of 64, 576 and 1500 bytes, interleaved.
var IMIX = []int{64, 576, 64, 64, 1500, 64, 576, 64, 64, 576, 64, 576}

// MinSize and MaxSize bound the packet sizes accepted: an IPv4 and UDP
// header at least, and room for the IPsec overhead within an IP packet.
const (
	MinSize = 28
	MaxSize = 65000
)

// Transform is one transform of the matrix: ESP encryption (and integrity
// for non-combined modes) or AH integrity.
type Transform struct {
	Name  string // canonical name: "aes128gcm16", "aes128-sha256", "ah-sha256"
	AH    bool   // an AH transform
	enc   *xform.Enc
	integ *xform.Integ
}

// String returns the transform's name.
func (t Transform) String() string { return t.Name }

// ParseTransform parses "aes128gcm16" (ESP combined mode), "aes128-sha256"
// (ESP encryption-integrity) or "ah-sha256" (AH), as strongSwan names them.
func ParseTransform(s string) (Transform, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if rest, ok := strings.CutPrefix(s, "ah-"); ok {
		in, err := xform.LookupInteg(rest)
		if err != nil {
			return Transform{}, fmt.Errorf("transform %q: %w", s, err)
		}
		return Transform{Name: "ah-" + in.Name, AH: true, integ: in}, nil
	}
	encName, integName, hasInteg := strings.Cut(s, "-")
	enc, err := xform.LookupEnc(encName)
	if err != nil {
		return Transform{}, fmt.Errorf("transform %q: %w", s, err)
	}
	t := Transform{Name: enc.Name, enc: enc}
	combined := enc.Kind == xform.KindAEAD || enc.Kind == xform.KindGMAC
	switch {
	case combined && hasInteg:
		return Transform{}, fmt.Errorf("transform %q: %s is a combined mode and takes no integrity algorithm", s, enc.Name)
	case !combined && !hasInteg:
		return Transform{}, fmt.Errorf("transform %q: %s needs an integrity algorithm (e.g. %s-sha256)", s, enc.Name, enc.Name)
	case hasInteg:
		in, err := xform.LookupInteg(integName)
		if err != nil {
			return Transform{}, fmt.Errorf("transform %q: %w", s, err)
		}
		if in.GMAC {
			return Transform{}, fmt.Errorf("transform %q: %s is not an ESP integrity algorithm", s, in.Name)
		}
		t.integ = in
		t.Name = enc.Name + "-" + in.Name
	}
	return t, nil
}

// ParseTransforms parses a comma-separated transform list (see
// ParseTransform), dropping duplicates.
func ParseTransforms(list string) ([]Transform, error) {
	var out []Transform
	for _, f := range splitList(list) {
		t, err := ParseTransform(f)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(out, func(o Transform) bool { return o.Name == t.Name }) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no transforms in %q", list)
	}
	return out, nil
}

// Size is one packet size of the matrix: the inner (cleartext) IP
// packet's length, or a mix of lengths cycled through in order.
type Size struct {
	Name    string // "1400" or "imix"
	Pattern []int  // packet lengths, cycled
}

// String returns the size's name.
func (s Size) String() string { return s.Name }

// Mean is the average packet length.
func (s Size) Mean() float64 {
	t := 0
	for _, n := range s.Pattern {
		t += n
	}
	return float64(t) / float64(len(s.Pattern))
}

// Max is the largest packet length.
func (s Size) Max() int { return slices.Max(s.Pattern) }

// ParseSizes parses a comma-separated list of packet lengths in bytes
// (MinSize to MaxSize) and the word "imix".
func ParseSizes(list string) ([]Size, error) {
	var out []Size
	for _, f := range splitList(list) {
		var s Size
		if strings.EqualFold(f, "imix") {
			s = Size{Name: "imix", Pattern: IMIX}
		} else {
			n, err := strconv.Atoi(f)
			if err != nil || n < MinSize || n > MaxSize {
				return nil, fmt.Errorf("size %q: want a length of %d to %d bytes or \"imix\"", f, MinSize, MaxSize)
			}
			s = Size{Name: strconv.Itoa(n), Pattern: []int{n}}
		}
		if !slices.ContainsFunc(out, func(o Size) bool { return o.Name == s.Name }) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no sizes in %q", list)
	}
	return out, nil
}

// MaxGoroutines bounds the goroutine counts accepted.
const MaxGoroutines = 256

// ParseGoroutines parses a comma-separated list of goroutine counts; "cpus"
// stands for runtime.NumCPU(). Duplicates are dropped, order is kept.
func ParseGoroutines(list string) ([]int, error) {
	var out []int
	for _, f := range splitList(list) {
		n := runtime.NumCPU()
		if !strings.EqualFold(f, "cpus") {
			var err error
			n, err = strconv.Atoi(f)
			if err != nil || n < 1 || n > MaxGoroutines {
				return nil, fmt.Errorf("goroutines %q: want a count of 1 to %d or \"cpus\"", f, MaxGoroutines)
			}
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no goroutine counts in %q", list)
	}
	return out, nil
}

// Op is an operation of the matrix.
type Op string

// Operations.
const (
	OpSeal     Op = "seal"     // encapsulate: tunnel-mode ESP or AH on an inner IP packet
	OpOpen     Op = "open"     // decapsulate fresh packets through the replay window
	OpPipeline Op = "pipeline" // dataplane Engine.Encrypt then Engine.Decrypt of batches
)

// AllOps lists the operations in display order.
var AllOps = []Op{OpSeal, OpOpen, OpPipeline}

// ParseOps parses a comma-separated list of operations.
func ParseOps(list string) ([]Op, error) {
	return parseEnum(list, "operation", AllOps)
}

// Sharing says how the goroutines of a measurement use SAs.
type Sharing string

// Sharing modes.
const (
	Own    Sharing = "own"    // each goroutine has its own SA pair
	Shared Sharing = "shared" // all goroutines use one SA pair (measured with 2 goroutines or more)
)

// AllSharing lists the sharing modes in display order.
var AllSharing = []Sharing{Own, Shared}

// ParseSharing parses a comma-separated list of sharing modes.
func ParseSharing(list string) ([]Sharing, error) {
	return parseEnum(list, "SA mode", AllSharing)
}

func parseEnum[T ~string](list, what string, all []T) ([]T, error) {
	var out []T
	for _, f := range splitList(list) {
		v := T(strings.ToLower(f))
		if !slices.Contains(all, v) {
			return nil, fmt.Errorf("%s %q: want one of %v", what, f, all)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %ss in %q", what, list)
	}
	// Keep display order.
	slices.SortStableFunc(out, func(a, b T) int { return slices.Index(all, a) - slices.Index(all, b) })
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Config is a datapath benchmark run: the matrix and how each point of it
// is measured.
type Config struct {
	Transforms []Transform
	Sizes      []Size
	Goroutines []int
	Ops        []Op
	Sharing    []Sharing
	// Reps is the number of timed repetitions of each measurement.
	Reps int
	// Duration is the timed length of one measurement, split evenly
	// across its repetitions.
	Duration time.Duration
	// Warmup is run, untimed, before each measurement's repetitions.
	Warmup time.Duration
	// ESN selects 64-bit Extended Sequence Numbers for every SA.
	ESN bool
	// StdlibCeilings adds, for AES-GCM and AES-GMAC transforms, crypto/cipher's
	// GCM as a reference ceiling beside the one rows are compared with (the
	// AEAD ESP itself uses, from xform): shown, never used for the ratios.
	StdlibCeilings bool
	// RingBytes is the amount of packet data in each goroutine's ring of
	// packets; 0 means DefaultRingBytes.
	RingBytes int
	// Progress, if set, is called before each measurement.
	Progress func(Progress)
}

// Progress describes where a run is.
type Progress struct {
	Done, Total int           // measurements finished and planned
	Current     string        // what is being measured now
	Elapsed     time.Duration // since the run started
	Remaining   time.Duration // estimate
}

// DefaultConfig returns the default matrix and settings.
func DefaultConfig() Config {
	c := Config{Reps: DefaultReps, Duration: DefaultDuration, Warmup: DefaultWarmup}
	c.Transforms, _ = ParseTransforms(DefaultTransforms)
	c.Sizes, _ = ParseSizes(DefaultSizes)
	c.Goroutines, _ = ParseGoroutines(DefaultGoroutines)
	c.Ops = AllOps
	c.Sharing = AllSharing
	return c
}

func (c *Config) check() error {
	switch {
	case len(c.Transforms) == 0 || len(c.Sizes) == 0 || len(c.Goroutines) == 0 || len(c.Ops) == 0 || len(c.Sharing) == 0:
		return fmt.Errorf("bench: empty matrix")
	case c.Reps < 1:
		return fmt.Errorf("bench: reps must be at least 1, got %d", c.Reps)
	case c.Duration <= 0:
		return fmt.Errorf("bench: duration must be positive, got %v", c.Duration)
	case c.Warmup < 0:
		return fmt.Errorf("bench: warm-up must not be negative, got %v", c.Warmup)
	}
	return nil
}

// point is one measurement of the plan: a result row or a ceiling.
type point struct {
	op     Op
	t      Transform
	size   Size
	g      int
	sa     Sharing
	ceil   string // ceiling kind; for a ceiling point, op is seal or open
	isCeil bool
	ref    bool // a reference ceiling (crypto/cipher's GCM): reported, not a ratio's base
}

func (p point) String() string {
	if p.isCeil {
		return fmt.Sprintf("ceiling %s (with %s) %s %s G=%d", p.ceil, p.t, p.op, p.size, p.g)
	}
	return fmt.Sprintf("%s %s %s G=%d %s", p.op, p.t, p.size, p.g, p.sa)
}

// plan lists the measurements of c in groups, one per goroutine count,
// size and transform, in that nesting: a group's rows and the ceilings
// they are compared with, whose repetitions are interleaved so that the
// machine's changing load hits them alike.
func (c *Config) plan() [][]point {
	var out [][]point
	for _, g := range c.Goroutines {
		for _, s := range c.Sizes {
			for _, t := range c.Transforms {
				rows := c.rows(t, s, g)
				if len(rows) == 0 {
					continue
				}
				var grp []point
				for _, dir := range []Op{OpSeal, OpOpen} {
					if needsCeiling(rows, dir) {
						grp = append(grp, point{op: dir, t: t, size: s, g: g, ceil: ceilingKind(t), isCeil: true})
						if c.StdlibCeilings && isAESGCM(t) {
							grp = append(grp, point{op: dir, t: t, size: s, g: g, ceil: ceilingKind(t) + stdlibSuffix, isCeil: true, ref: true})
						}
					}
				}
				out = append(out, append(grp, rows...))
			}
		}
	}
	return out
}

func (c *Config) rows(t Transform, s Size, g int) []point {
	var out []point
	for _, op := range c.Ops {
		if op == OpPipeline && t.AH {
			continue // the dataplane engine has no AH path yet
		}
		for _, sh := range c.Sharing {
			if sh == Shared && g == 1 {
				continue // one goroutine: the same as own
			}
			out = append(out, point{op: op, t: t, size: s, g: g, sa: sh, ceil: ceilingKind(t)})
		}
	}
	return out
}

func needsCeiling(rows []point, dir Op) bool {
	for _, r := range rows {
		if r.op == dir || r.op == OpPipeline {
			return true
		}
	}
	return false
}

// stdlibSuffix marks a reference ceiling's primitive name.
const stdlibSuffix = " (crypto/cipher)"

// isAESGCM reports whether t's ceiling is AES-GCM or AES-GMAC, which xform
// builds with internal/aesgcm.
func isAESGCM(t Transform) bool {
	switch {
	case t.AH:
		return t.integ.GMAC
	case t.enc.Kind == xform.KindGMAC:
		return true
	}
	return t.enc.Kind == xform.KindAEAD && t.enc.ID == xform.EncrAESGCM16
}

// ceilingKind names the bare primitive a transform is compared with.
func ceilingKind(t Transform) string {
	switch {
	case t.AH && t.integ.GMAC:
		return "gmac-" + t.integ.Name[:len(t.integ.Name)-len("gmac")]
	case t.AH:
		return "hmac-" + t.integ.Name
	case t.enc.Kind == xform.KindAEAD:
		return t.enc.Name
	case t.enc.Kind == xform.KindGMAC:
		return "gmac-" + t.enc.Name[:len(t.enc.Name)-len("gmac")]
	case t.enc.Kind == xform.KindNull:
		return "hmac-" + t.integ.Name
	}
	return t.enc.Name + "cbc+hmac-" + t.integ.Name
}
