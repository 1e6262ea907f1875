// Package saspec parses the SA specs that users give on the command line
// (`--sa spi=0x1234,proto=esp,enc=aes128gcm16,key=0x...`) into validated,
// typed SA parameters, and builds the engines' configurations from them.
//
// Error messages name the offending key and what was expected, and never
// repeat key material.
package saspec

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/replay"
	"github.com/goipsec/goipsec/internal/xform"
)

// Proto is the IPsec protocol of an SA.
type Proto uint8

// IPsec protocols.
const (
	ESP Proto = iota + 1 // Encapsulating Security Payload (RFC 4303)
	AH                   // Authentication Header (RFC 4302)
)

// String returns "esp" or "ah", as written in a spec.
func (p Proto) String() string {
	switch p {
	case ESP:
		return "esp"
	case AH:
		return "ah"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Spec is a parsed and validated SA spec. Keys are copies owned by the Spec.
type Spec struct {
	SPI   uint32
	Proto Proto
	// Enc is the ESP encryption transform; nil for AH.
	Enc *xform.Enc
	// Key is the encryption keying material (AEAD and GMAC: key then 4-byte
	// salt); empty for enc=null and AH.
	Key []byte
	// Integ is the integrity transform: for ESP with a CBC or null cipher,
	// and for AH; nil for ESP combined modes.
	Integ *xform.Integ
	// AuthKey is the integrity key (GMAC: AES key then 4-byte salt).
	AuthKey []byte
	// ESN selects 64-bit Extended Sequence Numbers.
	ESN bool
	// Window is the anti-replay window in packets; 0 disables anti-replay.
	Window int
	// Seq is the first sequence number to send (at least 1).
	Seq uint64
}

// Error is a spec that failed to parse or validate: Key names the spec key
// at fault ("" for the spec as a whole) and Msg says what was expected.
type Error struct {
	Key string
	Msg string
}

// Error returns "sa spec: KEY: MSG".
func (e *Error) Error() string {
	if e.Key == "" {
		return "sa spec: " + e.Msg
	}
	return "sa spec: " + e.Key + ": " + e.Msg
}

func errf(key, format string, args ...any) *Error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// keyOrder lists the keys a spec may hold, in the order String writes them.
var keyOrder = []string{"spi", "proto", "enc", "key", "integ", "authkey", "esn", "window", "seq"}

// Parse parses and validates an SA spec: comma-separated key=value items
// (spi, proto, enc, key, integ, authkey, window, seq) and the flag esn.
func Parse(s string) (*Spec, error) {
	vals := make(map[string]string, len(keyOrder))
	if strings.TrimSpace(s) == "" {
		return nil, errf("", "empty; want e.g. spi=0x1234,proto=esp,enc=aes128gcm16,key=0x<40 hex digits>")
	}
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, errf("", "item %d is empty (stray comma?)", i+1)
		}
		k, v, hasValue := strings.Cut(item, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if !known(k) {
			if !hasValue {
				// Do not echo it: it may be key material missing its "key=".
				return nil, errf("", "item %d: want key=value", i+1)
			}
			return nil, errf("", "unknown key %q (want one of %s)", clip(k), strings.Join(keyOrder, ", "))
		}
		if _, dup := vals[k]; dup {
			return nil, errf(k, "given twice")
		}
		if k == "esn" {
			if hasValue {
				b, err := parseBool(v)
				if err != nil {
					return nil, errf(k, "want esn (or esn=yes / esn=no), got %q", clip(v))
				}
				v = strconv.FormatBool(b)
			} else {
				v = "true"
			}
		} else if !hasValue || v == "" {
			return nil, errf(k, "missing value (want %s=...)", k)
		}
		vals[k] = v
	}
	return build(vals)
}

func known(k string) bool {
	for _, n := range keyOrder {
		if n == k {
			return true
		}
	}
	return false
}

// clip shortens user input echoed in messages.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "on":
		return true, nil
	case "no", "off":
		return false, nil
	}
	return strconv.ParseBool(v)
}

func build(vals map[string]string) (*Spec, error) {
	sp := &Spec{Window: replay.DefaultSize, Seq: 1}

	// spi
	v, ok := vals["spi"]
	if !ok {
		return nil, errf("spi", "missing (want spi=0x... from 0x100 to 0xffffffff)")
	}
	n, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return nil, errf("spi", "want a number from 256 to 4294967295 (e.g. 0x1234), got %q", clip(v))
	}
	if n < 256 {
		return nil, errf("spi", "%#x is reserved (0 to 255); want 256 (0x100) or more", n)
	}
	sp.SPI = uint32(n)

	// proto
	switch v, ok := vals["proto"]; {
	case !ok:
		return nil, errf("proto", "missing (want proto=esp or proto=ah)")
	case strings.EqualFold(v, "esp"):
		sp.Proto = ESP
	case strings.EqualFold(v, "ah"):
		sp.Proto = AH
	default:
		return nil, errf("proto", "want esp or ah, got %q", clip(v))
	}

	// esn
	sp.ESN = vals["esn"] == "true"

	// window
	if v, ok := vals["window"]; ok {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n > replay.MaxSize {
			return nil, errf("window", "want a number of packets from 0 (anti-replay off) to %d, got %q", replay.MaxSize, clip(v))
		}
		sp.Window = int(n)
	}

	// seq
	if v, ok := vals["seq"]; ok {
		max := uint64(math.MaxUint32)
		if sp.ESN {
			max = math.MaxUint64
		}
		n, err := strconv.ParseUint(v, 0, 64)
		if err != nil || n < 1 || n > max {
			hint := ""
			if !sp.ESN && err == nil && n > max {
				hint = " (larger values need esn)"
			}
			return nil, errf("seq", "want a first sequence number from 1 to %d%s, got %q", max, hint, clip(v))
		}
		sp.Seq = n
	}

	if sp.Proto == AH {
		err = sp.buildAH(vals)
	} else {
		err = sp.buildESP(vals)
	}
	if err != nil {
		return nil, err
	}
	return sp, nil
}

