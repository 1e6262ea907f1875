package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goipsec/goipsec/bench"
)

func TestBenchE2EUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--reps", "0"}, "--reps 0"},
		{[]string{"--duration", "0s"}, "--duration 0s"},
		{[]string{"--duration", "200ms", "--reps", "3"}, "under 100ms per repetition"},
		{[]string{"--warmup", "-1s"}, "--warmup"},
		{[]string{"--udp-rate", "-1"}, "--udp-rate"},
		{[]string{"--udp-flows", "0"}, "--udp-flows 0"},
		{[]string{"--compare", "openvpn"}, `--compare "openvpn"`},
		{[]string{"--streams", "0"}, `TCP streams "0"`},
		{[]string{"--udp-sizes", "8"}, `UDP size "8"`},
		{[]string{"--streams", "none", "--udp-sizes", "none"}, "nothing to measure"},
		{[]string{"--transform", "ah-sha256"}, "ESP only"},
		{[]string{"--transform", "rot13"}, "rot13"},
		{[]string{"--json", "--csv"}, "exclude each other"},
		{[]string{"--frobnicate"}, "unknown flag"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		_, stderr, code := pcapRun(t, nil, append([]string{"bench", "e2e"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "bench e2e") {
			t.Errorf("bench e2e %v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	if os.Geteuid() != 0 {
		_, stderr, code := pcapRun(t, nil, "bench", "e2e")
		if code != 2 || !strings.Contains(stderr, "needs root") {
			t.Errorf("unprivileged bench e2e: exit %d, %q", code, stderr)
		}
	}
	out, _, code := pcapRun(t, nil, "bench", "e2e", "--help")
	for _, want := range []string{"--compare", "wireguard-go", "strongswan", "plain", "--udp-sizes", "--plot", "statically", "Ctrl-C"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("bench e2e --help (exit %d) lacks %q", code, want)
		}
	}
}

func TestBenchE2EConfig(t *testing.T) {
	cfg, err := e2eConfig("strongswan,wg", "1,8", "64,1372", "chacha20poly1305", 5, 1000, 4, 10*time.Second, time.Second, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Compare, []string{bench.ImplWireguardGo, bench.ImplStrongSwan}) || !slices.Equal(cfg.Streams, []int{1, 8}) ||
		!slices.Equal(cfg.UDPSizes, []int{64, 1372}) || cfg.Transform.Name != "chacha20poly1305" || cfg.Reps != 5 ||
		cfg.UDPRate != 1000 || cfg.UDPFlows != 4 || cfg.Duration != 10*time.Second || cfg.Warmup != time.Second {
		t.Errorf("%+v", cfg)
	}
	if got := cfg.Impls(); !slices.Equal(got, []string{"plain", "goipsec", "wireguard-go", "strongswan"}) {
		t.Errorf("Impls %v", got)
	}
	def, err := e2eConfig("", bench.DefaultE2EStreams, bench.DefaultE2EUDPSizes, bench.DefaultE2ETransform, bench.DefaultE2EReps, 0, 1, bench.DefaultE2EDuration, bench.DefaultE2EWarmup, false, false)
	if err != nil || len(def.Tests()) != 3 || !slices.Equal(def.Impls(), []string{"plain", "goipsec"}) {
		t.Errorf("defaults: %+v, %v", def, err)
	}
	if none, err := e2eConfig("", "none", "64", "aes128gcm16", 1, 0, 1, time.Second, 0, false, true); err != nil || len(none.Tests()) != 1 {
		t.Errorf("UDP only: %+v, %v", none, err)
	}
}

// buildGoipsec builds this command into a temporary directory.
func buildGoipsec(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "goipsec")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func needE2E(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: bench e2e runs for seconds (-short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: bench e2e needs root (network namespaces, veth, TUN); run go test as root")
	}
	for _, tool := range []string{"ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not on PATH (Debian: apt-get install iproute2)", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: no /dev/net/tun: %v", err)
	}
}

// leftovers lists what a bench e2e process pid left: its namespaces and
// processes running bin.
func leftovers(t *testing.T, pid int, bin string) []string {
	t.Helper()
	var out []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("gib-%d-", pid)) {
			out = append(out, "namespace "+e.Name())
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); err == nil && exe == bin {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p)); err == nil && !strings.Contains(string(st), ") Z ") {
				out = append(out, fmt.Sprintf("process %d", p))
			}
		}
	}
	return out
}

