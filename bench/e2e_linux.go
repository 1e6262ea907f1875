package bench

import (
	"context"
	"crypto/ecdh"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goipsec/goipsec/internal/netlab"
)

// The e2e topology: two namespaces on a veth, each implementation on its
// own inner addresses.
const (
	labPrefix   = "gib"
	leftUnder   = "192.0.2.1"
	rightUnder  = "192.0.2.2"
	underBits   = "24"
	goipsecPort = 4501 // strongSwan's libipsec has 4500
	wgPort      = 51820
)

// e2eInner are each implementation's left and right inner addresses.
var e2eInner = map[string][2]netip.Addr{
	ImplPlain:       {netip.MustParseAddr(leftUnder), netip.MustParseAddr(rightUnder)},
	ImplGoipsec:     {netip.MustParseAddr("10.201.0.1"), netip.MustParseAddr("10.201.0.2")},
	ImplBaseline:    {netip.MustParseAddr("10.204.0.1"), netip.MustParseAddr("10.204.0.2")},
	ImplWireguardGo: {netip.MustParseAddr("10.202.0.1"), netip.MustParseAddr("10.202.0.2")},
	ImplStrongSwan:  {netip.MustParseAddr("10.203.0.1"), netip.MustParseAddr("10.203.0.2")},
}

// endpoint is an implementation set up and ready for traffic.
type endpoint struct {
	info                *E2EImpl
	src, dst            netip.Addr
	leftProc, rightProc *netlab.Proc
	dev                 string // the left tunnel device (veth for plain)
}

// e2eEnv is the topology of a run.
type e2eEnv struct {
	cfg         *E2EConfig
	lab         *netlab.Lab
	left, right *netlab.Netns
	leftIf      string
	dir         string
	logf        func(string, ...any)
}

func (env *e2eEnv) target(ep *endpoint) genTarget {
	return genTarget{left: env.left, right: env.right, src: ep.src, dst: ep.dst, tcpPort: genTCPPort, udpPort: genUDPPort,
		snap: snapProcs(ep.leftProc, ep.rightProc)}
}

