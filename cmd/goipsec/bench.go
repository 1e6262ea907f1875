package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/goipsec/goipsec/bench"
)

func init() { subcommands = append(subcommands, newBenchCmd) }

func newBenchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the datapath: in process (datapath) or end to end (e2e)",
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
		esn, asJSON, asCSV, quiet              bool
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
			cfg := bench.Config{Reps: reps, Duration: duration, Warmup: warmup, ESN: esn, RingBytes: ringKiB << 10}
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
			out := cmd.OutOrStdout()
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
					return err
				}
			}
			if errors.Is(runErr, context.Canceled) {
				return &exitError{code: 130, err: errors.New("bench datapath: interrupted; the figures above are partial")}
			}
			return runErr
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
	f.BoolVar(&asJSON, "json", false, "write JSON instead of the table")
	f.BoolVar(&asCSV, "csv", false, "write CSV instead of the table")
	f.StringVar(&plot, "plot", "", "also write an SVG bar chart of the throughput to `FILE.svg`")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress line on stderr")
	return c
}

func writePlot(path string, rep *bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WritePlot(f); err != nil {
		f.Close()
		return fmt.Errorf("bench datapath: --plot: %w", err)
	}
	return f.Close()
}

func newBenchE2ECmd() *cobra.Command {
	return &cobra.Command{
		Use:   "e2e",
		Short: "End-to-end throughput over network namespaces (not implemented yet)",
		Long: `Not implemented yet. bench e2e will build two network namespaces joined by a
veth pair, run goipsec at both ends and drive TCP and UDP traffic through
them, side by side with wireguard-go, strongSwan and the bare veth. It needs
the daemon and namespace handling, which come in a later step.`,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return &exitError{code: 2, err: errors.New("bench e2e: not implemented yet: it needs the daemon and network namespaces (a later step); 'goipsec bench datapath' measures the datapath in process")}
		},
	}
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