func (sp *Spec) buildESP(vals map[string]string) error {
	v, ok := vals["enc"]
	if !ok {
		return errf("enc", "missing: proto=esp needs enc=... (one of %s)", encNames())
	}
	enc, err := xform.LookupEnc(v)
	if err != nil {
		if ig, ierr := xform.LookupInteg(v); ierr == nil && !ig.GMAC {
			return errf("enc", "%q is an integrity algorithm; want integ=%s with an encryption algorithm (one of %s)", clip(v), ig.Name, encNames())
		}
		return errf("enc", "unknown algorithm %q (want one of %s)", clip(v), encNames())
	}
	sp.Enc = enc

	switch enc.Kind {
	case xform.KindAEAD, xform.KindGMAC:
		if _, ok := vals["integ"]; ok {
			return errf("integ", "not allowed with enc=%s, a combined-mode algorithm with its own ICV", enc.Name)
		}
		if _, ok := vals["authkey"]; ok {
			return errf("authkey", "not allowed with enc=%s, a combined-mode algorithm keyed by key= alone", enc.Name)
		}
	case xform.KindCBC, xform.KindNull:
		v, ok := vals["integ"]
		if !ok {
			return errf("integ", "missing: enc=%s needs an integrity algorithm (one of %s)", enc.Name, integNames(false))
		}
		ig, err := xform.LookupInteg(v)
		if err != nil {
			return errf("integ", "unknown algorithm %q (want one of %s)", clip(v), integNames(false))
		}
		if ig.GMAC {
			if enc.Kind == xform.KindNull {
				return errf("integ", "%s is not an ESP integrity algorithm; for ESP with AES-GMAC (ENCR_NULL_AUTH_AES_GMAC) write enc=%s,key=0x<%d hex digits> without integ", ig.Name, ig.Name, 2*ig.KeyLen)
			}
			return errf("integ", "%s is not an ESP integrity algorithm (want one of %s); AES-GMAC is ESP's enc=%s, integrity only", ig.Name, integNames(false), ig.Name)
		}
		sp.Integ = ig
	default:
		return errf("enc", "%s: not supported", enc.Name)
	}

	// key
	kv, ok := vals["key"]
	switch {
	case enc.KeyLen() == 0 && ok:
		return errf("key", "not allowed with enc=%s, which takes no key", enc.Name)
	case enc.KeyLen() == 0:
	case !ok:
		return errf("key", "missing: enc=%s wants %s", enc.Name, encKeyWant(enc))
	default:
		k, err := parseHex("key", kv)
		if err != nil {
			return err
		}
		if len(k) != enc.KeyLen() {
			return errf("key", "enc=%s wants %s, got %d bytes", enc.Name, encKeyWant(enc), len(k))
		}
		sp.Key = k
	}
	return sp.parseAuthKey(vals)
}

// buildAH validates an AH spec (AHConfig builds the engine's
// configuration from it).
func (sp *Spec) buildAH(vals map[string]string) error {
	if _, ok := vals["enc"]; ok {
		return errf("enc", "not allowed with proto=ah: AH authenticates only (want integ=... and authkey=...)")
	}
	if _, ok := vals["key"]; ok {
		return errf("key", "not allowed with proto=ah: AH's key is authkey=")
	}
	v, ok := vals["integ"]
	if !ok {
		return errf("integ", "missing: proto=ah needs integ=... (one of %s)", integNames(true))
	}
	ig, err := xform.LookupInteg(v)
	if err != nil {
		return errf("integ", "unknown algorithm %q (want one of %s)", clip(v), integNames(true))
	}
	sp.Integ = ig
	return sp.parseAuthKey(vals)
}

func (sp *Spec) parseAuthKey(vals map[string]string) error {
	v, ok := vals["authkey"]
	if sp.Integ == nil {
		if ok {
			return errf("authkey", "given without integ")
		}
		return nil
	}
	if !ok {
		return errf("authkey", "missing: integ=%s wants %s", sp.Integ.Name, integKeyWant(sp.Integ))
	}
	k, err := parseHex("authkey", v)
	if err != nil {
		return err
	}
	if len(k) != sp.Integ.KeyLen {
		return errf("authkey", "integ=%s wants %s, got %d bytes", sp.Integ.Name, integKeyWant(sp.Integ), len(k))
	}
	sp.AuthKey = k
	return nil
}

