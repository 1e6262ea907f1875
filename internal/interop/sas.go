//go:build linux

package interop

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// IKESA is one IKE SA as swanctl --list-sas shows it (vici's list-sa
// event).
type IKESA struct {
	// Name is the connection's name; UniqueID charon's number for the SA
	// (the N of NAME[N] in its log).
	Name     string
	UniqueID int
	// Version is the IKE version, 1 or 2.
	Version int
	// State is ESTABLISHED, CONNECTING, REKEYING, DELETING, ...
	State                 string
	LocalHost, RemoteHost string
	LocalPort, RemotePort int
	LocalID, RemoteID     string
	// Initiator is whether this charon initiated the SA.
	Initiator bool
	// InitiatorSPI and ResponderSPI are the IKE SPIs.
	InitiatorSPI, ResponderSPI uint64
	// NATLocal: this side is behind a NAT; NATRemote: the peer is;
	// NATFake: faked NAT (libipsec always fakes one to force UDP
	// encapsulation); NATAny: any of them.
	NATLocal, NATRemote, NATFake, NATAny bool
	// The negotiated algorithms, as strongSwan names them (AES_GCM_16,
	// PRF_HMAC_SHA2_256, CURVE_25519, ...); IntegAlg is empty for AEADs.
	EncrAlg     string
	EncrKeySize int
	IntegAlg    string
	PRFAlg      string
	DHGroup     string
	// Established is how long ago the SA was established; RekeyTime and
	// ReauthTime are when it will be rekeyed/reauthenticated (0: not).
	Established, RekeyTime, ReauthTime time.Duration
	// Children are its Child SAs, including rekeyed ones that linger.
	Children []ChildSA
	// Fields holds every key = value of the SA as swanctl printed it.
	Fields map[string]string
}

// ChildSA is one Child SA of an [IKESA].
type ChildSA struct {
	// Name is the child's name, UniqueID charon's number for it (the N of
	// NAME{N} in its log), ReqID its policy's request ID.
	Name     string
	UniqueID int
	ReqID    int
	// State is INSTALLED, REKEYING, REKEYED, DELETING, ...
	State string
	// Mode is TUNNEL or TRANSPORT; Protocol ESP or AH; Encap whether ESP
	// is in UDP.
	Mode, Protocol string
	Encap          bool
	// SPIIn and SPIOut are the SPIs of the inbound and outbound SA.
	SPIIn, SPIOut uint32
	// The negotiated algorithms; IntegAlg is empty for AEADs, DHGroup for
	// SAs made without PFS, ESN is whether extended sequence numbers are on.
	EncrAlg     string
	EncrKeySize int
	IntegAlg    string
	DHGroup     string
	ESN         bool
	// The traffic counters of both directions.
	BytesIn, PacketsIn, BytesOut, PacketsOut uint64
	// RekeyTime and LifeTime are when the SA will be rekeyed and expire;
	// Installed is how long ago it was installed.
	RekeyTime, LifeTime, Installed time.Duration
	// LocalTS and RemoteTS are the negotiated traffic selectors.
	LocalTS, RemoteTS []string
	// Fields holds every key = value of the SA as swanctl printed it.
	Fields map[string]string
}

// FindIKE is the first SA of connection name in sas (nil if none).
func FindIKE(sas []IKESA, name string) *IKESA {
	for i := range sas {
		if sas[i].Name == name {
			return &sas[i]
		}
	}
	return nil
}

// FindChild is the first Child SA named name in the IKE SAs (nil if none).
func FindChild(sas []IKESA, name string) *ChildSA {
	for i := range sas {
		for j := range sas[i].Children {
			if sas[i].Children[j].Name == name {
				return &sas[i].Children[j]
			}
		}
	}
	return nil
}

// viciNode is a section of a vici message as swanctl --pretty prints it.
type viciNode struct {
	name     string
	values   map[string]string
	lists    map[string][]string
	sections []*viciNode
}

func newViciNode(name string) *viciNode {
	return &viciNode{name: name, values: map[string]string{}, lists: map[string][]string{}}
}

// parseVici parses swanctl's --pretty output: one or more messages, each
// "NAME {" ... "}", with "key = value", "key = [" items "]" and nested
// sections. It returns the top-level messages.
func parseVici(out string) ([]*viciNode, error) {
	var top []*viciNode
	var stack []*viciNode
	var listNode *viciNode // the section of the list being read, if any
	var listKey string
	for i, raw := range strings.Split(out, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		switch {
		case listNode != nil:
			if line == "]" {
				listNode = nil
			} else {
				listNode.lists[listKey] = append(listNode.lists[listKey], line)
			}
		case line == "}":
			if len(stack) == 0 {
				return nil, fmt.Errorf("line %d: unbalanced }", i+1)
			}
			stack = stack[:len(stack)-1]
		case strings.HasSuffix(line, " {") && !strings.Contains(line, " = "):
			n := newViciNode(strings.TrimSuffix(line, " {"))
			if len(stack) == 0 {
				top = append(top, n)
			} else {
				p := stack[len(stack)-1]
				p.sections = append(p.sections, n)
			}
			stack = append(stack, n)
		default:
			k, v, ok := strings.Cut(line, " = ")
			if !ok || len(stack) == 0 {
				// swanctl's own messages outside the vici dump.
				continue
			}
			cur := stack[len(stack)-1]
			if v == "[" {
				cur.lists[k] = []string{}
				listNode, listKey = cur, k
			} else {
				cur.values[k] = v
			}
		}
	}
	if len(stack) != 0 || listNode != nil {
		return nil, fmt.Errorf("truncated vici output")
	}
	return top, nil
}