func runE2E(ctx context.Context, cfg *E2EConfig) (rep *E2EReport, err error) {
	logf := func(format string, a ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "bench e2e: "+format+"\n", a...)
		}
	}
	if err := netlab.Check(); err != nil {
		return nil, fmt.Errorf("bench e2e: %w", err)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return nil, fmt.Errorf("bench e2e: no TUN device: %w", err)
	}
	exe := cfg.Goipsec
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("bench e2e: the goipsec binary: %w", err)
		}
	}
	tests, impls := cfg.Tests(), cfg.Impls()
	rep = &E2EReport{
		Machine: DescribeMachine(),
		Started: time.Now(),
		Settings: E2ESettings{Tests: tests, Impls: impls, Transform: cfg.Transform.Name, UDPRate: cfg.UDPRate, UDPFlows: cfg.UDPFlows, Reps: cfg.Reps,
			Duration: cfg.Duration, Warmup: cfg.Warmup, Method: E2EMethod,
			Topology: []string{
				fmt.Sprintf("namespaces left and right, veth %s/%s - %s/%s; inner addresses: goipsec 10.201.0.1 -> .2, wireguard-go 10.202.0.1 -> .2, strongSwan 10.203.0.1 -> .2", leftUnder, underBits, rightUnder, underBits),
			}},
	}
	if cfg.Baseline != "" {
		rep.Settings.Topology[0] += ", goipsec-base 10.204.0.1 -> .2"
	}
	defer func() { rep.Elapsed = time.Since(rep.Started) }()
	if la := strings.Fields(rep.Machine.LoadAvg); len(la) > 0 {
		if l, err := strconv.ParseFloat(la[0], 64); err == nil && l > 0.5*float64(rep.Machine.CPUs) {
			rep.Notes = append(rep.Notes, fmt.Sprintf("the load average was %s at the start on %d CPUs: other work shares the machine, and the figures move with it (the interleaved repetitions spread it over every implementation alike).", la[0], rep.Machine.CPUs))
		}
	}

	// What must exist before anything is built.
	skip := map[string]string{}
	var wgBin string
	if slicesContains(impls, ImplWireguardGo) {
		var err error
		if wgBin, err = findWireguardGo(ctx, cfg, logf); err != nil {
			skip[ImplWireguardGo] = err.Error()
		} else if _, err := exec.LookPath("wg"); err != nil {
			skip[ImplWireguardGo] = "wg not found on PATH (Debian: apt-get install --no-install-recommends wireguard-tools)"
		}
	}
	if slicesContains(impls, ImplStrongSwan) {
		if msg := checkStrongSwan(); msg != "" {
			skip[ImplStrongSwan] = msg
		}
	}
	if ctx.Err() != nil {
		rep.Partial = true
		return rep, ctx.Err()
	}

	lab, swept, err := netlab.NewLab(labPrefix)
	if err != nil {
		return nil, fmt.Errorf("bench e2e: %w", err)
	}
	swept = append(swept, sweepWireguardSockets()...)
	swept = append(swept, sweepWorkDirs()...)
	if len(swept) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("deleted what earlier runs that were killed left behind (%d: namespaces with their processes, wireguard-go sockets, work directories): %s", len(swept), strings.Join(swept, ", ")))
	}
	defer func() {
		if cerr := lab.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("bench e2e: cleanup: %w", cerr))
		}
	}()
	env, err := newE2EEnv(lab, cfg, logf)
	if err != nil {
		return rep, fmt.Errorf("bench e2e: topology: %w", err)
	}
	if cfg.Keep {
		rep.Notes = append(rep.Notes, "kept the work directory (configurations, logs): "+env.dir)
	}

	var eps []*endpoint
	var goipsecErr error
	rep.Impls = make([]E2EImpl, len(impls))
	for i, name := range impls {
		im := &rep.Impls[i]
		im.Name = name
		if msg, ok := skip[name]; ok {
			im.Skipped = msg
			logf("%s skipped: %s", name, msg)
			continue
		}
		var ep *endpoint
		switch name {
		case ImplPlain:
			ep, err = setupPlain(env, im)
		case ImplGoipsec:
			ep, err = setupGoipsec(ctx, env, im, ImplGoipsec, exe)
		case ImplBaseline:
			ep, err = setupGoipsec(ctx, env, im, ImplBaseline, cfg.Baseline)
		case ImplWireguardGo:
			ep, err = setupWireguardGo(ctx, env, im, wgBin)
		case ImplStrongSwan:
			ep, err = setupStrongSwan(ctx, env, im)
		}
		if err == nil {
			err = probe(ctx, env, ep)
		}
		if ctx.Err() != nil {
			rep.Partial = true
			return rep, ctx.Err()
		}
		if err != nil {
			im.Skipped = "set-up failed: " + err.Error()
			logf("%s skipped: %v", name, err)
			if name == ImplGoipsec {
				goipsecErr = fmt.Errorf("bench e2e: goipsec could not be set up: %w", err)
			}
			continue
		}
		if mtu, err := env.left.MTU(ep.dev); err == nil {
			im.MTU = mtu
		}
		eps = append(eps, ep)
	}

	// The measurements: per test, per repetition, every implementation
	// in turn (the order rotating by repetition).
	samples := map[[2]string][]e2eSample{}
	repDur := cfg.Duration / time.Duration(cfg.Reps)
	total := len(tests) * cfg.Reps * len(eps)
	done := 0
	begin := time.Now()
	nominal := cfg.Warmup + repDur + 300*time.Millisecond
