package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/goipsec/goipsec/bench"
)

func init() { subcommands = append(subcommands, newBenchCmd) }

func newBenchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the datapath: in process (datapath) or end to end over namespaces (e2e)",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(newBenchDatapathCmd(), newBenchE2ECmd())
	return c
}

func newBenchDatapathCmd() *cobra.Command {
	var (
		transforms, sizes, goroutines, ops, sa string
		reps                                   int
		duration, warmup                       time.Duration
		esn, asJSON, asCSV, quiet, stdlibCeil  bool
		plot                                   string
		ringKiB                                int
	)
	c := &cobra.Command{
		Use:   "datapath",
		Short: "Measure ESP/AH seal, open and the dataplane pipeline in process (no root needed)",
		Long: `Measure the datapath in process: a matrix of transforms x packet sizes x
goroutines x operations (seal, open, pipeline), with each goroutine on its own
SA pair and all goroutines on one shared SA pair. Every row reports Gbit/s,
Mpps, ns/packet, allocations/packet, CPU time per byte and the ratio to the
bare cipher (the ceiling) measured in the same run at the same size and
goroutine count.

Transforms: ESP combined modes (aes128gcm16, aes256gcm16, chacha20poly1305,
aes128gmac, ...), ESP encryption-integrity pairs (aes128-sha256, null-sha256,
...) and AH (ah-sha256, ah-aes128gmac, ...). Sizes are inner IP packet lengths
in bytes, or imix (7:4:1 of 64, 576 and 1500 bytes).

The default matrix (7 transforms, 5 sizes, 1 and all CPUs: about 440
measurements with the ceilings) takes 35-55 s on 2 CPUs; --duration and
--reps trade time for steadier figures.`,
		Example: `  goipsec bench datapath
  goipsec bench datapath --transforms aes128gcm16 --sizes 1400 --goroutines 1,2,4 --duration 2s
  goipsec bench datapath --ops seal,open --sa own --json > datapath.json
  goipsec bench datapath --plot datapath.svg`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &exitError{code: 2, err: fmt.Errorf("bench datapath: unexpected argument %q (the matrix is chosen with flags)", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			usage := func(err error) error { return &exitError{code: 2, err: fmt.Errorf("bench datapath: %w", err)} }
			cfg := bench.Config{Reps: reps, Duration: duration, Warmup: warmup, ESN: esn, RingBytes: ringKiB << 10, StdlibCeilings: stdlibCeil}
			var err error
			if cfg.Transforms, err = bench.ParseTransforms(transforms); err != nil {
				return usage(err)
			}
			if cfg.Sizes, err = bench.ParseSizes(sizes); err != nil {
				return usage(err)
			}
			if cfg.Goroutines, err = bench.ParseGoroutines(goroutines); err != nil {
				return usage(err)
			}
			if cfg.Ops, err = bench.ParseOps(ops); err != nil {
				return usage(err)
			}
			if cfg.Sharing, err = bench.ParseSharing(sa); err != nil {
				return usage(err)
			}
			switch {
			case asJSON && asCSV:
				return usage(errors.New("--json and --csv exclude each other"))
			case reps < 1:
				return usage(fmt.Errorf("--reps %d: want 1 or more", reps))
			case duration <= 0:
				return usage(fmt.Errorf("--duration %v: want a positive duration", duration))
			case warmup < 0:
				return usage(fmt.Errorf("--warmup %v: must not be negative", warmup))
			case ringKiB < 0:
				return usage(fmt.Errorf("--ring %d: must not be negative", ringKiB))
			}
			if !quiet && isTerminal(os.Stderr) {
				pr := &progressLine{w: os.Stderr}
				cfg.Progress = pr.update
				defer pr.clear()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, runErr := bench.RunDatapath(ctx, cfg)
			if cfg.Progress != nil {
				cfg.Progress(bench.Progress{}) // clears the line
			}
			if rep == nil {
				return runErr
			}
			return writeReport(cmd.OutOrStdout(), "bench datapath", rep, asJSON, asCSV, plot, runErr)
		},
	}
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: 2, err: fmt.Errorf("bench datapath: %w", err)}
	})
	f := c.Flags()
	f.StringVar(&transforms, "transforms", bench.DefaultTransforms, "comma-separated transforms: ESP (aes128gcm16, aes128-sha256, null-sha256, ...) and AH (ah-sha256, ...)")
	f.StringVar(&sizes, "sizes", bench.DefaultSizes, "comma-separated inner packet lengths in bytes, and imix")
	f.StringVar(&goroutines, "goroutines", bench.DefaultGoroutines, `comma-separated goroutine counts; "cpus" is the number of CPUs`)
	f.StringVar(&ops, "ops", "seal,open,pipeline", "comma-separated operations: seal, open, pipeline")
	f.StringVar(&sa, "sa", "own,shared", "SA use with several goroutines: own (an SA pair each), shared (one pair for all)")
	f.IntVar(&reps, "reps", bench.DefaultReps, "timed repetitions per measurement (median, min and max are reported)")
	f.DurationVar(&duration, "duration", bench.DefaultDuration, "timed length of each measurement, split across its repetitions")
	f.DurationVar(&warmup, "warmup", bench.DefaultWarmup, "untimed warm-up before each measurement")
	f.IntVar(&ringKiB, "ring", bench.DefaultRingBytes>>10, "KiB of distinct packets per goroutine")
	f.BoolVar(&esn, "esn", false, "use 64-bit Extended Sequence Numbers")
	f.BoolVar(&stdlibCeil, "stdlib-ceilings", false, "also measure crypto/cipher's AES-GCM as a reference ceiling for AES-GCM and GMAC (shown, not used for the ratios)")
	f.BoolVar(&asJSON, "json", false, "write JSON instead of the table")
	f.BoolVar(&asCSV, "csv", false, "write CSV instead of the table")
	f.StringVar(&plot, "plot", "", "also write an SVG bar chart of the throughput to `FILE.svg`")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress line on stderr")
	return c
}

