// Package config loads and validates goipsec's YAML configuration, whose
// field names follow strongSwan's swanctl.conf.
package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/goipsec/goipsec/internal/logging"
	"github.com/goipsec/goipsec/internal/xform"
)

// Config is a whole configuration file.
type Config struct {
	Connections map[string]*Connection `yaml:"connections"`
	Secrets     map[string]*Secret     `yaml:"secrets"`
	Tun         Tun                    `yaml:"tun"`
	Control     Control                `yaml:"control"`
	Daemon      Daemon                 `yaml:"daemon"`
	Log         Log                    `yaml:"log"`
	IKE         IKE                    `yaml:"ike"`

	// Warnings lists things that load but deserve an operator's attention
	// (legacy algorithms, for example).
	Warnings []string `yaml:"-"`
}

// Connection is an IKE connection and its children (swanctl "connections").
type Connection struct {
	Version     int               `yaml:"version"`
	LocalAddrs  []string          `yaml:"local_addrs"`
	RemoteAddrs []string          `yaml:"remote_addrs"`
	LocalPort   uint16            `yaml:"local_port"`
	RemotePort  uint16            `yaml:"remote_port"`
	Proposals   []string          `yaml:"proposals"`
	Encap       bool              `yaml:"encap"`
	DPDDelay    Duration          `yaml:"dpd_delay"`
	RekeyTime   Duration          `yaml:"rekey_time"`
	OverTime    *Duration         `yaml:"over_time"`
	ReauthTime  Duration          `yaml:"reauth_time"`
	KeyingTries *int              `yaml:"keyingtries"`
	RandTime    *Duration         `yaml:"rand_time"`
	Local       Auth              `yaml:"local"`
	Remote      Auth              `yaml:"remote"`
	Children    map[string]*Child `yaml:"children"`

	// Fragmentation is swanctl's fragmentation (yes, accept, force, no);
	// FragmentSize is strongSwan's charon.fragment_size, per connection.
	Fragmentation string `yaml:"fragmentation"`
	FragmentSize  int    `yaml:"fragment_size"`
}

// Auth is one side's authentication (swanctl "local"/"remote" sections).
type Auth struct {
	Auth    string   `yaml:"auth"` // psk | pubkey
	ID      string   `yaml:"id"`
	Certs   []string `yaml:"certs"`
	Key     string   `yaml:"key"`
	CACerts []string `yaml:"cacerts"`
}

// Child is a Child SA configuration (swanctl "children").
type Child struct {
	Mode         string    `yaml:"mode"` // tunnel | transport
	LocalTS      []string  `yaml:"local_ts"`
	RemoteTS     []string  `yaml:"remote_ts"`
	ESPProposals []string  `yaml:"esp_proposals"`
	AHProposals  []string  `yaml:"ah_proposals"`
	ReplayWindow *int      `yaml:"replay_window"`
	RekeyTime    Duration  `yaml:"rekey_time"`
	LifeTime     Duration  `yaml:"life_time"`
	RandTime     *Duration `yaml:"rand_time"`
	RekeyBytes   uint64    `yaml:"rekey_bytes"`
	LifeBytes    uint64    `yaml:"life_bytes"`
	RandBytes    *uint64   `yaml:"rand_bytes"`
	RekeyPackets uint64    `yaml:"rekey_packets"`
	LifePackets  uint64    `yaml:"life_packets"`
	RandPackets  *uint64   `yaml:"rand_packets"`
	StartAction  string    `yaml:"start_action"` // start | trap | none
	DPDAction    string    `yaml:"dpd_action"`   // clear | trap | restart
	CloseAction  string    `yaml:"close_action"` // none | trap | start
	Manual       *Manual   `yaml:"manual"`

	// LocalPrefixes and RemotePrefixes are LocalTS and RemoteTS parsed;
	// empty when the selector is "dynamic" (the IKE addresses).
	LocalPrefixes  []netip.Prefix `yaml:"-"`
	RemotePrefixes []netip.Prefix `yaml:"-"`
}