measure:
	for _, t := range tests {
		for r := range cfg.Reps {
			for k := range eps {
				ep := eps[(k+r)%len(eps)]
				if cfg.Progress != nil {
					per := nominal
					if done > 0 {
						per = time.Since(begin) / time.Duration(done)
					}
					cfg.Progress(Progress{Done: done, Total: total, Current: fmt.Sprintf("%s over %s, rep %d/%d", t.Title(), ep.info.Name, r+1, cfg.Reps),
						Elapsed: time.Since(rep.Started), Remaining: per * time.Duration(total-done)})
				}
				var s e2eSample
				if t.Proto == "tcp" {
					s = measureTCP(ctx, env.target(ep), t.Streams, cfg.Warmup, repDur)
				} else {
					s = measureUDP(ctx, env.target(ep), t.Size, cfg.UDPRate, cfg.UDPFlows, cfg.Warmup, repDur)
				}
				if ctx.Err() != nil {
					rep.Partial = true
					break measure
				}
				if s.err != nil {
					logf("%s over %s, rep %d: %v", t.Name(), ep.info.Name, r+1, s.err)
				}
				key := [2]string{t.Name(), ep.info.Name}
				samples[key] = append(samples[key], s)
				done++
				// Let queues drain before the next one.
				_ = sleepCtx(ctx, 100*time.Millisecond)
			}
		}
	}
	if cfg.Progress != nil {
		cfg.Progress(Progress{Done: total, Total: total})
	}
	for _, t := range tests {
		for _, ep := range eps {
			if ss := samples[[2]string{t.Name(), ep.info.Name}]; len(ss) > 0 {
				rep.Results = append(rep.Results, summarizeE2E(t, ep.info.Name, ss))
			}
		}
	}
	for _, ep := range eps {
		for _, p := range []*netlab.Proc{ep.leftProc, ep.rightProc} {
			if p != nil && p.Exited() {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s ended during the run (%v); its output:\n%s", p.Name, p.Err(), tail(p.Output(), 2000)))
			}
		}
	}
	rep.finish()
	if rep.Partial {
		return rep, ctx.Err()
	}
	return rep, goipsecErr
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// newE2EEnv makes the namespaces, the veth between them and the work
// directory.
func newE2EEnv(lab *netlab.Lab, cfg *E2EConfig, logf func(string, ...any)) (*e2eEnv, error) {
	env := &e2eEnv{cfg: cfg, lab: lab, logf: logf}
	var err error
	pattern := fmt.Sprintf("%s-%d-", workDirPrefix, os.Getpid()) // swept once this process is gone
	if cfg.Keep {
		pattern = workDirPrefix + "-kept-"
	}
	if env.dir, err = os.MkdirTemp("", pattern); err != nil {
		return nil, err
	}
	if !cfg.Keep {
		dir := env.dir
		lab.Defer(func() error { return os.RemoveAll(dir) })
	}
	if env.left, err = lab.Netns("left"); err != nil {
		return nil, err
	}
	if env.right, err = lab.Netns("right"); err != nil {
		return nil, err
	}
	env.leftIf = "gb" + lab.ID + "l"
	rightIf := "gb" + lab.ID + "r"
	if err := lab.Link(env.left, env.leftIf, []string{leftUnder + "/" + underBits}, env.right, rightIf, []string{rightUnder + "/" + underBits}); err != nil {
		return nil, err
	}
	return env, nil
}

// probe checks that TCP gets through the endpoint: a connection, a few
// bytes each way, within 10 s.
func probe(ctx context.Context, env *e2eEnv, ep *endpoint) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addr := net.JoinHostPort(ep.dst.String(), strconv.Itoa(genTCPPort))
	ln, err := env.right.Listen("tcp4", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := c.Read(buf); err == nil {
			c.Write(buf)
		}
	}()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ep.src.AsSlice()}}
	var c net.Conn
	for {
		c, err = env.left.Dial(ctx, d, "tcp4", addr)
		if err == nil || ctx.Err() != nil {
			break
		}
		// A tunnel coming up may refuse or drop the first attempts.
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("no TCP connection %s -> %s through it within 10s: %w", ep.src, addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("probe")); err != nil {
		return fmt.Errorf("probe through %s: %w", ep.info.Name, err)
	}
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil || string(buf) != "probe" {
		return fmt.Errorf("probe through %s: no echo (%v)", ep.info.Name, err)
	}
	return nil
}

func setupPlain(env *e2eEnv, im *E2EImpl) (*endpoint, error) {
	a := e2eInner[ImplPlain]
	im.Setup = "the bare veth, no tunnel: the generator's ceiling"
	return &endpoint{info: im, src: a[0], dst: a[1], dev: env.leftIf}, nil
}

// goipsecKeys is one direction's static SA.
type goipsecKeys struct {
	spi          uint32
	key, authKey []byte
}

func (k goipsecKeys) yaml() string {
	s := fmt.Sprintf("{spi: %#x, key: 0x%s", k.spi, hex.EncodeToString(k.key))
	if len(k.authKey) > 0 {
		s += ", authkey: 0x" + hex.EncodeToString(k.authKey)
	}
	return s + "}"
}