// report is a benchmark report ([bench.Report], [bench.E2EReport]) that
// writes itself as a table, JSON, CSV or an SVG plot.
type report interface {
	WriteTable(io.Writer) error
	WriteJSON(io.Writer) error
	WriteCSV(io.Writer) error
	WritePlot(io.Writer) error
}

// writeReport writes rep to out in the format the flags chose and the plot
// to the file plot (if not ""), and returns what the command returns: the
// run's error runErr, or exit status 130 if the run was interrupted.
func writeReport(out io.Writer, cmdName string, rep report, asJSON, asCSV bool, plot string, runErr error) error {
	var err error
	switch {
	case asJSON:
		err = rep.WriteJSON(out)
	case asCSV:
		err = rep.WriteCSV(out)
	default:
		err = rep.WriteTable(out)
	}
	if err != nil {
		return err
	}
	if plot != "" {
		if err := writePlot(plot, rep); err != nil {
			return fmt.Errorf("%s: %w", cmdName, err)
		}
	}
	if errors.Is(runErr, context.Canceled) {
		return &exitError{code: 130, err: fmt.Errorf("%s: interrupted; the figures above are partial", cmdName)}
	}
	return runErr
}

func writePlot(path string, rep report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WritePlot(f); err != nil {
		f.Close()
		return fmt.Errorf("--plot: %w", err)
	}
	return f.Close()
}