// Manual is static keying for a child, instead of IKE.
type Manual struct {
	Proto string    `yaml:"proto"` // esp | ah
	Enc   string    `yaml:"enc"`
	Integ string    `yaml:"integ"`
	ESN   bool      `yaml:"esn"`
	In    ManualKey `yaml:"in"`
	Out   ManualKey `yaml:"out"`

	EncAlg   *xform.Enc   `yaml:"-"`
	IntegAlg *xform.Integ `yaml:"-"`
}

// ManualKey is one direction's SPI and keys.
type ManualKey struct {
	SPI     uint32 `yaml:"spi"`
	Key     Hex    `yaml:"key"`
	AuthKey Hex    `yaml:"authkey"`
}

// Secret is a shared secret for IKE (swanctl "secrets").
type Secret struct {
	ID     []string `yaml:"id"`
	Secret string   `yaml:"secret"`
	File   string   `yaml:"file"` // read the secret from this file instead
	Env    string   `yaml:"env"`  // or from this environment variable
}

// Tun is the cleartext side.
type Tun struct {
	Mode      string    `yaml:"mode"` // kernel | netstack
	Name      string    `yaml:"name"`
	Addresses []string  `yaml:"addresses"`
	MTU       int       `yaml:"mtu"`
	SOCKS5    string    `yaml:"socks5"`
	Forwards  []Forward `yaml:"forwards"`
	Expose    []Expose  `yaml:"expose"`

	Prefixes []netip.Prefix `yaml:"-"`
}

// Forward is a local listener whose connections go to a peer address
// through the tunnel (netstack mode).
type Forward struct {
	Listen string `yaml:"listen"`
	To     string `yaml:"to"`
	Proto  string `yaml:"proto"`
}

// Expose makes a local service reachable on a tunnel port (netstack mode).
type Expose struct {
	Port  uint16 `yaml:"port"`
	To    string `yaml:"to"`
	Proto string `yaml:"proto"`
}

// Control is the control socket and metrics endpoint.
type Control struct {
	Socket  string `yaml:"socket"`
	Metrics string `yaml:"metrics"`
}

// Daemon is how the daemon process runs (strongswan.conf's charon.user
// and charon.group).
type Daemon struct {
	// User is the user (name or numeric ID) the daemon switches to, on
	// Linux, once its TUN device, sockets and control socket exist,
	// keeping no capability; empty: it keeps the identity it started with.
	User string `yaml:"user"`
	// Group is the group it switches to; empty: the user's primary group.
	Group string `yaml:"group"`
}

// IKE holds settings of all IKE SAs, as strongswan.conf's charon section
// does: the retransmission of requests, which also bounds how long a dead
// peer goes unnoticed.
type IKE struct {
	// RetransmitTimeout is the wait for the first answer; each
	// retransmission waits 1.8 times longer than the one before.
	RetransmitTimeout Duration `yaml:"retransmit_timeout"`
	// RetransmitTries is how many retransmissions are sent before the
	// peer is given up.
	RetransmitTries int `yaml:"retransmit_tries"`
}

// Log is the daemon's logging (strongswan.conf's charondebug, in zap's
// levels): a default level, per-subsystem levels and the line format.
type Log struct {
	// Level is the default level: debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is console or json.
	Format string `yaml:"format"`
	// Levels sets the level of some subsystems (logging.Subsystems).
	Levels map[string]string `yaml:"levels"`
}

// Defaults.
const (
	DefaultSocket       = "/run/goipsec/goipsec.sock"
	DefaultTunName      = "goipsec0"
	DefaultMTU          = 1400
	DefaultReplayWindow = 1024
	DefaultNATTPort     = 4500
	// DefaultFragmentSize, MinFragmentSize and MaxFragmentSize are the
	// IKE fragment sizes (whole IP datagrams), as package ike has them.
	DefaultFragmentSize = 1280
	MinFragmentSize     = 256
	MaxFragmentSize     = 65535
)