// goipsecConfig is one end's configuration: a tunnel between the inner
// addresses with static keys, on the kernel TUN device tunName, ESP in
// UDP on port.
func goipsecConfig(t Transform, local, remote string, port int, tunName string, inner, peerInner netip.Addr, in, out goipsecKeys, socket string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# goipsec bench e2e: %s end\n", local)
	fmt.Fprintf(&b, "connections:\n  bench:\n")
	fmt.Fprintf(&b, "    local_addrs: [%s]\n    remote_addrs: [%s]\n", local, remote)
	fmt.Fprintf(&b, "    local_port: %d\n    remote_port: %d\n", port, port)
	fmt.Fprintf(&b, "    children:\n      bench:\n        mode: tunnel\n")
	fmt.Fprintf(&b, "        local_ts: [%s]\n        remote_ts: [%s]\n", inner, peerInner)
	fmt.Fprintf(&b, "        manual:\n          proto: esp\n          enc: %s\n", t.enc.Name)
	if t.integ != nil {
		fmt.Fprintf(&b, "          integ: %s\n", t.integ.Name)
	}
	fmt.Fprintf(&b, "          in:  %s\n          out: %s\n", in.yaml(), out.yaml())
	fmt.Fprintf(&b, "tun:\n  mode: kernel\n  name: %s\n  addresses: [%s/24]\n", tunName, inner)
	fmt.Fprintf(&b, "control:\n  socket: %s\n", socket)
	return b.String()
}

// setupGoipsec runs the goipsec binary exe at both ends as implementation
// impl: ImplGoipsec (port goipsecPort, TUN goipsec0) or ImplBaseline (the
// next port, TUN goipsec1).
func setupGoipsec(ctx context.Context, env *e2eEnv, im *E2EImpl, impl, exe string) (*endpoint, error) {
	t := env.cfg.Transform
	port, tunName := goipsecPort, "goipsec0"
	im.Version = env.cfg.Version
	if impl == ImplBaseline {
		port, tunName = goipsecPort+1, "goipsec1"
		im.Version = goipsecVersion(exe)
	}
	im.Setup = fmt.Sprintf("goipsec run at both ends, static keys, ESP %s in UDP %d, kernel TUN %s (%s)", t.Name, port, tunName, exe)
	keys := func(spi uint32) goipsecKeys {
		k := goipsecKeys{spi: spi, key: randBytes(t.enc.KeyLen())}
		if t.integ != nil {
			k.authKey = randBytes(t.integ.KeyLen)
		}
		return k
	}
	lr, rl := keys(0x1000_0000|uint32(randBytes(1)[0])), keys(0x2000_0000|uint32(randBytes(1)[0]))
	a := e2eInner[impl]
	var procs [2]*netlab.Proc
	for i, side := range []struct {
		ns            *netlab.Netns
		local, remote string
		inner, peer   netip.Addr
		in, out       goipsecKeys
	}{
		{env.left, leftUnder, rightUnder, a[0], a[1], rl, lr},
		{env.right, rightUnder, leftUnder, a[1], a[0], lr, rl},
	} {
		file := filepath.Join(env.dir, impl+"-"+side.ns.Role+".yaml")
		sock := filepath.Join(env.dir, impl+"-"+side.ns.Role+".sock")
		if err := os.WriteFile(file, []byte(goipsecConfig(t, side.local, side.remote, port, tunName, side.inner, side.peer, side.in, side.out, sock)), 0o600); err != nil {
			return nil, err
		}
		args := []string{exe, "run", "-c", file, "--log-level", "info"}
		if env.cfg.ProfileDir != "" && impl == ImplGoipsec { // a baseline may predate --cpuprofile
			args = append(args, "--cpuprofile", filepath.Join(env.cfg.ProfileDir, impl+"-"+side.ns.Role+".pprof"))
		}
		p, err := env.lab.Start(impl+" "+side.ns.Role, nil, 5*time.Second, side.ns.Cmdline(args...)...)
		if err != nil {
			return nil, err
		}
		procs[i] = p
		if err := p.WaitFor(ctx, "\trunning\t", 20*time.Second); err != nil {
			return nil, fmt.Errorf("%w:\n%s", err, tail(p.Output(), 2000))
		}
	}
	return &endpoint{info: im, src: a[0], dst: a[1], leftProc: procs[0], rightProc: procs[1], dev: tunName}, nil
}

// goipsecVersion asks a goipsec binary for its version ("" if it cannot
// tell).
func goipsecVersion(exe string) string {
	out, err := exec.Command(exe, "version").Output()
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimPrefix(strings.TrimSpace(first), "goipsec ")
}