// TestBenchE2ERun runs a very short bench e2e (goipsec and the bare veth,
// 1 s, 1 rep) and checks the figures and that nothing is left behind.
func TestBenchE2ERun(t *testing.T) {
	needE2E(t)
	bin := buildGoipsec(t)
	plot := filepath.Join(t.TempDir(), "e2e.svg")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "e2e", "--compare", "plain", "--duration", "1s", "--reps", "1", "--warmup", "200ms", "--json", "--plot", plot)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench e2e: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	var rep bench.E2EReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout.String())
	}
	if rep.Partial || len(rep.Results) != 6 || rep.Machine.CPUs < 1 {
		t.Fatalf("report: partial %v, %d results, machine %+v", rep.Partial, len(rep.Results), rep.Machine)
	}
	for _, x := range rep.Results {
		t.Logf("%s %s: %.3f Gbit/s, %.1f kpps, left CPU %.2f ns/B", x.Test, x.Impl, x.Gbps.Median, x.Kpps.Median, x.LeftCPUNsPerByte.Median)
		if x.Err != "" || x.Reps != 1 || !(x.Gbps.Median > 0) || x.Bytes == 0 {
			t.Errorf("%s %s: %+v", x.Test, x.Impl, x)
		}
		if x.Proto == "udp" && !(x.Kpps.Median > 0 && x.SentKpps.Median >= x.Kpps.Median) {
			t.Errorf("%s %s: kpps %+v sent %+v", x.Test, x.Impl, x.Kpps, x.SentKpps)
		}
		if x.Impl == bench.ImplGoipsec && !(x.LeftCPUNsPerByte.Median > 0 && x.RightCPUNsPerByte.Median > 0 && x.Ratio == 1) {
			t.Errorf("%s goipsec: CPU %+v %+v ratio %v", x.Test, x.LeftCPUNsPerByte, x.RightCPUNsPerByte, x.Ratio)
		}
		if x.Impl == bench.ImplPlain && !(x.Ratio > 0) {
			t.Errorf("%s plain: no ratio", x.Test)
		}
	}
	if f, err := os.Open(plot); err != nil {
		t.Error(err)
	} else {
		d := xml.NewDecoder(f)
		for {
			if _, err := d.Token(); err != nil {
				if err != io.EOF {
					t.Errorf("plot: %v", err)
				}
				break
			}
		}
		f.Close()
	}
	if left := leftovers(t, cmd.Process.Pid, bin); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestBenchE2EInterrupt interrupts a run during its measurements: it
// prints partial figures, exits 130 and leaves nothing behind.
func TestBenchE2EInterrupt(t *testing.T) {
	needE2E(t)
	bin := buildGoipsec(t)
	cmd := exec.Command(bin, "bench", "e2e", "--compare", "plain", "--duration", "2s", "--reps", "1", "--warmup", "100ms", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Wait until its namespaces exist and it has measured for a while.
	prefix := fmt.Sprintf("gib-%d-", cmd.Process.Pid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir("/run/netns")
		if slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), prefix) }) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no namespace %s* after 30s:\n%s", prefix, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(6 * time.Second) // set-up, then about two measurements
	cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("still running 30s after SIGINT")
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("exit: %v, want status 130\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr: %s", stderr.String())
	}
	var rep bench.E2EReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || !rep.Partial {
		t.Errorf("partial JSON: %v, partial %v\n%s", err, rep.Partial, stdout.String())
	}
	t.Logf("interrupted after %d results", len(rep.Results))
	if left := leftovers(t, cmd.Process.Pid, bin); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestBenchE2EKilled kills a run outright (no cleanup runs): its daemons