// DefaultSocketPath is the control socket when none is configured:
// $GOIPSEC_SOCKET if set, DefaultSocket for root, else a per-user path
// ($XDG_RUNTIME_DIR/goipsec.sock, or goipsec-UID/goipsec.sock in the
// temporary directory), so that unprivileged daemons work too.
func DefaultSocketPath() string {
	if s := os.Getenv("GOIPSEC_SOCKET"); s != "" {
		return s
	}
	uid := os.Getuid()
	if uid <= 0 { // root, or a system without user IDs
		return DefaultSocket
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "goipsec.sock")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("goipsec-%d", uid), "goipsec.sock")
}

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, b)
}

// Parse validates a configuration held in memory; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if err.Error() == "EOF" {
			return nil, &Error{File: name, Msg: "empty configuration"}
		}
		return nil, &Error{File: name, Msg: err.Error()}
	}
	c := &Config{}
	d := &decoder{file: name}
	if err := d.decode(&root, reflect.ValueOf(c).Elem(), ""); err != nil {
		return nil, err
	}
	v := &validator{file: name, c: c}
	if err := v.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

type validator struct {
	file string
	c    *Config
}

func (v *validator) errorf(path, format string, args ...any) error {
	return &Error{File: v.file, Path: path, Msg: fmt.Sprintf(format, args...)}
}

func oneOf(got string, def string, allowed ...string) (string, bool) {
	if got == "" {
		return def, true
	}
	for _, a := range allowed {
		if got == a {
			return got, true
		}
	}
	return got, false
}

func want(allowed ...string) string {
	if len(allowed) == 2 {
		return allowed[0] + " or " + allowed[1]
	}
	return strings.Join(allowed[:len(allowed)-1], ", ") + " or " + allowed[len(allowed)-1]
}

