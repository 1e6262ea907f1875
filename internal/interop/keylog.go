//go:build linux

package interop

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// IKEKeys are the keys charon derived for one IKE SA (the initial one, or
// one made by an IKE rekey), as its log shows them at ike=4:
//
//	14[IKE] <t|1> SKEYSEED => 32 bytes @ 0x7f42600033c0
//	14[IKE] <t|1>    0: DE 53 11 86 80 A9 24 16 E0 4F 3F BD A4 5C 56 0C  .S....$..O?..\V.
//	14[IKE] <t|1>   16: 30 38 F6 81 3E F7 7D 0B 99 9A 6C B4 89 37 DA 66  08..>.}...l..7.f
//	14[IKE] <t|1> Sk_d secret => 32 bytes @ ...
//	14[IKE] <t|1> Sk_ai secret => ...   (and Sk_ar: only without an AEAD)
//	14[IKE] <t|1> Sk_ei secret => ...   (AEAD: key and 4-byte salt)
//	14[IKE] <t|1> Sk_er secret, Sk_pi secret, Sk_pr secret => ...
type IKEKeys struct {
	// Name is the connection's name ("" if the log never named the SA);
	// UniqueID charon's number for the SA (the 1 of <t|1> and t[1]).
	Name     string
	UniqueID int
	// Initiator is whether this charon was the SA's original initiator
	// (for a rekeyed SA: whether it initiated the rekey).
	Initiator bool
	// SPIi and SPIr are the IKE SPIs (from mgr=2's "checkin IKEv2 SA
	// t[1] with SPIs ..._i ..._r" lines; 0 if the log has none).
	SPIi, SPIr uint64
	// DHSecret is the shared Diffie-Hellman secret g^ir.
	DHSecret []byte
	// SKEYSEED = prf(Ni | Nr, g^ir) (for a rekey: prf(SK_d old, g^ir |
	// Ni | Nr)); SKd is SK_d, the seed of the Child SAs' keys.
	SKEYSEED []byte
	SKd      []byte
	// SKai and SKar are empty with an AEAD (AES-GCM, ChaCha20-Poly1305).
	SKai, SKar []byte
	// SKei and SKer include the salt with an AEAD (4 bytes).
	SKei, SKer []byte
	// SKpi and SKpr go into the AUTH payloads.
	SKpi, SKpr []byte
}

// ChildKeys are the keys charon derived for one Child SA (made in
// IKE_AUTH or CREATE_CHILD_SA, including rekeys), as its log shows them at
// chd=4:
//
//	13[CHD] <t|1> CHILD_SA c{1} state change: CREATED => INSTALLING
//	13[CHD] <t|1>   using AES_GCM_16 for encryption
//	13[CHD] <t|1>   using HMAC_SHA2_256_128 for integrity      (not with an AEAD)
//	13[CHD] <t|1> DH secret => 32 bytes @ ...                  (PFS only)
//	13[CHD] <t|1> seed => 64 bytes @ ...                       ([g^ir |] Ni | Nr)
//	13[CHD] <t|1> encryption initiator key => 20 bytes @ ...
//	13[CHD] <t|1> encryption responder key => 20 bytes @ ...
//	13[CHD] <t|1> integrity initiator key => 32 bytes @ ...    (not with an AEAD)
//	13[CHD] <t|1> integrity responder key => 32 bytes @ ...
//	13[CHD] <t|1> adding inbound ESP SA
//	13[CHD] <t|1>   SPI 0xcbcfdc14, src 192.0.2.2 dst 192.0.2.1
//	13[IKE] <t|1> CHILD_SA c{1} established with SPIs cbcfdc14_i bdf14869_o and TS ...
//
// "Initiator" in the key names is the initiator of the exchange that made
// the SA (RFC 7296 2.17): the initiator's outbound SA uses the initiator
// keys.
type ChildKeys struct {
	// Name is the child's name, UniqueID charon's number for it (the 1 of
	// c{1}); IKEName and IKEUniqueID name the IKE SA it belongs to.
	Name        string
	UniqueID    int
	IKEName     string
	IKEUniqueID int
	// Initiator is whether this charon initiated the exchange that made
	// the SA (its log says "establishing CHILD_SA c{N}").
	Initiator bool
	// Protocol is ESP or AH.
	Protocol string
	// SPIIn and SPIOut are the SPIs of this charon's inbound and outbound
	// SA.
	SPIIn, SPIOut uint32
	// EncrAlg and IntegAlg are strongSwan's names (AES_GCM_16, AES_CBC,
	// HMAC_SHA2_256_128, ...); IntegAlg is empty with an AEAD.
	EncrAlg, IntegAlg string
	// DHSecret is the PFS key exchange's secret (empty without PFS); Seed
	// is the prf+ seed ([g^ir |] Ni | Nr).
	DHSecret, Seed []byte
	// EncrI, EncrR, IntegI and IntegR are the keys of the
	// initiator-to-responder and responder-to-initiator SAs (with an AEAD,
	// the encryption key includes the salt).
	EncrI, EncrR, IntegI, IntegR []byte
}

