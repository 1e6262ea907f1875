//go:build linux

package interop

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SwanctlConfig is a swanctl.conf: connections and secrets. [StrongSwan.Load]
// writes it with [SwanctlConfig.Render] and loads it with swanctl
// --load-all. Only what is set is written; strongSwan's defaults apply to
// the rest.
type SwanctlConfig struct {
	// Connections are the connections section's entries.
	Connections []Connection
	// PSKs are the IKE pre-shared keys (secrets.ike-N).
	PSKs []PSK
	// PrivateKeys are unencrypted PEM private key files: the keys of the
	// certificates the local side authenticates with. [StrongSwan.Load]
	// copies them into SWANCTL_DIR/private, whence swanctl --load-all
	// loads them (swanctl.conf's secrets.private<suffix> only holds
	// passphrases, it loads no key). Render ignores them.
	PrivateKeys []string
}

// PSK is an IKE pre-shared key for a set of identities (none: any).
type PSK struct {
	// IDs are the identities the key is for.
	IDs []string
	// Secret is the key (written quoted as needed).
	Secret string
}

// Connection is one entry of swanctl.conf's connections section.
type Connection struct {
	// Name names the connection (swanctl --initiate --ike NAME).
	Name string
	// Version is the IKE version: 0 (any, strongSwan's default), 1 or 2.
	Version int
	// LocalAddrs and RemoteAddrs are addresses, ranges or %any; empty
	// means strongSwan's default (%any).
	LocalAddrs, RemoteAddrs []string
	// LocalPort and RemotePort are the IKE ports (0: 500).
	LocalPort, RemotePort int
	// Proposals are IKE proposals as strongSwan writes them, e.g.
	// "aes128gcm16-prfsha256-x25519".
	Proposals []string
	// Encap forces UDP encapsulation of ESP (libipsec does so anyway).
	Encap bool
	// Mobike, Fragmentation ("yes", "no", "accept", "force") and
	// SendCertReq/SendCert are written when set.
	Mobike        *bool
	Fragmentation string
	SendCert      string
	// Aggressive selects IKEv1 aggressive mode.
	Aggressive bool
	// KeyingTries is keyingtries (0: strongSwan's default, 1).
	KeyingTries int
	// RekeyTime, ReauthTime, OverTime and RandTime are the IKE SA's
	// lifetimes (0: default; written in seconds).
	RekeyTime, ReauthTime, OverTime, RandTime time.Duration
	// DPDDelay and DPDTimeout (IKEv1) drive dead peer detection.
	DPDDelay, DPDTimeout time.Duration
	// Local and Remote are the local and remote authentication rounds.
	Local, Remote Auth
	// Children are the connection's Child SA configurations.
	Children []Child
	// Extra are more settings of the connection, written as key = value.
	Extra map[string]string
}

// Auth is a local or remote authentication round.
type Auth struct {
	// Auth is the method: "psk", "pubkey", ...
	Auth string
	// ID is the IKE identity (FQDN, IP, e-mail, DN, ...).
	ID string
	// Certs are certificate files (absolute paths) to authenticate with
	// (local) or to accept (remote).
	Certs []string
	// CACerts are CA certificate files the remote's certificate must chain
	// to (remote rounds).
	CACerts []string
	// Extra are more settings of the round.
	Extra map[string]string
}

// Child is one entry of a connection's children section.
type Child struct {
	// Name names the child (swanctl --initiate --child NAME).
	Name string
	// LocalTS and RemoteTS are traffic selectors (CIDR, range, "dynamic").
	LocalTS, RemoteTS []string
	// ESPProposals are ESP proposals, e.g. "aes128gcm16-x25519" (a key
	// exchange group makes rekeys use PFS).
	ESPProposals []string
	// Mode is "tunnel" (the only mode kernel-libipsec supports), written
	// when set.
	Mode string
	// StartAction ("none", "trap", "start"), DPDAction and CloseAction
	// ("clear", "trap", "restart"): written when set.
	StartAction, DPDAction, CloseAction string
	// RekeyTime, LifeTime and RandTime are the Child SA's lifetimes (0:
	// default; written in seconds).
	RekeyTime, LifeTime, RandTime time.Duration
	// RekeyBytes and RekeyPackets are volume limits (0: default).
	RekeyBytes, RekeyPackets uint64
	// Extra are more settings of the child.
	Extra map[string]string
}

// Render writes the configuration in swanctl.conf syntax.
func (c *SwanctlConfig) Render() string {
	var w confWriter
	w.open("connections")
	for _, conn := range c.Connections {
		conn.render(&w)
	}
	w.close()
	w.open("secrets")
	for i, p := range c.PSKs {
		w.open(fmt.Sprintf("ike-%d", i+1))
		for j, id := range p.IDs {
			w.kv(fmt.Sprintf("id-%d", j+1), id)
		}
		w.kv("secret", p.Secret)
		w.close()
	}
	w.close()
	return w.String()
}