// die with it (Pdeathsig), and the next run sweeps the namespaces and the
// work directory it left.
func TestBenchE2EKilled(t *testing.T) {
	needE2E(t)
	bin := buildGoipsec(t)
	cmd := exec.Command(bin, "bench", "e2e", "--compare", "plain", "--duration", "10s", "--reps", "1", "-q")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Wait until both goipsec daemons run, then kill the bench.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, l := range leftovers(t, pid, bin) {
			if strings.HasPrefix(l, "process") {
				n++
			}
		}
		if n >= 3 { // the bench and two daemons
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no daemons after 30s: %v", leftovers(t, pid, bin))
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	work, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("gib-e2e-%d-*", pid)))
	if len(work) != 1 {
		t.Errorf("work directories of the killed run: %v", work)
	}
	deadline = time.Now().Add(5 * time.Second)
	for slices.ContainsFunc(leftovers(t, pid, bin), func(l string) bool { return strings.HasPrefix(l, "process") }) {
		if time.Now().After(deadline) {
			t.Fatalf("daemons outlived the killed bench: %v", leftovers(t, pid, bin))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if left := leftovers(t, pid, bin); len(left) != 2 {
		t.Errorf("after SIGKILL, want its two namespaces left: %v", left)
	}
	out, err := exec.Command(bin, "bench", "e2e", "--streams", "1", "--udp-sizes", "none", "--duration", "200ms", "--reps", "1", "--warmup", "0s", "--json", "-q").Output()
	if err != nil {
		t.Fatalf("next run: %v\n%s", err, out)
	}
	var rep bench.E2EReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, fmt.Sprintf("gib-%d-", pid)) }) {
		t.Errorf("the next run's notes do not mention the sweep: %q", rep.Notes)
	}
	if left := leftovers(t, pid, bin); len(left) > 0 {
		t.Errorf("after the next run: %v", left)
	}
	for _, w := range work {
		if _, err := os.Stat(w); !os.IsNotExist(err) {
			t.Errorf("work directory %s not swept", w)
		}
	}
}

// fakeReport writes its format's name.
type fakeReport struct{ plotErr error }

func (fakeReport) WriteTable(w io.Writer) error { _, err := io.WriteString(w, "table"); return err }
func (fakeReport) WriteJSON(w io.Writer) error  { _, err := io.WriteString(w, "json"); return err }
func (fakeReport) WriteCSV(w io.Writer) error   { _, err := io.WriteString(w, "csv"); return err }
func (r fakeReport) WritePlot(w io.Writer) error {
	if r.plotErr != nil {
		return r.plotErr
	}
	_, err := io.WriteString(w, "<svg/>")
	return err
}

// TestWriteReport: the format the flags chose, the plot file, and the
// run's error or exit status 130 for an interrupted run.
func TestWriteReport(t *testing.T) {
	runFailed := fmt.Errorf("run failed")
	plotFailed := fmt.Errorf("plot failed")
	for _, tc := range []struct {
		name           string
		json, csv      bool
		plot           bool
		rep            fakeReport
		runErr         error
		wantOut        string
		wantCode       int // exitError's code; 0: runErr itself or nil
		wantErr        error
		wantPlotInFile bool
	}{
		{name: "table", wantOut: "table"},
		{name: "json", json: true, wantOut: "json"},
		{name: "csv", csv: true, wantOut: "csv"},
		{name: "plot", plot: true, wantOut: "table", wantPlotInFile: true},
		{name: "plot error", plot: true, rep: fakeReport{plotErr: plotFailed}, wantOut: "table", wantErr: plotFailed},
		{name: "run error", runErr: runFailed, wantOut: "table", wantErr: runFailed},
		{name: "interrupted", json: true, runErr: fmt.Errorf("stopping: %w", context.Canceled), wantOut: "json", wantCode: 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			plot := ""
			if tc.plot {
				plot = filepath.Join(t.TempDir(), "p.svg")
			}
			err := writeReport(&out, "bench x", tc.rep, tc.json, tc.csv, plot, tc.runErr)
			if out.String() != tc.wantOut {
				t.Errorf("wrote %q, want %q", out.String(), tc.wantOut)
			}
			var ee *exitError
			switch {
			case tc.wantCode != 0:
				if !errors.As(err, &ee) || ee.code != tc.wantCode || !strings.HasPrefix(err.Error(), "bench x: ") {
					t.Errorf("error %v, want exit status %d", err, tc.wantCode)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Errorf("error %v", err)
			}
			if tc.wantPlotInFile {
				if b, err := os.ReadFile(plot); err != nil || string(b) != "<svg/>" {
					t.Errorf("plot file %q, %v", b, err)
				}
			}
		})
	}
}