// EncrIn is the encryption key of this charon's inbound SA.
func (c *ChildKeys) EncrIn() []byte { return pick(c.Initiator, c.EncrR, c.EncrI) }

// EncrOut is the encryption key of this charon's outbound SA.
func (c *ChildKeys) EncrOut() []byte { return pick(c.Initiator, c.EncrI, c.EncrR) }

// IntegIn is the integrity key of this charon's inbound SA.
func (c *ChildKeys) IntegIn() []byte { return pick(c.Initiator, c.IntegR, c.IntegI) }

// IntegOut is the integrity key of this charon's outbound SA.
func (c *ChildKeys) IntegOut() []byte { return pick(c.Initiator, c.IntegI, c.IntegR) }

func pick(cond bool, a, b []byte) []byte {
	if cond {
		return a
	}
	return b
}

// KeyLog is what [ParseKeyLog] found in a charon log, in the order charon
// derived the keys.
type KeyLog struct {
	IKE   []IKEKeys
	Child []ChildKeys
}

// IKEBySPI is the IKE SA with the initiator's SPI spii (nil if none).
func (k *KeyLog) IKEBySPI(spii uint64) *IKEKeys {
	for i := range k.IKE {
		if k.IKE[i].SPIi == spii {
			return &k.IKE[i]
		}
	}
	return nil
}

// IKEByID is the IKE SA with charon's unique ID id (nil if none).
func (k *KeyLog) IKEByID(id int) *IKEKeys {
	for i := range k.IKE {
		if k.IKE[i].UniqueID == id {
			return &k.IKE[i]
		}
	}
	return nil
}

// ChildBySPI is the Child SA whose inbound or outbound SPI is spi (nil if
// none).
func (k *KeyLog) ChildBySPI(spi uint32) *ChildKeys {
	for i := range k.Child {
		if k.Child[i].SPIIn == spi || k.Child[i].SPIOut == spi {
			return &k.Child[i]
		}
	}
	return nil
}

// logLine is one line of charon's file log: "TIME THREAD[SUBSYS] <CTX> MSG"
// (TIME and CTX optional).
type logLine struct {
	thread int
	subsys string
	ctx    string // IKE SA context: "name|id", "id", or ""
	msg    string
}

var (
	logLineRE = regexp.MustCompile(`^(?:\S+ )?(\d+)\[([A-Z]{3})\] (?:<([^>]*)> )?(.*)$`)
	hexLine   = regexp.MustCompile(`^\s*(\d+): ((?:[0-9A-F]{2} )+)`)
	dumpHead  = regexp.MustCompile(`^(.+) => (\d+) bytes @ (?:0x)?[0-9a-f]+$`)

	initiatingIKE   = regexp.MustCompile(`^initiating IKE_SA (.*)\[(\d+)\] to `)
	checkinIKE      = regexp.MustCompile(`checkin IKEv2 SA (.*)\[(\d+)\] with SPIs ([0-9a-f]{16})_i ([0-9a-f]{16})_r`)
	establishing    = regexp.MustCompile(`^establishing CHILD_SA (.*)\{(\d+)\}`)
	childInstalling = regexp.MustCompile(`^CHILD_SA (.*)\{(\d+)\} state change: CREATED => INSTALLING`)
	childAlg        = regexp.MustCompile(`^\s+using (\S+) for (encryption|integrity)$`)
	childSAAdd      = regexp.MustCompile(`^(?:adding|registering) (inbound|outbound) (ESP|AH) SA$`)
	childSPI        = regexp.MustCompile(`^\s+SPI 0x([0-9a-f]+), src `)
	childUp         = regexp.MustCompile(`CHILD_SA (.*)\{(\d+)\} established with SPIs ([0-9a-f]{8})_i ([0-9a-f]{8})_o`)
)

func parseLogLine(s string) (logLine, bool) {
	m := logLineRE.FindStringSubmatch(s)
	if m == nil {
		return logLine{}, false
	}
	th, _ := strconv.Atoi(m[1])
	return logLine{thread: th, subsys: m[2], ctx: m[3], msg: m[4]}, true
}

// ikeID splits a log context "name|id" or "id".
func ikeID(ctx string) (name string, id int, ok bool) {
	if i := strings.LastIndexByte(ctx, '|'); i >= 0 {
		name, ctx = ctx[:i], ctx[i+1:]
	}
	id, err := strconv.Atoi(ctx)
	return name, id, err == nil
}