func encKeyWant(e *xform.Enc) string {
	if e.SaltLen > 0 {
		return fmt.Sprintf("%d bytes (%d-byte key + %d-byte salt, 0x and %d hex digits)", e.KeyLen(), e.KeyBits/8, e.SaltLen, 2*e.KeyLen())
	}
	return fmt.Sprintf("%d bytes (0x and %d hex digits)", e.KeyLen(), 2*e.KeyLen())
}

func integKeyWant(i *xform.Integ) string {
	if i.GMAC {
		return fmt.Sprintf("%d bytes (%d-byte key + 4-byte salt, 0x and %d hex digits)", i.KeyLen, i.KeyLen-4, 2*i.KeyLen)
	}
	return fmt.Sprintf("%d bytes (0x and %d hex digits)", i.KeyLen, 2*i.KeyLen)
}

// parseHex decodes "0x<hex>" without echoing the value in errors.
func parseHex(key, v string) ([]byte, error) {
	if len(v) < 2 || v[0] != '0' || (v[1] != 'x' && v[1] != 'X') {
		return nil, errf(key, "want 0x followed by hex digits")
	}
	h := v[2:]
	if len(h) == 0 {
		return nil, errf(key, "no hex digits after 0x")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return nil, errf(key, "not a hex digit at position %d after 0x", i+1)
		}
	}
	if len(h)%2 != 0 {
		return nil, errf(key, "odd number of hex digits (%d)", len(h))
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, errf(key, "bad hex")
	}
	return b, nil
}

func encNames() string {
	var n []string
	for _, e := range xform.Encs() {
		n = append(n, e.Name)
	}
	return strings.Join(n, ", ")
}

// integNames lists the integrity algorithms; GMAC ones only for AH.
func integNames(ah bool) string {
	var n []string
	for _, i := range xform.Integs() {
		if i.GMAC && !ah {
			continue
		}
		n = append(n, i.Name)
	}
	return strings.Join(n, ", ")
}

// String writes the spec back in spec syntax without its keys, for logs:
// e.g. "spi=0x00001234,proto=esp,enc=aes128gcm16,esn".
func (sp *Spec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "spi=0x%08x,proto=%s", sp.SPI, sp.Proto)
	if sp.Enc != nil {
		b.WriteString(",enc=" + sp.Enc.Name)
	}
	if sp.Integ != nil {
		b.WriteString(",integ=" + sp.Integ.Name)
	}
	if sp.ESN {
		b.WriteString(",esn")
	}
	if sp.Window != replay.DefaultSize {
		fmt.Fprintf(&b, ",window=%d", sp.Window)
	}
	if sp.Seq != 1 {
		fmt.Fprintf(&b, ",seq=%d", sp.Seq)
	}
	return b.String()
}

// ESPConfig returns the esp.Config for an ESP spec, with copies of the keys.
func (sp *Spec) ESPConfig() (*esp.Config, error) {
	if sp.Proto != ESP {
		return nil, fmt.Errorf("saspec: spi %#x: proto=%s has no ESP configuration", sp.SPI, sp.Proto)
	}
	if sp.Enc == nil {
		return nil, fmt.Errorf("saspec: spi %#x: no encryption algorithm", sp.SPI)
	}
	w := sp.Window
	if w == 0 {
		w = -1 // esp: negative disables anti-replay, 0 means the default
	}
	return &esp.Config{
		SPI:          sp.SPI,
		Enc:          sp.Enc,
		EncKey:       clone(sp.Key),
		Integ:        sp.Integ,
		IntegKey:     clone(sp.AuthKey),
		ESN:          sp.ESN,
		ReplayWindow: w,
		NextSeq:      sp.Seq,
	}, nil
}

// AHConfig returns the ah.Config for an AH spec, with a copy of the key.
func (sp *Spec) AHConfig() (*ah.Config, error) {
	if sp.Proto != AH {
		return nil, fmt.Errorf("saspec: spi %#x: proto=%s has no AH configuration", sp.SPI, sp.Proto)
	}
	if sp.Integ == nil {
		return nil, fmt.Errorf("saspec: spi %#x: no integrity algorithm", sp.SPI)
	}
	w := sp.Window
	if w == 0 {
		w = -1 // ah: negative disables anti-replay, 0 means the default
	}
	return &ah.Config{
		SPI:          sp.SPI,
		Integ:        sp.Integ,
		IntegKey:     clone(sp.AuthKey),
		ESN:          sp.ESN,
		ReplayWindow: w,
		NextSeq:      sp.Seq,
	}, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// Zero overwrites the spec's keys; the spec must not be used afterwards.
func (sp *Spec) Zero() {
	clear(sp.Key)
	clear(sp.AuthKey)
}