func sortedKeys[T any](m map[string]T) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (v *validator) validate() error {
	c := v.c
	for _, name := range sortedKeys(c.Connections) {
		if err := v.connection("connections."+name, c.Connections[name]); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(c.Secrets) {
		s, p := c.Secrets[name], "secrets."+name
		if s == nil {
			return v.errorf(p, "empty secret")
		}
		n := 0
		for _, x := range []string{s.Secret, s.File, s.Env} {
			if x != "" {
				n++
			}
		}
		if n != 1 {
			return v.errorf(p, "want exactly one of secret, file or env")
		}
	}
	if err := v.tun(); err != nil {
		return err
	}
	if t := v.c.IKE.RetransmitTries; t < 0 || t > 20 {
		return v.errorf("ike.retransmit_tries", "want 0 (the default, 5) to 20, got %d", t)
	}
	if err := v.log(); err != nil {
		return err
	}
	return v.daemon()
}

// log checks the log section and fills in its defaults.
func (v *validator) log() error {
	l := &v.c.Log
	var ok bool
	if l.Level, ok = oneOf(l.Level, "info", "debug", "info", "warn", "error"); !ok {
		return v.errorf("log.level", "want %s, got %q", want("debug", "info", "warn", "error"), l.Level)
	}
	if l.Format, ok = oneOf(l.Format, "console", "console", "json"); !ok {
		return v.errorf("log.format", "want %s, got %q", want("console", "json"), l.Format)
	}
	for _, sub := range sortedKeys(l.Levels) {
		if !slices.Contains(logging.Subsystems, sub) {
			return v.errorf("log.levels."+sub, "want a subsystem: %s", want(logging.Subsystems...))
		}
		if _, ok := oneOf(l.Levels[sub], "", "debug", "info", "warn", "error"); !ok || l.Levels[sub] == "" {
			return v.errorf("log.levels."+sub, "want %s, got %q", want("debug", "info", "warn", "error"), l.Levels[sub])
		}
	}
	return nil
}

// daemon checks the daemon section's syntax; the user and group are looked
// up when the daemon starts.
func (v *validator) daemon() error {
	d := &v.c.Daemon
	if d.User != "" {
		if !isAccountName(d.User) {
			return v.errorf("daemon.user", "want a user name or numeric user ID, got %q", d.User)
		}
		if d.User == "root" || strings.Trim(d.User, "0") == "" {
			return v.errorf("daemon.user", "want an unprivileged user: %s keeps every privilege (remove the key to stay root)", d.User)
		}
	}
	if d.Group != "" {
		if d.User == "" {
			return v.errorf("daemon.group", "needs daemon.user")
		}
		if !isAccountName(d.Group) {
			return v.errorf("daemon.group", "want a group name or numeric group ID, got %q", d.Group)
		}
	}
	return nil
}

// isAccountName reports whether s can name a user or group: letters,
// digits, '.', '_' and '-' (not first), optionally ending in '$'.
func isAccountName(s string) bool {
	s = strings.TrimSuffix(s, "$")
	if s == "" || len(s) > 256 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func (v *validator) connection(p string, c *Connection) error {
	if c == nil {
		return v.errorf(p, "empty connection")
	}
	switch c.Version {
	case 0:
		c.Version = 2
	case 2:
	case 1:
		return v.errorf(p+".version", "IKEv1 is not implemented yet: want 2")
	default:
		return v.errorf(p+".version", "want 1 or 2, got %d", c.Version)
	}
	for i, a := range c.LocalAddrs {
		if err := checkAddr(a); err != nil {
			return v.errorf(fmt.Sprintf("%s.local_addrs[%d]", p, i), "%v", err)
		}
	}
	for i, a := range c.RemoteAddrs {
		if err := checkAddr(a); err != nil {
			return v.errorf(fmt.Sprintf("%s.remote_addrs[%d]", p, i), "%v", err)
		}
	}
	for _, side := range []struct {
		name string
		a    *Auth
	}{{"local", &c.Local}, {"remote", &c.Remote}} {
		var ok bool
		if side.a.Auth, ok = oneOf(side.a.Auth, "psk", "psk", "pubkey", "rsa/pss"); !ok {
			return v.errorf(p+"."+side.name+".auth", "want %s, got %q", want("psk", "pubkey", "rsa/pss"), side.a.Auth)
		}
		if err := v.auth(p+"."+side.name, side.name == "local", side.a); err != nil {
			return err
		}
	}
	var ok bool
	if c.Fragmentation, ok = oneOf(c.Fragmentation, "yes", "yes", "accept", "force", "no"); !ok {
		return v.errorf(p+".fragmentation", "want %s, got %q", want("yes", "accept", "force", "no"), c.Fragmentation)
	}
	if c.FragmentSize != 0 && (c.FragmentSize < MinFragmentSize || c.FragmentSize > MaxFragmentSize) {
		return v.errorf(p+".fragment_size", "want %d to %d octets (a whole IP datagram), or 0 for %d, got %d",
			MinFragmentSize, MaxFragmentSize, DefaultFragmentSize, c.FragmentSize)
	}
	if c.KeyingTries != nil && *c.KeyingTries < 0 {
		return v.errorf(p+".keyingtries", "want 0 (until it works) or more, got %d", *c.KeyingTries)
	}
	if c.RandTime != nil && c.RekeyTime > 0 && *c.RandTime >= c.RekeyTime {
		return v.errorf(p+".rand_time", "want less than rekey_time (%v), got %v", c.RekeyTime.D(), c.RandTime.D())
	}
	if len(c.Children) == 0 {
		return v.errorf(p+".children", "a connection needs at least one child")
	}
	for _, name := range sortedKeys(c.Children) {
		if err := v.child(p+".children."+name, c, c.Children[name]); err != nil {
			return err
		}
	}
	return nil
}

// auth checks a side's certificate settings: what auth pubkey needs, and
// no certificate without it. File names relative to the configuration
// file's directory are made relative to the working directory; the files
// are read when the daemon starts.
func (v *validator) auth(p string, local bool, a *Auth) error {
	pub := a.Auth != "psk"
	files := func(key string, list []string) error {
		for i, f := range list {
			if strings.TrimSpace(f) == "" {
				return v.errorf(fmt.Sprintf("%s.%s[%d]", p, key, i), "empty file name")
			}
			list[i] = v.path(f)
		}
		return nil
	}
	if err := files("certs", a.Certs); err != nil {
		return err
	}
	if err := files("cacerts", a.CACerts); err != nil {
		return err
	}
	if a.Key != "" {
		a.Key = v.path(a.Key)
	}
	switch {
	case local && pub && len(a.Certs) == 0:
		return v.errorf(p+".certs", "auth %s needs our certificate file (then any intermediates)", a.Auth)
	case local && pub && a.Key == "":
		return v.errorf(p+".key", "auth %s needs the private key file of the first certificate", a.Auth)
	case !local && pub && len(a.CACerts) == 0 && len(a.Certs) == 0:
		return v.errorf(p+".cacerts", "auth %s needs the CA certificates the peer's certificate must chain to (or the peer's certificates in certs)", a.Auth)
	case !pub && len(a.Certs) > 0:
		return v.errorf(p+".certs", "certificates need auth: pubkey (auth is psk)")
	case !pub && local && a.Key != "":
		return v.errorf(p+".key", "a private key needs auth: pubkey (auth is psk)")
	case !pub && !local && len(a.CACerts) > 0:
		return v.errorf(p+".cacerts", "CA certificates need auth: pubkey (auth is psk)")
	}
	return nil
}

// path resolves a file name of the configuration relative to the
// configuration file's directory.
func (v *validator) path(f string) string {
	if filepath.IsAbs(f) {
		return f
	}
	return filepath.Join(filepath.Dir(v.file), f)
}

func checkAddr(a string) error {
	if a == "%any" || a == "%any4" || a == "%any6" {
		return nil
	}
	if _, err := netip.ParseAddr(a); err == nil {
		return nil
	}
	if _, err := netip.ParsePrefix(a); err == nil {
		return nil
	}
	if isHostname(a) {
		return nil
	}
	return fmt.Errorf("want an IP address, prefix, hostname or %%any, got %q", a)
}

func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func parseTS(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if s == "dynamic" {
			if len(list) != 1 {
				return nil, fmt.Errorf("dynamic cannot be combined with other selectors")
			}
			return nil, nil
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			if p != p.Masked() {
				return nil, fmt.Errorf("want a network prefix, got %q (host bits set; did you mean %s?)", s, p.Masked())
			}
			out = append(out, p)
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		return nil, fmt.Errorf("want an IP address, prefix or dynamic, got %q", s)
	}
	return out, nil
}

func (v *validator) child(p string, conn *Connection, ch *Child) error {
	if ch == nil {
		return v.errorf(p, "empty child")
	}
	var ok bool
	if ch.Mode, ok = oneOf(ch.Mode, "tunnel", "tunnel", "transport"); !ok {
		return v.errorf(p+".mode", "want %s, got %q", want("tunnel", "transport"), ch.Mode)
	}
	if ch.StartAction, ok = oneOf(ch.StartAction, "none", "start", "trap", "none"); !ok {
		return v.errorf(p+".start_action", "want %s, got %q", want("start", "trap", "none"), ch.StartAction)
	}
	if ch.DPDAction, ok = oneOf(ch.DPDAction, "clear", "clear", "trap", "restart"); !ok {
		return v.errorf(p+".dpd_action", "want %s, got %q", want("clear", "trap", "restart"), ch.DPDAction)
	}
	if ch.CloseAction, ok = oneOf(ch.CloseAction, "none", "none", "trap", "start"); !ok {
		return v.errorf(p+".close_action", "want %s, got %q", want("none", "trap", "start"), ch.CloseAction)
	}
	if err := ch.checkLifetimes(); err != nil {
		return v.errorf(p+"."+err.key, "%s", err.msg)
	}
	var err error
	if ch.LocalPrefixes, err = parseTS(ch.LocalTS); err != nil {
		return v.errorf(p+".local_ts", "%v", err)
	}
	if ch.RemotePrefixes, err = parseTS(ch.RemoteTS); err != nil {
		return v.errorf(p+".remote_ts", "%v", err)
	}
	if len(ch.ESPProposals) > 0 && len(ch.AHProposals) > 0 {
		return v.errorf(p, "esp_proposals and ah_proposals are exclusive")
	}
	if ch.ReplayWindow == nil {
		w := DefaultReplayWindow
		ch.ReplayWindow = &w
	} else if *ch.ReplayWindow < 0 || *ch.ReplayWindow > 65536 {
		return v.errorf(p+".replay_window", "want 0 (off) to 65536 packets, got %d", *ch.ReplayWindow)
	}
	if ch.Manual != nil {
		return v.manual(p+".manual", ch.Manual)
	}
	return nil
}

func (v *validator) manual(p string, m *Manual) error {
	var ok bool
	if m.Proto, ok = oneOf(m.Proto, "esp", "esp", "ah"); !ok {
		return v.errorf(p+".proto", "want %s, got %q", want("esp", "ah"), m.Proto)
	}
	var err error
	if m.Proto == "esp" {
		if m.Enc == "" {
			return v.errorf(p+".enc", "missing: an ESP encryption algorithm such as aes128gcm16")
		}
		if m.EncAlg, err = xform.LookupEnc(m.Enc); err != nil {
			return v.errorf(p+".enc", "unknown algorithm %q", m.Enc)
		}
		if m.EncAlg.Insecure {
			v.c.Warnings = append(v.c.Warnings, fmt.Sprintf("%s.enc: %s is a legacy, insecure algorithm", p, m.Enc))
		}
	} else if m.Enc != "" {
		return v.errorf(p+".enc", "AH does not encrypt: remove enc")
	}
	needInteg := m.Proto == "ah" || m.EncAlg.Kind == xform.KindCBC || m.EncAlg.Kind == xform.KindNull
	switch {
	case needInteg && m.Integ == "":
		return v.errorf(p+".integ", "missing: an integrity algorithm such as sha256")
	case !needInteg && m.Integ != "":
		return v.errorf(p+".integ", "%s already provides integrity: remove integ", m.Enc)
	case needInteg:
		if m.IntegAlg, err = xform.LookupInteg(m.Integ); err != nil {
			return v.errorf(p+".integ", "unknown algorithm %q", m.Integ)
		}
		if m.IntegAlg.GMAC && m.Proto == "esp" {
			return v.errorf(p+".integ", "for ESP write AES-GMAC as enc: %s", m.Integ)
		}
		if m.IntegAlg.Insecure {
			v.c.Warnings = append(v.c.Warnings, fmt.Sprintf("%s.integ: %s is a legacy, insecure algorithm", p, m.Integ))
		}
	}
	for _, d := range []struct {
		name string
		k    *ManualKey
	}{{"in", &m.In}, {"out", &m.Out}} {
		dp := p + "." + d.name
		if d.k.SPI < 256 {
			return v.errorf(dp+".spi", "want an SPI of 256 or more (0-255 are reserved), got %d", d.k.SPI)
		}
		if m.EncAlg != nil && len(d.k.Key) != m.EncAlg.KeyLen() {
			what := fmt.Sprintf("%d bytes", m.EncAlg.KeyLen())
			if m.EncAlg.SaltLen > 0 {
				what = fmt.Sprintf("%d bytes (%d key and %d salt)", m.EncAlg.KeyLen(), m.EncAlg.KeyBits/8, m.EncAlg.SaltLen)
			}
			return v.errorf(dp+".key", "%s wants %s, got %d", m.Enc, what, len(d.k.Key))
		}
		if m.EncAlg == nil && len(d.k.Key) != 0 {
			return v.errorf(dp+".key", "AH takes no encryption key")
		}
		if m.IntegAlg != nil && len(d.k.AuthKey) != m.IntegAlg.KeyLen {
			return v.errorf(dp+".authkey", "%s wants %d bytes, got %d", m.Integ, m.IntegAlg.KeyLen, len(d.k.AuthKey))
		}
		if m.IntegAlg == nil && len(d.k.AuthKey) != 0 {
			return v.errorf(dp+".authkey", "%s takes no separate integrity key", m.Enc)
		}
	}
	if m.In.SPI == m.Out.SPI {
		return v.errorf(p, "in and out use the same SPI %#x", m.In.SPI)
	}
	return nil
}

func (v *validator) tun() error {
	t := &v.c.Tun
	var ok bool
	if t.Mode, ok = oneOf(t.Mode, "kernel", "kernel", "netstack"); !ok {
		return v.errorf("tun.mode", "want %s, got %q", want("kernel", "netstack"), t.Mode)
	}
	if t.Name == "" {
		t.Name = DefaultTunName
	}
	if t.MTU == 0 {
		t.MTU = DefaultMTU
	} else if t.MTU < 576 || t.MTU > 65535 {
		return v.errorf("tun.mtu", "want 576 to 65535, got %d", t.MTU)
	}
	for i, a := range t.Addresses {
		pf, err := netip.ParsePrefix(a)
		if err != nil {
			return v.errorf(fmt.Sprintf("tun.addresses[%d]", i), "want an address with prefix length such as 10.1.0.1/24, got %q", a)
		}
		t.Prefixes = append(t.Prefixes, pf)
	}
	if t.Mode == "kernel" && (t.SOCKS5 != "" || len(t.Forwards) > 0 || len(t.Expose) > 0) {
		return v.errorf("tun", "socks5, forwards and expose need mode: netstack")
	}
	if t.SOCKS5 != "" {
		if _, err := netip.ParseAddrPort(t.SOCKS5); err != nil {
			return v.errorf("tun.socks5", "want address:port, got %q", t.SOCKS5)
		}
	}
	for i, f := range t.Forwards {
		p := fmt.Sprintf("tun.forwards[%d]", i)
		if _, err := netip.ParseAddrPort(f.Listen); err != nil {
			return v.errorf(p+".listen", "want address:port, got %q", f.Listen)
		}
		if _, err := netip.ParseAddrPort(f.To); err != nil {
			return v.errorf(p+".to", "want address:port, got %q", f.To)
		}
		if t.Forwards[i].Proto, ok = oneOf(f.Proto, "tcp", "tcp", "udp"); !ok {
			return v.errorf(p+".proto", "want %s, got %q", want("tcp", "udp"), f.Proto)
		}
	}
	for i, e := range t.Expose {
		p := fmt.Sprintf("tun.expose[%d]", i)
		if e.Port == 0 {
			return v.errorf(p+".port", "want a port number")
		}
		if _, err := netip.ParseAddrPort(e.To); err != nil {
			return v.errorf(p+".to", "want address:port, got %q", e.To)
		}
		if t.Expose[i].Proto, ok = oneOf(e.Proto, "tcp", "tcp", "udp"); !ok {
			return v.errorf(p+".proto", "want %s, got %q", want("tcp", "udp"), e.Proto)
		}
	}
	if v.c.Control.Socket == "" {
		v.c.Control.Socket = DefaultSocketPath()
	}
	return nil
}