// ParseListSAs parses the output of swanctl --list-sas --pretty.
func ParseListSAs(out string) ([]IKESA, error) {
	msgs, err := parseVici(out)
	if err != nil {
		return nil, err
	}
	var sas []IKESA
	for _, m := range msgs {
		if m.name != "list-sa event" {
			continue
		}
		for _, ike := range m.sections {
			sa, err := ikeSAFromVici(ike)
			if err != nil {
				return nil, fmt.Errorf("IKE SA %s: %w", ike.name, err)
			}
			sas = append(sas, sa)
		}
	}
	return sas, nil
}

type fieldReader struct {
	m   map[string]string
	err error
}

func (r *fieldReader) str(k string) string { return r.m[k] }

func (r *fieldReader) yes(k string) bool { return r.m[k] == "yes" }

func (r *fieldReader) int(k string) int {
	v, ok := r.m[k]
	if !ok || r.err != nil {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.err = fmt.Errorf("%s = %q: %w", k, v, err)
	}
	return n
}

func (r *fieldReader) uint(k string) uint64 {
	v, ok := r.m[k]
	if !ok || r.err != nil {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		r.err = fmt.Errorf("%s = %q: %w", k, v, err)
	}
	return n
}

func (r *fieldReader) hex(k string, bits int) uint64 {
	v, ok := r.m[k]
	if !ok || r.err != nil {
		return 0
	}
	n, err := strconv.ParseUint(v, 16, bits)
	if err != nil {
		r.err = fmt.Errorf("%s = %q: %w", k, v, err)
	}
	return n
}

func (r *fieldReader) secs(k string) time.Duration {
	return time.Duration(r.int(k)) * time.Second
}

func ikeSAFromVici(n *viciNode) (IKESA, error) {
	r := &fieldReader{m: n.values}
	sa := IKESA{
		Name:         n.name,
		UniqueID:     r.int("uniqueid"),
		Version:      r.int("version"),
		State:        r.str("state"),
		LocalHost:    r.str("local-host"),
		LocalPort:    r.int("local-port"),
		LocalID:      r.str("local-id"),
		RemoteHost:   r.str("remote-host"),
		RemotePort:   r.int("remote-port"),
		RemoteID:     r.str("remote-id"),
		Initiator:    r.yes("initiator"),
		InitiatorSPI: r.hex("initiator-spi", 64),
		ResponderSPI: r.hex("responder-spi", 64),
		NATLocal:     r.yes("nat-local"),
		NATRemote:    r.yes("nat-remote"),
		NATFake:      r.yes("nat-fake"),
		NATAny:       r.yes("nat-any"),
		EncrAlg:      r.str("encr-alg"),
		EncrKeySize:  r.int("encr-keysize"),
		IntegAlg:     r.str("integ-alg"),
		PRFAlg:       r.str("prf-alg"),
		DHGroup:      r.str("dh-group"),
		Established:  r.secs("established"),
		RekeyTime:    r.secs("rekey-time"),
		ReauthTime:   r.secs("reauth-time"),
		Fields:       n.values,
	}
	for _, sec := range n.sections {
		if sec.name != "child-sas" {
			continue
		}
		for _, c := range sec.sections {
			cr := &fieldReader{m: c.values}
			ch := ChildSA{
				Name:        cr.str("name"),
				UniqueID:    cr.int("uniqueid"),
				ReqID:       cr.int("reqid"),
				State:       cr.str("state"),
				Mode:        cr.str("mode"),
				Protocol:    cr.str("protocol"),
				Encap:       cr.yes("encap"),
				SPIIn:       uint32(cr.hex("spi-in", 32)),
				SPIOut:      uint32(cr.hex("spi-out", 32)),
				EncrAlg:     cr.str("encr-alg"),
				EncrKeySize: cr.int("encr-keysize"),
				IntegAlg:    cr.str("integ-alg"),
				DHGroup:     cr.str("dh-group"),
				ESN:         cr.str("esn") == "1" || cr.yes("esn"),
				BytesIn:     cr.uint("bytes-in"),
				PacketsIn:   cr.uint("packets-in"),
				BytesOut:    cr.uint("bytes-out"),
				PacketsOut:  cr.uint("packets-out"),
				RekeyTime:   cr.secs("rekey-time"),
				LifeTime:    cr.secs("life-time"),
				Installed:   cr.secs("install-time"),
				LocalTS:     c.lists["local-ts"],
				RemoteTS:    c.lists["remote-ts"],
				Fields:      c.values,
			}
			if cr.err != nil {
				return sa, fmt.Errorf("child %s: %w", c.name, cr.err)
			}
			sa.Children = append(sa.Children, ch)
		}
	}
	return sa, r.err
}