// wireguardGoCache is where a wireguard-go built by bench e2e is kept.
func wireguardGoCache() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	_, version, _ := strings.Cut(WireguardGoModule, "@")
	return filepath.Join(dir, "goipsec", "wireguard-go", version), nil
}

// workDirPrefix starts the names of the work directories in the
// temporary directory: PREFIX-PID-RANDOM, or PREFIX-kept-RANDOM with
// --keep.
const workDirPrefix = "gib-e2e"

// sweepWorkDirs deletes the work directories of runs that are gone (a
// killed run leaves its own).
func sweepWorkDirs() []string {
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), workDirPrefix+"-")
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || netlab.Alive(pid) {
			continue
		}
		path := filepath.Join(os.TempDir(), e.Name())
		if os.RemoveAll(path) == nil {
			out = append(out, path)
		}
	}
	return out
}

// wgSockDir holds wireguard-go's UAPI sockets, for every namespace.
const wgSockDir = "/var/run/wireguard"

// sweepWireguardSockets deletes the UAPI sockets of bench e2e's
// wireguard-go interfaces (gbw...) that nothing listens on any more: a
// killed run leaves them.
func sweepWireguardSockets() []string {
	entries, err := os.ReadDir(wgSockDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "gbw") || !strings.HasSuffix(name, ".sock") {
			continue
		}
		path := filepath.Join(wgSockDir, name)
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) && os.Remove(path) == nil {
			out = append(out, path)
		}
	}
	return out
}

// findWireguardGo returns the wireguard-go binary: cfg.WireguardGo,
// wireguard-go on PATH, or the one in the cache directory, built there
// with go install if missing.
func findWireguardGo(ctx context.Context, cfg *E2EConfig, logf func(string, ...any)) (string, error) {
	if cfg.WireguardGo != "" {
		if _, err := os.Stat(cfg.WireguardGo); err != nil {
			return "", fmt.Errorf("--wireguard-go: %w", err)
		}
		return cfg.WireguardGo, nil
	}
	if p, err := exec.LookPath("wireguard-go"); err == nil {
		return p, nil
	}
	dir, err := wireguardGoCache()
	if err != nil {
		return "", fmt.Errorf("wireguard-go not on PATH and no cache directory: %w", err)
	}
	bin := filepath.Join(dir, "wireguard")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		if g := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
			if _, serr := os.Stat(g); serr == nil {
				gobin, err = g, nil
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("wireguard-go not on PATH nor in %s, and no go to build it: install it with GOBIN=%s go install %s, or give --wireguard-go", dir, dir, WireguardGoModule)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	logf("building wireguard-go (go install %s) into %s, once", WireguardGoModule, dir)
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, gobin, "install", WireguardGoModule)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building wireguard-go failed (go install %s): %v: %s", WireguardGoModule, err, tail(string(out), 800))
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("go install %s left no %s", WireguardGoModule, bin)
	}
	return bin, nil
}