// dump is a hex dump being read: a header "LABEL => N bytes @ ADDR" and
// lines "OFFSET: XX XX ...  ascii" of the same thread.
type dump struct {
	label string
	ctx   string
	ctxID int // the IKE SA's unique ID in ctx
	buf   []byte
	want  int
}

// ParseKeyLog reads a charon log written with ike=4 and chd=4 (mgr=2 adds
// the IKE SPIs) and returns the keys of every IKE SA and Child SA derived
// in it. Lines of charon's threads interleave; a hex dump belongs to the
// last header of the same thread.
func ParseKeyLog(r io.Reader) (*KeyLog, error) {
	kl := &KeyLog{}
	dumps := map[int]*dump{}           // thread -> dump being read
	lastDH := map[int][]byte{}         // thread -> last "shared Diffie Hellman secret"
	curChild := map[int]int{}          // thread -> index in kl.Child of the child being installed
	pendingSPI := map[int]*uint32{}    // thread -> where the next "SPI 0x" line goes
	curIKE := map[int]int{}            // thread -> index in kl.IKE of the last SKEYSEED
	ikeInit := map[int]bool{}          // IKE unique ID -> this charon initiated it
	rekeyTo := map[int]int{}           // IKE unique ID -> the SA it rekeys to, as the rekey initiator
	childInit := map[int]bool{}        // child unique ID -> this charon initiated it
	spis := map[int][2]uint64{}        // IKE unique ID -> SPIs
	names := map[int]string{}          // IKE unique ID -> connection name
	childByID := map[int]int{}         // child unique ID -> latest index in kl.Child
	childUpSPIs := map[int][2]uint32{} // child unique ID -> SPIs from "established with SPIs"
	finish := func(th int, d *dump) error {
		delete(dumps, th)
		if len(d.buf) != d.want {
			return fmt.Errorf("thread %d: %s: %d of %d bytes in the hex dump", th, d.label, len(d.buf), d.want)
		}
		label := strings.ToLower(d.label)
		_, id, hasID := ikeID(d.ctx)
		if label == "skeyseed" && !hasID {
			return fmt.Errorf("thread %d: %s without an IKE SA in its context", th, d.label)
		}
		// SK_* follow SKEYSEED on the same thread.
		var ike *IKEKeys
		if i, ok := curIKE[th]; ok {
			ike = &kl.IKE[i]
		}
		var child *ChildKeys
		if i, ok := curChild[th]; ok {
			child = &kl.Child[i]
		}
		switch label {
		case "shared diffie hellman secret":
			lastDH[th] = d.buf
		case "skeyseed":
			// The initiator of an IKE rekey derives the new SA's keys in
			// the old SA's context: "<ike|1> initiating IKE_SA ike[2] to"
			// told which SA they are for.
			if to, ok := rekeyTo[id]; ok {
				id = to
				delete(rekeyTo, d.ctxID)
			}
			kl.IKE = append(kl.IKE, IKEKeys{UniqueID: id, DHSecret: lastDH[th], SKEYSEED: d.buf})
			curIKE[th] = len(kl.IKE) - 1
			delete(lastDH, th)
		case "sk_d secret", "sk_ai secret", "sk_ar secret", "sk_ei secret", "sk_er secret", "sk_pi secret", "sk_pr secret":
			if ike == nil {
				return fmt.Errorf("thread %d: %s before SKEYSEED", th, d.label)
			}
			switch label {
			case "sk_d secret":
				ike.SKd = d.buf
			case "sk_ai secret":
				ike.SKai = d.buf
			case "sk_ar secret":
				ike.SKar = d.buf
			case "sk_ei secret":
				ike.SKei = d.buf
			case "sk_er secret":
				ike.SKer = d.buf
			case "sk_pi secret":
				ike.SKpi = d.buf
			case "sk_pr secret":
				ike.SKpr = d.buf
			}
		case "dh secret", "seed", "encryption initiator key", "encryption responder key", "integrity initiator key", "integrity responder key":
			if child == nil {
				return fmt.Errorf("thread %d: %s outside a CHILD_SA installation", th, d.label)
			}
			switch label {
			case "dh secret":
				child.DHSecret = d.buf
			case "seed":
				child.Seed = d.buf
			case "encryption initiator key":
				child.EncrI = d.buf
			case "encryption responder key":
				child.EncrR = d.buf
			case "integrity initiator key":
				child.IntegI = d.buf
			case "integrity responder key":
				child.IntegR = d.buf
			}
		}
		return nil
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	n := 0
	for sc.Scan() {
		n++
		l, ok := parseLogLine(sc.Text())
		if !ok {
			continue
		}
		if name, id, ok := ikeID(l.ctx); ok && name != "" {
			names[id] = name
		}
		if d := dumps[l.thread]; d != nil {
			if m := hexLine.FindStringSubmatch(l.msg); m != nil {
				off, _ := strconv.Atoi(m[1])
				if off != len(d.buf) {
					return nil, fmt.Errorf("line %d: hex dump of %s at offset %d, want %d", n, d.label, off, len(d.buf))
				}
				take := min(16, d.want-len(d.buf))
				hexes := strings.Fields(m[2])
				if len(hexes) < take {
					return nil, fmt.Errorf("line %d: short hex dump line of %s", n, d.label)
				}
				for _, h := range hexes[:take] {
					b, _ := hex.DecodeString(h)
					d.buf = append(d.buf, b...)
				}
				if len(d.buf) == d.want {
					if err := finish(l.thread, d); err != nil {
						return nil, fmt.Errorf("line %d: %w", n, err)
					}
				}
				continue
			}
			if err := finish(l.thread, d); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		if l.subsys == "IKE" || l.subsys == "CHD" {
			if m := dumpHead.FindStringSubmatch(l.msg); m != nil {
				want, _ := strconv.Atoi(m[2])
				_, ctxID, _ := ikeID(l.ctx)
				d := &dump{label: m[1], ctx: l.ctx, ctxID: ctxID, want: want}
				if want == 0 {
					if err := finish(l.thread, d); err != nil {
						return nil, fmt.Errorf("line %d: %w", n, err)
					}
				} else {
					dumps[l.thread] = d
				}
				continue
			}
		}
		if m := initiatingIKE.FindStringSubmatch(l.msg); m != nil {
			id, _ := strconv.Atoi(m[2])
			ikeInit[id] = true
			if _, cur, ok := ikeID(l.ctx); ok && cur != id {
				rekeyTo[cur] = id
			}
			continue
		}
		if m := checkinIKE.FindStringSubmatch(l.msg); m != nil {
			id, _ := strconv.Atoi(m[2])
			i, _ := strconv.ParseUint(m[3], 16, 64)
			r, _ := strconv.ParseUint(m[4], 16, 64)
			if r != 0 {
				spis[id] = [2]uint64{i, r}
			}
			if m[1] != "(unnamed)" {
				names[id] = m[1]
			}
			continue
		}
		if m := establishing.FindStringSubmatch(l.msg); m != nil {
			id, _ := strconv.Atoi(m[2])
			childInit[id] = true
			continue
		}
		if m := childInstalling.FindStringSubmatch(l.msg); m != nil {
			id, _ := strconv.Atoi(m[2])
			ikeName, ikeUID, _ := ikeID(l.ctx)
			kl.Child = append(kl.Child, ChildKeys{Name: m[1], UniqueID: id, IKEName: ikeName, IKEUniqueID: ikeUID})
			curChild[l.thread] = len(kl.Child) - 1
			childByID[id] = len(kl.Child) - 1
			continue
		}
		if i, ok := curChild[l.thread]; ok {
			c := &kl.Child[i]
			if m := childAlg.FindStringSubmatch(l.msg); m != nil {
				if m[2] == "encryption" {
					c.EncrAlg = m[1]
				} else {
					c.IntegAlg = m[1]
				}
				continue
			}
			if m := childSAAdd.FindStringSubmatch(l.msg); m != nil {
				c.Protocol = m[2]
				if m[1] == "inbound" {
					pendingSPI[l.thread] = &c.SPIIn
				} else {
					pendingSPI[l.thread] = &c.SPIOut
				}
				continue
			}
			if p := pendingSPI[l.thread]; p != nil {
				if m := childSPI.FindStringSubmatch(l.msg); m != nil {
					v, _ := strconv.ParseUint(m[1], 16, 32)
					*p = uint32(v)
					delete(pendingSPI, l.thread)
					continue
				}
			}
		}
		if m := childUp.FindStringSubmatch(l.msg); m != nil {
			id, _ := strconv.Atoi(m[2])
			in, _ := strconv.ParseUint(m[3], 16, 32)
			out, _ := strconv.ParseUint(m[4], 16, 32)
			childUpSPIs[id] = [2]uint32{uint32(in), uint32(out)}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for th, d := range dumps {
		if err := finish(th, d); err != nil {
			return nil, fmt.Errorf("at the end of the log: %w", err)
		}
	}
	for i := range kl.IKE {
		k := &kl.IKE[i]
		k.Initiator = ikeInit[k.UniqueID]
		k.Name = names[k.UniqueID]
		s := spis[k.UniqueID]
		k.SPIi, k.SPIr = s[0], s[1]
	}
	for i := range kl.Child {
		c := &kl.Child[i]
		c.Initiator = childInit[c.UniqueID]
		if c.IKEName == "" {
			c.IKEName = names[c.IKEUniqueID]
		}
		if s, ok := childUpSPIs[c.UniqueID]; ok && childByID[c.UniqueID] == i {
			c.SPIIn, c.SPIOut = s[0], s[1]
		}
	}
	return kl, nil
}
