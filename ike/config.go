package ike

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
	"github.com/goipsec/goipsec/ike/ts"
	"github.com/goipsec/goipsec/sad"
)

// Config is what a Manager negotiates: the connections and the shared
// secrets.
type Config struct {
	Connections []*Connection
	Secrets     []*Secret
}

// Start actions of a child (swanctl start_action).
const (
	StartNone  = "none"  // wait for the peer or for Initiate
	StartStart = "start" // initiate when the Manager starts
	StartTrap  = "trap"  // initiate when traffic hits the child's policy
)

// Connection is one configured IKE connection (a swanctl "connections"
// entry).
type Connection struct {
	// Name is the connection's name.
	Name string
	// LocalAddrs are the addresses we use (the first IP address is the
	// source of dynamic traffic selectors and the default identity);
	// empty means any.
	LocalAddrs []netip.Addr
	// RemoteAddrs are the peer's addresses or networks: the first single
	// address is where we initiate to, all of them select the connection
	// for an incoming IKE_SA_INIT. Empty means any peer (responder only).
	RemoteAddrs []netip.Prefix
	// RemotePort is the peer's IKE port; 0 means 500.
	RemotePort uint16
	// Proposals are the IKE proposals in order of preference; empty means
	// the defaults.
	Proposals []message.Proposal
	// Encap forces UDP encapsulation. goipsec's dataplane carries ESP in
	// UDP only, so the Manager always forces it; the field is kept for
	// what the configuration says.
	Encap bool
	// DPDDelay is the interval of liveness checks when nothing was received
	// from the peer; 0 disables dead peer detection.
	DPDDelay time.Duration
	// RekeyTime is the IKE SA's rekey interval, less a random part of up
	// to RandTime; 0 disables rekeying.
	RekeyTime time.Duration
	// OverTime is how long an IKE SA that is not rekeyed lives beyond
	// RekeyTime (swanctl over_time): 0 means a tenth of RekeyTime,
	// negative none. RandTime is the rekey jitter (swanctl rand_time): 0
	// means OverTime, negative none.
	OverTime, RandTime time.Duration
	// KeyingTries is how many times a child with start_action start is
	// initiated before giving up (swanctl keyingtries): 0 or 1 once, as
	// strongSwan by default; negative until it is up (swanctl's 0).
	// Between attempts the delay grows from 1 s to 30 s.
	KeyingTries int
	// ReauthTime is the interval of reauthentication (swanctl
	// reauth_time): a new IKE SA from scratch, the Child SAs moved over
	// make-before-break, the old IKE SA deleted; 0 disables it.
	ReauthTime time.Duration
	// LocalID and RemoteID are the identities (strongSwan syntax); an empty
	// LocalID is the first local address, an empty or "%any" RemoteID
	// accepts any peer identity.
	LocalID, RemoteID string
	// Fragmentation is FragmentationYes, FragmentationAccept,
	// FragmentationForce or FragmentationNo (IKE fragmentation, RFC
	// 7383); "" means yes.
	Fragmentation string
	// FragmentSize is the largest IP datagram (IP and UDP headers
	// included) of a fragment we send; 0 means DefaultFragmentSize.
	FragmentSize int
	// Children are the Child SAs the connection negotiates.
	Children []*Child

	// LocalAuth and RemoteAuth are how we and the peer authenticate:
	// AuthPSK (also ""), AuthPubkey or AuthRSAPSS.
	LocalAuth, RemoteAuth string
	// LocalCerts are our certificate, then the intermediates we send
	// with it (pubkey); LocalKey is the certificate's private key.
	LocalCerts []*x509.Certificate
	LocalKey   crypto.Signer
	// RemoteCACerts are the CAs the peer's certificate must chain to;
	// RemoteCerts, if any, pin it to one of them (pubkey).
	RemoteCACerts, RemoteCerts []*x509.Certificate
	// ClassicSignatures signs with the classic methods (RSA 1, ECDSA 9-11)
	// even when the peer announces RFC 7427, for peers that need them.
	ClassicSignatures bool

	localID, remoteID identity
}