func (conn *Connection) render(w *confWriter) {
	w.open(conn.Name)
	if conn.Version != 0 {
		w.kv("version", strconv.Itoa(conn.Version))
	}
	w.list("local_addrs", conn.LocalAddrs)
	w.list("remote_addrs", conn.RemoteAddrs)
	if conn.LocalPort != 0 {
		w.kv("local_port", strconv.Itoa(conn.LocalPort))
	}
	if conn.RemotePort != 0 {
		w.kv("remote_port", strconv.Itoa(conn.RemotePort))
	}
	w.list("proposals", conn.Proposals)
	if conn.Encap {
		w.kv("encap", "yes")
	}
	if conn.Mobike != nil {
		w.kv("mobike", yesNo(*conn.Mobike))
	}
	w.opt("fragmentation", conn.Fragmentation)
	w.opt("send_cert", conn.SendCert)
	if conn.Aggressive {
		w.kv("aggressive", "yes")
	}
	if conn.KeyingTries != 0 {
		w.kv("keyingtries", strconv.Itoa(conn.KeyingTries))
	}
	w.dur("rekey_time", conn.RekeyTime)
	w.dur("reauth_time", conn.ReauthTime)
	w.dur("over_time", conn.OverTime)
	w.dur("rand_time", conn.RandTime)
	w.dur("dpd_delay", conn.DPDDelay)
	w.dur("dpd_timeout", conn.DPDTimeout)
	w.extra(conn.Extra)
	conn.Local.render(w, "local")
	conn.Remote.render(w, "remote")
	w.open("children")
	for _, ch := range conn.Children {
		ch.render(w)
	}
	w.close()
	w.close()
}

func (a *Auth) render(w *confWriter, section string) {
	w.open(section)
	w.opt("auth", a.Auth)
	w.opt("id", a.ID)
	w.list("certs", a.Certs)
	w.list("cacerts", a.CACerts)
	w.extra(a.Extra)
	w.close()
}

func (ch *Child) render(w *confWriter) {
	w.open(ch.Name)
	w.list("local_ts", ch.LocalTS)
	w.list("remote_ts", ch.RemoteTS)
	w.list("esp_proposals", ch.ESPProposals)
	w.opt("mode", ch.Mode)
	w.opt("start_action", ch.StartAction)
	w.opt("dpd_action", ch.DPDAction)
	w.opt("close_action", ch.CloseAction)
	w.dur("rekey_time", ch.RekeyTime)
	w.dur("life_time", ch.LifeTime)
	w.dur("rand_time", ch.RandTime)
	if ch.RekeyBytes != 0 {
		w.kv("rekey_bytes", strconv.FormatUint(ch.RekeyBytes, 10))
	}
	if ch.RekeyPackets != 0 {
		w.kv("rekey_packets", strconv.FormatUint(ch.RekeyPackets, 10))
	}
	w.extra(ch.Extra)
	w.close()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// confWriter writes strongswan.conf/swanctl.conf syntax with indentation.
type confWriter struct {
	b     strings.Builder
	depth int
}

func (w *confWriter) String() string { return w.b.String() }

func (w *confWriter) indent() { w.b.WriteString(strings.Repeat("  ", w.depth)) }

func (w *confWriter) open(name string) {
	w.indent()
	w.b.WriteString(name + " {\n")
	w.depth++
}

func (w *confWriter) close() {
	w.depth--
	w.indent()
	w.b.WriteString("}\n")
}

// kv writes key = value, the value quoted if it needs to be.
func (w *confWriter) kv(key, value string) {
	w.indent()
	w.b.WriteString(key + " = " + confQuote(value) + "\n")
}

// raw writes key = value as it is.
func (w *confWriter) raw(key, value string) {
	w.indent()
	w.b.WriteString(key + " = " + value + "\n")
}

func (w *confWriter) opt(key, value string) {
	if value != "" {
		w.kv(key, value)
	}
}

func (w *confWriter) list(key string, values []string) {
	if len(values) == 0 {
		return
	}
	// swanctl splits list values at commas itself: quote the whole list
	// if it needs quoting at all.
	joined := strings.Join(values, ", ")
	for _, v := range values {
		if confQuote(v) != v {
			w.kv(key, joined)
			return
		}
	}
	w.raw(key, joined)
}

func (w *confWriter) dur(key string, d time.Duration) {
	if d > 0 {
		s := int64((d + time.Second - 1) / time.Second)
		w.kv(key, strconv.FormatInt(s, 10)+"s")
	}
}

func (w *confWriter) extra(m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.raw(k, m[k])
	}
}

// confQuote quotes a value for strongswan.conf syntax when it holds
// anything but letters, digits and a few safe characters.
func confQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:/%@!*+", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