func setupWireguardGo(ctx context.Context, env *e2eEnv, im *E2EImpl, bin string) (*endpoint, error) {
	wg, err := exec.LookPath("wg")
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		im.Version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	a := e2eInner[ImplWireguardGo]
	type side struct {
		ns        *netlab.Netns
		dev       string
		priv, pub []byte
		inner     netip.Addr
		endpoint  string
	}
	sides := []*side{
		{ns: env.left, dev: "gbw" + env.lab.ID + "l", inner: a[0], endpoint: leftUnder},
		{ns: env.right, dev: "gbw" + env.lab.ID + "r", inner: a[1], endpoint: rightUnder},
	}
	for _, s := range sides {
		k, err := ecdh.X25519().GenerateKey(crand.Reader)
		if err != nil {
			return nil, err
		}
		s.priv, s.pub = k.Bytes(), k.PublicKey().Bytes()
	}
	im.Setup = fmt.Sprintf("wireguard-go at both ends (TUN %s/%s), configured with wg: ChaCha20-Poly1305 in UDP %d (%s)", sides[0].dev, sides[1].dev, wgPort, bin)
	var procs [2]*netlab.Proc
	for i, s := range sides {
		peer := sides[1-i]
		// Its UAPI socket is in /var/run/wireguard for every namespace;
		// registered before the process so that it goes after it.
		sock := filepath.Join(wgSockDir, s.dev+".sock")
		env.lab.Defer(func() error {
			if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
				return err
			}
			return nil
		})
		p, err := env.lab.Start("wireguard-go "+s.ns.Role, []string{"WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error"}, 5*time.Second, s.ns.Cmdline(bin, "-f", s.dev)...)
		if err != nil {
			return nil, err
		}
		procs[i] = p
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if p.Exited() || time.Now().After(deadline) {
				return nil, fmt.Errorf("wireguard-go %s: no UAPI socket %s (exited: %v):\n%s", s.dev, sock, p.Exited(), tail(p.Output(), 2000))
			}
			if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
				return nil, err
			}
		}
		keyFile := filepath.Join(env.dir, s.dev+".key")
		if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(s.priv)+"\n"), 0o600); err != nil {
			return nil, err
		}
		if _, err := s.ns.Output(wg, "set", s.dev, "listen-port", strconv.Itoa(wgPort), "private-key", keyFile,
			"peer", base64.StdEncoding.EncodeToString(peer.pub), "endpoint", net.JoinHostPort(peer.endpoint, strconv.Itoa(wgPort)),
			"allowed-ips", peer.inner.String()+"/32"); err != nil {
			return nil, err
		}
		if err := s.ns.AddAddr(s.dev, s.inner.String()+"/24"); err != nil {
			return nil, err
		}
		if err := s.ns.IP("link", "set", s.dev, "up"); err != nil {
			return nil, err
		}
	}
	return &endpoint{info: im, src: a[0], dst: a[1], leftProc: procs[0], rightProc: procs[1], dev: sides[0].dev}, nil
}

// strongSwan's programs and plugins (Debian's layout).
const (
	charonPath  = "/usr/lib/ipsec/charon"
	swanctlPath = "/usr/sbin/swanctl"
	swanPlugins = "/usr/lib/ipsec/plugins"
)

// swanLoad is charon's plugin list: kernel-libipsec before kernel-netlink
// (these kernels have no ESP transform in XFRM), aesni early.
var swanLoad = "aesni aes random nonce sha1 sha2 md5 hmac gcm chapoly curve25519 openssl gmp kdf drbg mgf1 pem pkcs1 pkcs8 x509 pubkey constraints vici socket-default kernel-libipsec kernel-netlink"

// checkStrongSwan says what is missing for strongSwan, or "".
func checkStrongSwan() string {
	for _, f := range []string{charonPath, swanctlPath} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Sprintf("strongSwan not installed (%s missing): scripts/install-strongswan.sh installs it", f)
		}
	}
	for _, p := range []string{"kernel-libipsec", "gcm", "vici", "curve25519"} {
		if _, err := os.Stat(filepath.Join(swanPlugins, "libstrongswan-"+p+".so")); err != nil {
			return fmt.Sprintf("strongSwan plugin %s missing: scripts/install-strongswan.sh installs it (libcharon-extra-plugins)", p)
		}
	}
	return ""
}

// strongswanConf is a self-contained strongswan.conf for an instance in
// dir.
func strongswanConf(dir string) string {
	return fmt.Sprintf(`# goipsec bench e2e
charon {
  load = %s
  retransmit_timeout = 1
  retransmit_base = 1.4
  retransmit_tries = 3
  filelog {
    main {
      path = %s
      time_format = %%T
      append = no
      default = 1
    }
  }
  syslog {
    daemon {
      default = -1
    }
    auth {
      default = -1
    }
  }
  plugins {
    vici {
      socket = unix://%s
    }
    socket-default {
      fwmark = 0x4242
    }
    kernel-netlink {
      fwmark = !0x4242
    }
    kernel-libipsec {
      allow_peer_ts = yes
    }
  }
}
swanctl {
  load = pem pkcs1 pkcs8 x509 pubkey openssl gmp random nonce sha1 sha2 aes
}
`, swanLoad, filepath.Join(dir, "charon.log"), filepath.Join(dir, "run", "charon.vici"))
}

// swanctlConf is one end's connection: IKEv2 with a PSK, a tunnel between
// the inner addresses.
func swanctlConf(local, remote string, inner, peerInner netip.Addr, esp, psk string) string {
	return fmt.Sprintf(`connections {
  bench {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = psk
      id = %s
    }
    remote {
      auth = psk
      id = %s
    }
    children {
      bench {
        local_ts = %s/32
        remote_ts = %s/32
        esp_proposals = %s
        mode = tunnel
        start_action = none
      }
    }
  }
}
secrets {
  ike-bench {
    id-1 = %s
    id-2 = %s
    secret = 0x%s
  }
}
`, local, remote, local, remote, inner, peerInner, esp, local, remote, psk)
}