// Child is one configured Child SA (a swanctl "children" entry).
type Child struct {
	// Name is the child's name.
	Name string
	// Mode is the IPsec mode; 0 means tunnel.
	Mode sad.Mode
	// LocalTS and RemoteTS are the traffic selectors; nil means dynamic
	// (the IKE SA's own addresses).
	LocalTS, RemoteTS []ts.Selector
	// Proposals are the ESP proposals in order of preference; empty means
	// the defaults.
	Proposals []message.Proposal
	// StartAction is StartNone, StartStart or StartTrap; "" means none.
	StartAction string
	// ReplayWindow is the inbound anti-replay window in packets: 0 selects
	// the default, negative disables it.
	ReplayWindow int
	// RekeyTime is the Child SA's rekey interval, less a random part of up
	// to RandTime; 0 disables rekeying by time.
	RekeyTime time.Duration
	// LifeTime is the hard lifetime (0: RekeyTime plus a tenth, negative:
	// none) and RandTime the rekey jitter (0: LifeTime - RekeyTime,
	// negative: none), as swanctl's life_time and rand_time.
	LifeTime, RandTime time.Duration
	// RekeyBytes, LifeBytes, RandBytes and the Packets counterparts are
	// the volume limits of each SA of the child, with the same defaults
	// as the times (swanctl rekey_bytes, life_bytes, rand_bytes, ...);
	// 0 rekey and life limits mean none.
	RekeyBytes, LifeBytes, RandBytes       int64
	RekeyPackets, LifePackets, RandPackets int64
	// DPDAction is what happens to the child when its peer stopped
	// answering: DPDClear (""), DPDTrap or DPDRestart. CloseAction is what
	// happens when the peer deletes the Child SA (or its IKE SA):
	// CloseNone (""), CloseTrap or CloseStart.
	DPDAction, CloseAction string

	conn *Connection
}

// FullName returns "connection.child".
func (c *Child) FullName() string { return c.conn.Name + "." + c.Name }

// Secret is a pre-shared key and the identities it belongs to (a swanctl
// "secrets" ike entry).
type Secret struct {
	// IDs are the identities (strongSwan syntax) the key is for; empty
	// means any.
	IDs []string
	// Key is the shared secret.
	Key []byte

	ids []identity
}

// ParsePSK decodes a shared secret as swanctl writes it: "0x" followed by
// hex, "0s" followed by base64, or the literal string.
func ParsePSK(s string) ([]byte, error) {
	switch {
	case strings.HasPrefix(s, "0x"):
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return nil, fmt.Errorf("ike: hex secret: %w", err)
		}
		return b, nil
	case strings.HasPrefix(s, "0s"):
		b, err := base64.StdEncoding.DecodeString(s[2:])
		if err != nil {
			return nil, fmt.Errorf("ike: base64 secret: %w", err)
		}
		return b, nil
	}
	if s == "" {
		return nil, errors.New("ike: empty secret")
	}
	return []byte(s), nil
}

// identity is a configured identity: a concrete one, or "any".
type identity struct {
	any bool
	id  message.Identity
}

func (i identity) String() string {
	if i.any {
		return "%any"
	}
	return idString(&i.id)
}

// ParseIdentity reads an identity as strongSwan writes it: an IP address
// (ID_IPV4_ADDR, ID_IPV6_ADDR), "user@example.org" (ID_RFC822_ADDR),
// "example.org" or "@example.org" (ID_FQDN), "@#0a1b" (ID_KEY_ID from hex),
// or with an explicit type prefix "ipv4:", "ipv6:", "fqdn:", "email:",
// "rfc822:", "keyid:" (hex with a leading '#', else the literal string).
// "%any" and "" are rejected: use them only where a Connection allows any.
func ParseIdentity(s string) (message.Identity, error) {
	id, err := parseIdentity(s)
	if err != nil {
		return message.Identity{}, err
	}
	if id.any {
		return message.Identity{}, fmt.Errorf("ike: identity %q matches any peer and cannot be sent", s)
	}
	return id.id, nil
}

func parseIdentity(s string) (identity, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "%any" || s == "%any6" {
		return identity{any: true}, nil
	}
	if typ, val, ok := strings.Cut(s, ":"); ok {
		switch strings.ToLower(typ) {
		case "ipv4", "ipv6":
			a, err := netip.ParseAddr(val)
			if err != nil || (typ == "ipv4") != a.Is4() {
				return identity{}, fmt.Errorf("ike: identity %q: want an %s address", s, typ)
			}
			return identity{id: message.AddrIdentity(a)}, nil
		case "fqdn":
			return nonEmpty(s, message.FQDNIdentity(val))
		case "email", "rfc822":
			return nonEmpty(s, message.RFC822Identity(val))
		case "keyid":
			return keyID(s, val)
		}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return identity{id: message.AddrIdentity(a)}, nil
	}
	switch {
	case strings.HasPrefix(s, "@#"):
		return keyID(s, "#"+s[2:])
	case strings.HasPrefix(s, "@@"):
		return nonEmpty(s, message.RFC822Identity(s[2:]))
	case strings.HasPrefix(s, "@"):
		return nonEmpty(s, message.FQDNIdentity(s[1:]))
	case strings.Contains(s, "="):
		der, err := parseDN(s)
		if err != nil {
			return identity{}, err
		}
		return identity{id: message.DNIdentity(der)}, nil
	case strings.Contains(s, "@"):
		return identity{id: message.RFC822Identity(s)}, nil
	}
	return identity{id: message.FQDNIdentity(s)}, nil
}