func newBenchE2ECmd() *cobra.Command {
	var (
		compare, streams, udpSizes, transform, plot, wgGo string
		baseline, profileDir                              string
		reps, udpRate, udpFlows                           int
		duration, warmup                                  time.Duration
		asJSON, asCSV, quiet, keep                        bool
	)
	c := &cobra.Command{
		Use:   "e2e",
		Short: "Measure goipsec end to end between two network namespaces, side by side with wireguard-go, strongSwan and the bare veth (root)",
		Long: `Measure goipsec end to end: build two network namespaces joined by a veth
pair, run 'goipsec run' at both ends (this very binary, static keys, a kernel
TUN device each), drive traffic through the tunnel with a built-in generator
and tear everything down again, also on Ctrl-C or failure.

Tests: TCP bulk with 1 and N streams (--streams), and UDP datagrams of a fixed
payload size (--udp-sizes) for datagrams per second and loss, sent as fast as
possible (or at --udp-rate) from --udp-flows sockets. The generator runs in
this process, on sockets made inside the namespaces.

--compare runs the same traffic over the same topology through
  wireguard-go  golang.zx2c4.com/wireguard, configured with wg (wireguard-tools);
                found on PATH, or built once with go install into the cache
                directory, or given with --wireguard-go
  strongswan    strongSwan's charon with kernel-libipsec, IKEv2 with a PSK,
                ESP with the same --transform (scripts/install-strongswan.sh)
  plain         the bare veth
and prints goipsec's ratio to each. The bare veth is measured in any case: it
is the generator's own ceiling. An implementation that is not installed is
skipped with a message.

--baseline runs a second goipsec binary (an older build) beside this one, as
"goipsec-base", so that a change is measured before and after in one run.
--profile DIR has both goipsec daemons (not the baseline's) write a CPU
profile of the whole run (goipsec run --cpuprofile) to DIR/goipsec-left.pprof
and DIR/goipsec-right.pprof;
measure one test at a time (--streams none, --udp-sizes none) to keep the
profiles apart.

Each measurement is --duration of timed traffic split across --reps
repetitions, each after --warmup on fresh connections; the repetitions of all
implementations are interleaved, so that other work on the machine disturbs
them alike. Every row gives the median with the min and max, the CPU time per
byte of each end's daemon and of the generator, and the ratios.

goipsec is keyed statically for now; IKE with a given proposal comes once the
daemon speaks IKE. Needs root, iproute2 and /dev/net/tun.`,
		Example: `  goipsec bench e2e
  goipsec bench e2e --compare wireguard-go,strongswan,plain
  goipsec bench e2e --streams 1 --udp-sizes 64,1400 --duration 10s --reps 5
  goipsec bench e2e --compare all --json > e2e.json
  goipsec bench e2e --compare all --plot e2e.svg
  goipsec bench e2e --baseline /tmp/goipsec-main --streams 1 --udp-sizes none --profile /tmp/prof`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &exitError{code: 2, err: fmt.Errorf("bench e2e: unexpected argument %q (the tests are chosen with flags)", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := e2eConfig(compare, streams, udpSizes, transform, reps, udpRate, udpFlows, duration, warmup, asJSON, asCSV)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("bench e2e: %w", err)}
			}
			if os.Geteuid() != 0 {
				return &exitError{code: 2, err: errors.New("bench e2e: needs root (network namespaces, veth links, TUN devices): run it as root; 'goipsec bench datapath' needs none")}
			}
			cfg.Version, cfg.WireguardGo, cfg.Keep = version, wgGo, keep
			if baseline != "" {
				if cfg.Baseline, err = filepath.Abs(baseline); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("bench e2e: --baseline: %w", err)}
				}
				if st, err := os.Stat(cfg.Baseline); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
					return &exitError{code: 2, err: fmt.Errorf("bench e2e: --baseline %s: not an executable file", baseline)}
				}
			}
			if profileDir != "" {
				if cfg.ProfileDir, err = filepath.Abs(profileDir); err == nil {
					err = os.MkdirAll(cfg.ProfileDir, 0o755)
				}
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("bench e2e: --profile: %w", err)}
				}
			}
			if cfg.Goipsec, err = os.Executable(); err != nil {
				return fmt.Errorf("bench e2e: %w", err)
			}
			var pr *progressLine
			if !quiet {
				cfg.Log = os.Stderr
				if isTerminal(os.Stderr) {
					pr = &progressLine{w: os.Stderr}
					cfg.Progress = pr.update
					cfg.Log = &clearingWriter{pr: pr, w: os.Stderr}
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			finished := make(chan struct{})
			defer close(finished) // before stop: the goroutine below sees it first
			go func() {
				select {
				case <-finished:
					return
				case <-ctx.Done():
				}
				if !quiet {
					if pr != nil {
						pr.clear()
					}
					fmt.Fprintln(os.Stderr, "bench e2e: interrupted: tearing down (a second signal quits at once; the next run sweeps what is left)")
				}
				stop()
			}()
			rep, runErr := bench.RunE2E(ctx, cfg)
			if pr != nil {
				pr.clear()
			}
			if rep == nil {
				return runErr
			}
			return writeReport(cmd.OutOrStdout(), "bench e2e", rep, asJSON, asCSV, plot, runErr)
		},
	}
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: 2, err: fmt.Errorf("bench e2e: %w", err)}
	})
	f := c.Flags()
	f.StringVar(&compare, "compare", "", "comma-separated implementations to compare goipsec with: wireguard-go, strongswan, plain, or all")
	f.StringVar(&streams, "streams", bench.DefaultE2EStreams, `comma-separated TCP stream counts ("none": no TCP)`)
	f.StringVar(&udpSizes, "udp-sizes", bench.DefaultE2EUDPSizes, `comma-separated UDP payload lengths in bytes ("none": no UDP)`)
	f.IntVar(&udpRate, "udp-rate", 0, "datagrams per second the UDP senders offer in all (0: as fast as they can)")
	f.IntVar(&udpFlows, "udp-flows", 1, "UDP flows (source ports), each with its own sender")
	f.StringVar(&transform, "transform", bench.DefaultE2ETransform, "ESP transform of goipsec and strongSwan (aes128gcm16, aes256gcm16, chacha20poly1305, aes128-sha256, ...)")
	f.IntVar(&reps, "reps", bench.DefaultE2EReps, "timed repetitions per measurement (median, min and max are reported)")
	f.DurationVar(&duration, "duration", bench.DefaultE2EDuration, "timed length of each measurement, split across its repetitions")
	f.DurationVar(&warmup, "warmup", bench.DefaultE2EWarmup, "untimed warm-up before each repetition")
	f.StringVar(&wgGo, "wireguard-go", "", "the wireguard-go binary (default: on PATH, else built once into the cache directory)")
	f.StringVar(&baseline, "baseline", "", "another goipsec `binary` (an older build) measured beside this one as goipsec-base")
	f.StringVar(&profileDir, "profile", "", "write a CPU profile of each goipsec daemon into `DIR` (goipsec-left.pprof, goipsec-right.pprof)")
	f.BoolVar(&keep, "keep", false, "keep the work directory (configurations and logs) and say where it is")
	f.BoolVar(&asJSON, "json", false, "write JSON instead of the table")
	f.BoolVar(&asCSV, "csv", false, "write CSV instead of the table")
	f.StringVar(&plot, "plot", "", "also write an SVG bar chart of the throughput to `FILE.svg`")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress line or notes on stderr")
	return c
}