func setupStrongSwan(ctx context.Context, env *e2eEnv, im *E2EImpl) (*endpoint, error) {
	t := env.cfg.Transform
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "strongswan-charon").Output(); err == nil {
		im.Version = strings.TrimSpace(string(out))
	}
	im.Setup = fmt.Sprintf("charon with kernel-libipsec at both ends: IKEv2 PSK aes128gcm16-prfsha256-x25519, ESP %s in UDP 4500, TUN ipsec0", t.Name)
	a := e2eInner[ImplStrongSwan]
	psk := hex.EncodeToString(randBytes(32))
	type side struct {
		ns            *netlab.Netns
		local, remote string
		inner, peer   netip.Addr
		dir, conf     string
		proc          *netlab.Proc
	}
	sides := []*side{
		{ns: env.left, local: leftUnder, remote: rightUnder, inner: a[0], peer: a[1]},
		{ns: env.right, local: rightUnder, remote: leftUnder, inner: a[1], peer: a[0]},
	}
	swanctl := func(s *side, args ...string) (string, error) {
		argv := append([]string{swanctlPath}, args...)
		argv = append(argv, "--uri", "unix://"+filepath.Join(s.dir, "run", "charon.vici"))
		return netlab.RunEnv([]string{"STRONGSWAN_CONF=" + s.conf, "SWANCTL_DIR=" + s.dir}, "", argv...)
	}
	for _, s := range sides {
		s.dir = filepath.Join(env.dir, "ss-"+s.ns.Role)
		s.conf = filepath.Join(s.dir, "strongswan.conf")
		for _, sub := range []string{"run", "x509", "x509ca", "private"} {
			if err := os.MkdirAll(filepath.Join(s.dir, sub), 0o700); err != nil {
				return nil, err
			}
		}
		if err := os.WriteFile(s.conf, []byte(strongswanConf(s.dir)), 0o600); err != nil {
			return nil, err
		}
		if err := s.ns.AddAddr("lo", s.inner.String()+"/32"); err != nil {
			return nil, err
		}
		// ip netns exec runs it in a mount namespace of its own: a
		// private /run keeps its compiled-in pid file apart.
		p, err := env.lab.Start("charon "+s.ns.Role, []string{"STRONGSWAN_CONF=" + s.conf}, 5*time.Second,
			s.ns.Cmdline("sh", "-c", `mount --bind "$0" /run && exec "$@"`, filepath.Join(s.dir, "run"), charonPath)...)
		if err != nil {
			return nil, err
		}
		s.proc = p
		vici := filepath.Join(s.dir, "run", "charon.vici")
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("unix", vici)
			if err == nil {
				c.Close()
				break
			}
			if p.Exited() || time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(s.dir, "charon.log"))
				return nil, fmt.Errorf("charon %s: no vici socket (%v; exited: %v):\n%s\n%s", s.ns.Role, err, p.Exited(), tail(p.Output(), 1000), tail(string(log), 1500))
			}
			if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
				return nil, err
			}
		}
		file := filepath.Join(s.dir, "swanctl.conf")
		if err := os.WriteFile(file, []byte(swanctlConf(s.local, s.remote, s.inner, s.peer, t.Name, psk)), 0o600); err != nil {
			return nil, err
		}
		if out, err := swanctl(s, "--load-all", "--noprompt", "--file", file); err != nil || strings.Contains(out, "failed") {
			return nil, fmt.Errorf("charon %s: loading swanctl.conf: %v %s", s.ns.Role, err, tail(out, 1000))
		}
	}
	if out, err := swanctl(sides[0], "--initiate", "--child", "bench", "--timeout", "30"); err != nil {
		log, _ := os.ReadFile(filepath.Join(sides[0].dir, "charon.log"))
		return nil, fmt.Errorf("initiating the tunnel: %v %s\n%s", err, tail(out, 800), tail(string(log), 1500))
	}
	return &endpoint{info: im, src: a[0], dst: a[1], leftProc: sides[0].proc, rightProc: sides[1].proc, dev: "ipsec0"}, nil
}