func nonEmpty(s string, id message.Identity) (identity, error) {
	if len(id.Data) == 0 {
		return identity{}, fmt.Errorf("ike: identity %q is empty", s)
	}
	return identity{id: id}, nil
}

func keyID(s, val string) (identity, error) {
	if h, ok := strings.CutPrefix(val, "#"); ok {
		b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
		if err != nil || len(b) == 0 {
			return identity{}, fmt.Errorf("ike: identity %q: want hex after '#'", s)
		}
		return identity{id: message.KeyIDIdentity(b)}, nil
	}
	return nonEmpty(s, message.KeyIDIdentity([]byte(val)))
}

// wildcard reports whether i is a pattern, as strongSwan's: a leading '*'
// of an FQDN or e-mail address ("*.example.org", "*@example.org"), or a DN
// value "*" ("C=CH, O=Org, CN=*").
func (i identity) wildcard() bool {
	switch i.id.IDType {
	case message.IDFQDN, message.IDRFC822:
		return strings.HasPrefix(string(i.id.Data), "*")
	case message.IDDERASN1DN:
		return strings.Contains(message.FormatDN(i.id.Data), "=*")
	}
	return false
}

// matches reports whether the configured identity i accepts the received
// identity got (a pattern if wildcard). FQDNs, e-mail addresses and DN
// values compare without regard to case, as strongSwan does.
func (i identity) matches(got *message.Identity) bool {
	if i.any {
		return true
	}
	if i.id.IDType != got.IDType {
		return false
	}
	switch got.IDType {
	case message.IDFQDN, message.IDRFC822:
		want := string(i.id.Data)
		if suffix, ok := strings.CutPrefix(want, "*"); ok {
			return len(got.Data) > len(suffix) && strings.HasSuffix(strings.ToLower(string(got.Data)), strings.ToLower(suffix))
		}
		return strings.EqualFold(want, string(got.Data))
	case message.IDDERASN1DN:
		return message.DNMatch(i.id.Data, got.Data)
	}
	return string(i.id.Data) == string(got.Data)
}

// Validate checks the configuration (identities, proposals, children,
// start actions) and fills in the defaults, as NewManager does.
func (cfg *Config) Validate() error { return cfg.prepare() }

// prepare checks a configuration and fills in what it derives.
func (cfg *Config) prepare() error {
	names := map[string]bool{}
	for _, c := range cfg.Connections {
		if c.Name == "" || strings.Contains(c.Name, ".") {
			return fmt.Errorf("ike: connection name %q: want a non-empty name without dots", c.Name)
		}
		if names[c.Name] {
			return fmt.Errorf("ike: connection %q configured twice", c.Name)
		}
		names[c.Name] = true
		if err := c.prepare(); err != nil {
			return fmt.Errorf("ike: connection %s: %w", c.Name, err)
		}
	}
	for i, s := range cfg.Secrets {
		if len(s.Key) == 0 {
			return fmt.Errorf("ike: secret %d: empty key", i)
		}
		s.ids = s.ids[:0]
		for _, str := range s.IDs {
			id, err := parseIdentity(str)
			if err != nil {
				return fmt.Errorf("ike: secret %d: %w", i, err)
			}
			s.ids = append(s.ids, id)
		}
	}
	return nil
}

