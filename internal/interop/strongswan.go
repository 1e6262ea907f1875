//go:build linux

package interop

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DefaultPlugins is charon's load list: kernel-libipsec before
// kernel-netlink (the first kernel-ipsec backend wins; the kernels here
// have XFRM but no ESP transform), aesni early (AES-GCM is ~8x faster with
// it), and what IKEv2 with PSK and certificates needs: x25519/ed25519
// (curve25519), ECP and RSA/ECDSA (openssl, gmp), MODP (gmp, openssl),
// AES-GCM (gcm) and ChaCha20-Poly1305 (chapoly), PEM/PKCS#1/PKCS#8/X.509.
var DefaultPlugins = []string{
	"aesni", "aes", "random", "nonce", "sha1", "sha2", "md5", "hmac", "gcm", "chapoly",
	"curve25519", "openssl", "gmp", "kdf", "drbg", "mgf1",
	"pem", "pkcs1", "pkcs8", "pkcs12", "x509", "pubkey", "constraints",
	"vici", "socket-default", "kernel-libipsec", "kernel-netlink",
}

// DefaultLogLevels are the charon log levels the harness uses: ike=4 and
// chd=4 print the derived keys ([ParseKeyLog]), mgr=2 the IKE SPIs that
// go with them; net, cfg and knl at 2 tell what went wrong when something
// does.
var DefaultLogLevels = map[string]int{
	"default": 1,
	"ike":     4,
	"chd":     4,
	"mgr":     2,
	"net":     2,
	"cfg":     2,
	"knl":     2,
	"enc":     1,
	"esp":     1,
	"lib":     1,
	"job":     1,
}

// DefaultFwmark is the firewall mark charon's IKE/ESP socket uses so that
// its own packets bypass the routes into the TUN device (needed for
// host-to-host tunnels whose selectors are the IKE addresses).
const DefaultFwmark = 0x4242

// StrongSwanOptions tune a charon instance; the zero value is the
// harness's defaults.
type StrongSwanOptions struct {
	// Plugins replaces DefaultPlugins.
	Plugins []string
	// LogLevels override entries of DefaultLogLevels (subsystem ->
	// level, "default" for the rest).
	LogLevels map[string]int
	// Fwmark is socket-default's mark (kernel-netlink gets !mark);
	// 0 means DefaultFwmark, -1 sets none.
	Fwmark int
	// NoAllowPeerTS leaves kernel-libipsec.allow_peer_ts off (it is on by
	// default: host-to-host tunnels need it).
	NoAllowPeerTS bool
	// Port and PortNATT are charon's IKE ports (0: 500 and 4500).
	Port, PortNATT int
	// RetransmitTimeout, RetransmitBase and RetransmitTries replace the
	// harness's quick retransmission (1 s, 1.4, 3 tries: a dead peer is
	// given up after about 10 s instead of strongSwan's 165 s).
	RetransmitTimeout time.Duration
	RetransmitBase    float64
	RetransmitTries   int
	// Charon is more strongswan.conf text put inside the charon section
	// (e.g. "i_dont_care_about_security_and_use_aggressive_mode_psk = yes").
	Charon string
	// Env are more environment entries (KEY=VALUE) for charon.
	Env []string
}

// StrongSwan is a charon daemon running in a namespace with its own /run,
// configuration and log, driven through swanctl and its vici socket.
type StrongSwan struct {
	// Name names the instance in messages and file names.
	Name string
	// NS is the namespace charon runs in.
	NS *Netns
	// Dir holds strongswan.conf, swanctl.conf, the log and run/ (bind-
	// mounted on /run inside; it holds charon.pid and charon.vici). It is
	// also SWANCTL_DIR, with the x509, x509ca and private subdirectories.
	Dir string
	// ConfPath is the strongswan.conf charon and swanctl read
	// (STRONGSWAN_CONF).
	ConfPath string
	// LogPath is charon's log file.
	LogPath string
	// VICIPath is the vici socket's path (the same inside and outside).
	VICIPath string
	// Proc is the charon process.
	Proc *Proc

	t testing.TB
}