// e2eConfig checks and turns the flags of bench e2e into a configuration.
func e2eConfig(compare, streams, udpSizes, transform string, reps, udpRate, udpFlows int, duration, warmup time.Duration, asJSON, asCSV bool) (bench.E2EConfig, error) {
	cfg := bench.DefaultE2EConfig()
	var err error
	if cfg.Compare, err = bench.ParseCompare(compare); err != nil {
		return cfg, err
	}
	if cfg.Streams, err = bench.ParseStreams(streams); err != nil {
		return cfg, err
	}
	if cfg.UDPSizes, err = bench.ParseUDPSizes(udpSizes); err != nil {
		return cfg, err
	}
	if cfg.Transform, err = bench.ParseE2ETransform(transform); err != nil {
		return cfg, err
	}
	cfg.Reps, cfg.UDPRate, cfg.UDPFlows, cfg.Duration, cfg.Warmup = reps, udpRate, udpFlows, duration, warmup
	switch {
	case asJSON && asCSV:
		return cfg, errors.New("--json and --csv exclude each other")
	case len(cfg.Streams) == 0 && len(cfg.UDPSizes) == 0:
		return cfg, errors.New("--streams none and --udp-sizes none leave nothing to measure")
	case reps < 1:
		return cfg, fmt.Errorf("--reps %d: want 1 or more", reps)
	case duration <= 0:
		return cfg, fmt.Errorf("--duration %v: want a positive duration", duration)
	case duration/time.Duration(reps) < 100*time.Millisecond:
		return cfg, fmt.Errorf("--duration %v over --reps %d leaves under 100ms per repetition", duration, reps)
	case warmup < 0:
		return cfg, fmt.Errorf("--warmup %v: must not be negative", warmup)
	case udpRate < 0:
		return cfg, fmt.Errorf("--udp-rate %d: must not be negative", udpRate)
	case udpFlows < 1 || udpFlows > bench.MaxUDPFlows:
		return cfg, fmt.Errorf("--udp-flows %d: want 1 to %d", udpFlows, bench.MaxUDPFlows)
	}
	return cfg, nil
}

// clearingWriter clears the progress line before each note written to w.
type clearingWriter struct {
	pr *progressLine
	w  io.Writer
}

func (c *clearingWriter) Write(p []byte) (int, error) {
	c.pr.clear()
	return c.w.Write(p)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressLine keeps one status line on a terminal, shown once a run has
// gone on for a couple of seconds.
type progressLine struct {
	w     io.Writer
	shown bool
}

func (p *progressLine) update(pr bench.Progress) {
	if pr.Total == 0 || pr.Done == pr.Total {
		p.clear()
		return
	}
	if pr.Elapsed < 2*time.Second && !p.shown {
		return
	}
	p.shown = true
	line := fmt.Sprintf("[%d/%d] %s  (%s elapsed, ~%s left)", pr.Done+1, pr.Total, pr.Current,
		pr.Elapsed.Round(time.Second), pr.Remaining.Round(time.Second))
	if len(line) > 110 {
		line = line[:110]
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

func (p *progressLine) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