func (c *Connection) prepare() error {
	if len(c.Proposals) == 0 {
		c.Proposals = proposal.Default(message.ProtoIKE)
	}
	for i := range c.Proposals {
		if c.Proposals[i].Protocol != message.ProtoIKE {
			return fmt.Errorf("proposal %d is for %v, not IKE", i+1, c.Proposals[i].Protocol)
		}
		c.Proposals[i].Number = uint8(i + 1)
	}
	if err := c.prepareFragmentation(); err != nil {
		return err
	}
	var err error
	if c.localID, err = parseIdentity(c.LocalID); err != nil {
		return fmt.Errorf("local id: %w", err)
	}
	if c.localID.wildcard() {
		return fmt.Errorf("local id %s is a wildcard: we can only send a concrete identity", c.localID)
	}
	if err := c.prepareAuth(); err != nil {
		return err
	}
	if c.localID.any {
		a, ok := c.firstLocal()
		if !ok {
			return errors.New("local id: set an identity, or an IP address in local_addrs to use as one")
		}
		c.localID = identity{id: message.AddrIdentity(a)}
	}
	if c.remoteID, err = parseIdentity(c.RemoteID); err != nil {
		return fmt.Errorf("remote id: %w", err)
	}
	if len(c.Children) == 0 {
		return errors.New("no children")
	}
	if err := c.checkLifecycle(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, ch := range c.Children {
		if ch.Name == "" || strings.Contains(ch.Name, ".") || seen[ch.Name] {
			return fmt.Errorf("child name %q: want a unique non-empty name without dots", ch.Name)
		}
		seen[ch.Name] = true
		ch.conn = c
		if ch.Mode == 0 {
			ch.Mode = sad.Tunnel
		}
		if err := ch.checkLifetimes(); err != nil {
			return fmt.Errorf("child %s: %w", ch.Name, err)
		}
		switch ch.StartAction {
		case "":
			ch.StartAction = StartNone
		case StartNone, StartStart, StartTrap:
		default:
			return fmt.Errorf("child %s: start_action %q: want start, trap or none", ch.Name, ch.StartAction)
		}
		if ch.StartAction != StartNone {
			if _, ok := c.remoteAddr(); !ok {
				return fmt.Errorf("child %s: start_action %s needs a single IP address in remote_addrs to initiate to", ch.Name, ch.StartAction)
			}
		}
		if len(ch.Proposals) == 0 {
			ch.Proposals = proposal.Default(message.ProtoESP)
		}
		for i := range ch.Proposals {
			if ch.Proposals[i].Protocol != message.ProtoESP {
				return fmt.Errorf("child %s: proposal %d is for %v; only ESP is wired into the dataplane", ch.Name, i+1, ch.Proposals[i].Protocol)
			}
			ch.Proposals[i].Number = uint8(i + 1)
		}
	}
	return nil
}

// firstLocal returns the first configured local IP address.
func (c *Connection) firstLocal() (netip.Addr, bool) {
	for _, a := range c.LocalAddrs {
		if a.IsValid() && !a.IsUnspecified() {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// remoteAddr returns the address to initiate to: the first remote prefix
// that is a single address.
func (c *Connection) remoteAddr() (netip.Addr, bool) {
	for _, p := range c.RemoteAddrs {
		if p.IsSingleIP() && !p.Addr().IsUnspecified() {
			return p.Addr().Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// remotePort returns the peer's IKE port.
func (c *Connection) remotePort() uint16 {
	if c.RemotePort == 0 {
		return 500
	}
	return c.RemotePort
}

// acceptsPeer reports whether an IKE_SA_INIT from addr may use c, and how
// specifically (0: not at all, 1: any address, higher: a longer prefix).
func (c *Connection) acceptsPeer(addr netip.Addr) int {
	if len(c.RemoteAddrs) == 0 {
		return 1
	}
	best := 0
	addr = addr.Unmap()
	for _, p := range c.RemoteAddrs {
		if p.Contains(addr) {
			best = max(best, 2+p.Bits())
		}
	}
	return best
}

// childByName returns the named child.
func (c *Connection) childByName(name string) *Child {
	for _, ch := range c.Children {
		if ch.Name == name {
			return ch
		}
	}
	return nil
}

// lookupPSK finds the shared key for the pair of identities as strongSwan
// does: a secret applies if one of its identities is ours or the peer's (or
// if it names none); the one matching best (exact identities over %any over
// none named) wins, the first one on a tie.
func (cfg *Config) lookupPSK(local, remote *message.Identity) ([]byte, bool) {
	var best []byte
	bestScore := 0
	for _, s := range cfg.Secrets {
		me, other := 1, 1
		if len(s.ids) > 0 {
			me, other = 0, 0
			for _, id := range s.ids {
				if id.any {
					me, other = max(me, 1), max(other, 1)
					continue
				}
				if id.matches(local) {
					me = 10
				}
				if id.matches(remote) {
					other = 10
				}
			}
			if me == 0 && other == 0 {
				continue
			}
		}
		if score := me + other; score > bestScore {
			best, bestScore = s.Key, score
		}
	}
	return best, best != nil
}