// StartStrongSwan writes a self-contained strongswan.conf, starts
// /usr/lib/ipsec/charon inside ns with a private /run (ip netns exec NS sh
// -c 'mount --bind DIR/run /run && exec charon') and waits until its vici
// socket answers. It is stopped at the test's cleanup; if the test failed,
// the essential lines of its log are printed.
func StartStrongSwan(t testing.TB, ns *Netns, name string, opt *StrongSwanOptions) *StrongSwan {
	t.Helper()
	RequireStrongSwan(t)
	if opt == nil {
		opt = &StrongSwanOptions{}
	}
	// A short directory of our own: the vici socket path must stay under
	// 108 bytes, which t.TempDir's names do not promise.
	dir, err := os.MkdirTemp("", "goi-ss-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	s := &StrongSwan{
		Name: name, NS: ns, Dir: dir, t: t,
		ConfPath: filepath.Join(dir, "strongswan.conf"),
		LogPath:  filepath.Join(dir, "charon.log"),
		VICIPath: filepath.Join(dir, "run", "charon.vici"),
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("GOIPSEC_INTEROP_KEEP") == "1" {
			t.Logf("interop: kept %s's directory %s", name, dir)
			return
		}
		os.RemoveAll(dir)
	})
	for _, sub := range []string{"run", "x509", "x509ca", "private"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(s.ConfPath, []byte(s.strongswanConf(opt)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append([]string{"STRONGSWAN_CONF=" + s.ConfPath}, opt.Env...)
	s.Proc = StartProc(t, "charon "+name, env, ns.Cmdline("sh", "-c",
		`mount --bind "$0" /run && exec "$@"`, filepath.Join(dir, "run"), CharonPath)...)
	// Registered after StartProc's cleanup, so it runs before charon is
	// stopped and the log is still complete.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- charon %s log (%s), hex dumps and chatter left out:\n%s", name, s.LogPath, s.LogSummary(200))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", s.VICIPath)
		if err == nil {
			c.Close()
			break
		}
		if s.Proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("charon %s: no vici socket at %s (%v; exited: %v):\n%s\n%s", name, s.VICIPath, err, s.Proc.Err(), s.Proc.Output(), s.LogSummary(50))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

func (s *StrongSwan) strongswanConf(opt *StrongSwanOptions) string {
	plugins := opt.Plugins
	if plugins == nil {
		plugins = DefaultPlugins
	}
	levels := map[string]int{}
	for k, v := range DefaultLogLevels {
		levels[k] = v
	}
	for k, v := range opt.LogLevels {
		levels[k] = v
	}
	subsystems := make([]string, 0, len(levels))
	for k := range levels {
		if k != "default" {
			subsystems = append(subsystems, k)
		}
	}
	sort.Strings(subsystems)
	fwmark := opt.Fwmark
	if fwmark == 0 {
		fwmark = DefaultFwmark
	}
	rtTimeout, rtBase, rtTries := 1*time.Second, 1.4, 3
	if opt.RetransmitTimeout > 0 {
		rtTimeout = opt.RetransmitTimeout
	}
	if opt.RetransmitBase > 0 {
		rtBase = opt.RetransmitBase
	}
	if opt.RetransmitTries > 0 {
		rtTries = opt.RetransmitTries
	}

	var w confWriter
	fmt.Fprintf(&w.b, "# strongswan.conf of interop instance %q, written by the goipsec test harness.\n", s.Name)
	w.open("charon")
	w.raw("load", strings.Join(plugins, " "))
	if opt.Port != 0 {
		w.raw("port", strconv.Itoa(opt.Port))
	}
	if opt.PortNATT != 0 {
		w.raw("port_nat_t", strconv.Itoa(opt.PortNATT))
	}
	w.raw("retransmit_timeout", strconv.FormatFloat(rtTimeout.Seconds(), 'f', -1, 64))
	w.raw("retransmit_base", strconv.FormatFloat(rtBase, 'f', -1, 64))
	w.raw("retransmit_tries", strconv.Itoa(rtTries))
	w.open("filelog")
	w.open("main")
	w.raw("path", s.LogPath)
	w.raw("time_format", "%T")
	w.raw("time_add_ms", "yes")
	w.raw("append", "no")
	w.raw("flush_line", "yes")
	w.raw("ike_name", "yes")
	w.raw("default", strconv.Itoa(levels["default"]))
	for _, k := range subsystems {
		w.raw(k, strconv.Itoa(levels[k]))
	}
	w.close()
	w.close()
	// Nothing to syslog.
	w.open("syslog")
	w.open("daemon")
	w.raw("default", "-1")
	w.close()
	w.open("auth")
	w.raw("default", "-1")
	w.close()
	w.close()
	w.open("plugins")
	w.open("vici")
	w.raw("socket", "unix://"+s.VICIPath)
	w.close()
	if fwmark > 0 {
		w.open("socket-default")
		w.raw("fwmark", fmt.Sprintf("%#x", fwmark))
		w.close()
		w.open("kernel-netlink")
		w.raw("fwmark", fmt.Sprintf("!%#x", fwmark))
		w.close()
	}
	w.open("kernel-libipsec")
	w.raw("allow_peer_ts", yesNo(!opt.NoAllowPeerTS))
	w.close()
	w.close()
	if opt.Charon != "" {
		for _, line := range strings.Split(strings.TrimSpace(opt.Charon), "\n") {
			w.indent()
			w.b.WriteString(strings.TrimSpace(line) + "\n")
		}
	}
	w.close()
	// swanctl parses the key files itself before it hands them to charon.
	w.open("swanctl")
	w.raw("load", "pem pkcs1 pkcs8 x509 pubkey openssl gmp random nonce sha1 sha2 aes")
	w.close()
	return w.String()
}

// Swanctl runs swanctl with args against this charon (--uri its vici
// socket; STRONGSWAN_CONF and SWANCTL_DIR set to the instance's) and
// returns its output. The operation (--initiate, --list-sas, ...) must come
// first in args: swanctl only knows the options after it.
func (s *StrongSwan) Swanctl(args ...string) (string, error) {
	argv := append([]string{SwanctlPath}, args...)
	argv = append(argv, "--uri", "unix://"+s.VICIPath)
	return runEnv([]string{"STRONGSWAN_CONF=" + s.ConfPath, "SWANCTL_DIR=" + s.Dir}, "", argv...)
}

// SwanctlConfPath is where [StrongSwan.Load] writes swanctl.conf.
func (s *StrongSwan) SwanctlConfPath() string { return filepath.Join(s.Dir, "swanctl.conf") }

// Load writes cfg as the instance's swanctl.conf, puts cfg.PrivateKeys
// into SWANCTL_DIR/private (replacing those of earlier loads) and loads
// everything (swanctl --load-all --file ...: credentials, connections;
// replacing what was loaded before).
func (s *StrongSwan) Load(t testing.TB, cfg *SwanctlConfig) {
	t.Helper()
	priv := filepath.Join(s.Dir, "private")
	old, _ := os.ReadDir(priv)
	for _, e := range old {
		os.Remove(filepath.Join(priv, e.Name()))
	}
	for i, f := range cfg.PrivateKeys {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(priv, fmt.Sprintf("%d-%s", i+1, filepath.Base(f)))
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.LoadText(t, cfg.Render())
}

// LoadText is [StrongSwan.Load] with swanctl.conf text written by hand.
func (s *StrongSwan) LoadText(t testing.TB, swanctlConf string) {
	t.Helper()
	if err := os.WriteFile(s.SwanctlConfPath(), []byte(swanctlConf), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := s.Swanctl("--load-all", "--noprompt", "--file", s.SwanctlConfPath())
	if err != nil {
		t.Fatalf("charon %s: loading swanctl.conf: %v\nswanctl.conf:\n%s", s.Name, err, swanctlConf)
	}
	if strings.Contains(out, "failed") {
		t.Fatalf("charon %s: loading swanctl.conf: %s\nswanctl.conf:\n%s", s.Name, out, swanctlConf)
	}
}

// Initiate initiates the Child SA child (and its IKE SA if there is none)
// and waits until it is up or failed (swanctl --initiate --child CHILD
// --timeout 30). It returns swanctl's output (the log lines of the
// exchange) and an error if the SA did not come up.
func (s *StrongSwan) Initiate(child string) (string, error) {
	return s.Swanctl("--initiate", "--child", child, "--timeout", "30")
}

// InitiateIKE initiates the IKE SA of connection ike alone (no Child SA).
func (s *StrongSwan) InitiateIKE(ike string) (string, error) {
	return s.Swanctl("--initiate", "--ike", ike, "--timeout", "30")
}

// MustInitiate is [StrongSwan.Initiate] that fails the test on error.
func (s *StrongSwan) MustInitiate(t testing.TB, child string) string {
	t.Helper()
	out, err := s.Initiate(child)
	if err != nil {
		t.Fatalf("charon %s: initiating %s: %v", s.Name, child, err)
	}
	return out
}

// Terminate deletes the IKE SAs of connection ike (and their Child SAs),
// waiting for the peer's answer up to 10 s.
func (s *StrongSwan) Terminate(ike string) (string, error) {
	return s.Swanctl("--terminate", "--ike", ike, "--timeout", "10")
}

// TerminateChild deletes the Child SAs named child.
func (s *StrongSwan) TerminateChild(child string) (string, error) {
	return s.Swanctl("--terminate", "--child", child, "--timeout", "10")
}

// Rekey rekeys the Child SAs named child (swanctl --rekey --child).
func (s *StrongSwan) Rekey(child string) (string, error) {
	return s.Swanctl("--rekey", "--child", child)
}

// RekeyIKE rekeys the IKE SAs of connection ike (swanctl --rekey --ike).
func (s *StrongSwan) RekeyIKE(ike string) (string, error) {
	return s.Swanctl("--rekey", "--ike", ike)
}

// ListSAs lists the IKE SAs and their Child SAs (swanctl --list-sas
// --pretty, parsed).
func (s *StrongSwan) ListSAs() ([]IKESA, error) {
	out, err := s.Swanctl("--list-sas", "--pretty")
	if err != nil {
		return nil, err
	}
	return ParseListSAs(out)
}

// MustListSAs is [StrongSwan.ListSAs] that fails the test on error.
func (s *StrongSwan) MustListSAs(t testing.TB) []IKESA {
	t.Helper()
	sas, err := s.ListSAs()
	if err != nil {
		t.Fatalf("charon %s: %v", s.Name, err)
	}
	return sas
}

// WaitSAs polls ListSAs until ok returns true for the list, or fails the
// test after timeout.
func (s *StrongSwan) WaitSAs(t testing.TB, timeout time.Duration, ok func([]IKESA) bool) []IKESA {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		sas, err := s.ListSAs()
		if err == nil && ok(sas) {
			return sas
		}
		if time.Now().After(deadline) {
			t.Fatalf("charon %s: SAs not as expected after %v (%v): %+v", s.Name, timeout, err, sas)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log is charon's log so far.
func (s *StrongSwan) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// WaitLog waits until charon's log contains substr, or fails the test.
func (s *StrongSwan) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.Log(), substr) {
		if s.Proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("charon %s: no %q in the log after %v (exited: %v)", s.Name, substr, timeout, s.Proc.Exited())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Keys parses the derived keys out of charon's log so far (see
// [ParseKeyLog]); the log levels must include ike=4 and chd=4 (the
// default).
func (s *StrongSwan) Keys() (*KeyLog, error) {
	f, err := os.Open(s.LogPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseKeyLog(f)
}

// MustKeys is [StrongSwan.Keys] that fails the test on error.
func (s *StrongSwan) MustKeys(t testing.TB) *KeyLog {
	t.Helper()
	k, err := s.Keys()
	if err != nil {
		t.Fatalf("charon %s: keys: %v", s.Name, err)
	}
	return k
}

// LogSummary is the last max lines of charon's log without hex dumps and
// the chattiest lines (job, thread and parser internals): what tells why an
// exchange failed.
func (s *StrongSwan) LogSummary(max int) string {
	f, err := os.Open(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		l, ok := parseLogLine(sc.Text())
		if !ok {
			continue
		}
		if hexLine.MatchString(l.msg) || l.subsys == "JOB" || l.subsys == "LIB" && !strings.Contains(l.msg, "failed") {
			continue
		}
		lines = append(lines, sc.Text())
	}
	if len(lines) > max {
		lines = append([]string{fmt.Sprintf("... %d lines before", len(lines)-max)}, lines[len(lines)-max:]...)
	}
	return strings.Join(lines, "\n")
}

// Stop stops charon (SIGTERM, SIGKILL after 5 s). Cleanup does it too.
func (s *StrongSwan) Stop() error {
	return s.Proc.Stop(syscall.SIGTERM, 5*time.Second)
}
