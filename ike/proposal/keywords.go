package proposal

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/internal/xform"
)

// ikeEncrAliases maps other spellings strongSwan accepts for IKE encryption
// to the canonical keyword.
var ikeEncrAliases = map[string]string{
	"aes": "aes128", "aes128cbc": "aes128", "aes192cbc": "aes192", "aes256cbc": "aes256", "3descbc": "3des",
	"aes128gcm": "aes128gcm16", "aes192gcm": "aes192gcm16", "aes256gcm": "aes256gcm16",
	"aes128gcm64": "aes128gcm8", "aes192gcm64": "aes192gcm8", "aes256gcm64": "aes256gcm8",
	"aes128gcm96": "aes128gcm12", "aes192gcm96": "aes192gcm12", "aes256gcm96": "aes256gcm12",
	"aes128gcm128": "aes128gcm16", "aes192gcm128": "aes192gcm16", "aes256gcm128": "aes256gcm16",
}

// espEncrAliases are spellings internal/xform does not know.
var espEncrAliases = map[string]string{
	"aes": "aes128", "aes128gcm": "aes128gcm16", "aes192gcm": "aes192gcm16", "aes256gcm": "aes256gcm16",
}

var integAliases = map[string]string{"sha": "sha1"}

var keAliases = map[string]string{"curve25519": "x25519"}

// integToPRF is the PRF strongSwan assumes for an IKE proposal without one.
var integToPRF = map[xform.IntegID]ikecrypto.PRFID{
	xform.AuthHMACSHA196:    ikecrypto.PRFHMACSHA1,
	xform.AuthHMACSHA256128: ikecrypto.PRFHMACSHA256,
	xform.AuthHMACSHA384192: ikecrypto.PRFHMACSHA384,
	xform.AuthHMACSHA512256: ikecrypto.PRFHMACSHA512,
}

func ikeEncr(name string) *ikecrypto.Encr {
	if a, ok := ikeEncrAliases[name]; ok {
		name = a
	}
	for _, e := range ikecrypto.Encrs() {
		if e.Name == name {
			return e
		}
	}
	return nil
}

func espEncr(name string) *xform.Enc {
	if a, ok := espEncrAliases[name]; ok {
		name = a
	}
	e, err := xform.LookupEnc(name)
	if err != nil {
		return nil
	}
	return e
}

func integ(name string) *xform.Integ {
	if a, ok := integAliases[name]; ok {
		name = a
	}
	i, err := xform.LookupInteg(name)
	if err != nil {
		return nil
	}
	return i
}

func prfByName(name string) *ikecrypto.PRF {
	for _, p := range ikecrypto.PRFs() {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// keByName returns the method for a keyword; ok with id 0 for "none".
func keByName(name string) (kex.ID, bool) {
	if name == "none" || name == "modpnone" {
		return kex.None, true
	}
	if a, ok := keAliases[name]; ok {
		name = a
	}
	for _, m := range kex.Methods() {
		if m.Name == name {
			return m.ID, true
		}
	}
	return 0, false
}

// parseToken turns one keyword into a transform for protocol proto.
func parseToken(proto message.ProtocolID, tok string) (message.Transform, error) {
	name := strings.ToLower(tok)
	ketype := message.TransformKE
	if len(name) > 4 && name[0] == 'k' && name[1] == 'e' && name[3] == '_' && name[2] >= '1' && name[2] <= '7' {
		ketype = message.TransformAddKE1 + message.TransformType(name[2]-'1')
		id, ok := keByName(name[4:])
		if !ok {
			return message.Transform{}, fmt.Errorf("proposal: unknown key exchange method %q in %q", name[4:], tok)
		}
		return message.Transform{Type: ketype, ID: uint16(id)}, nil
	}
	switch name {
	case "esn":
		return message.Transform{Type: message.TransformESN, ID: message.ESNUsed}, nil
	case "noesn":
		return message.Transform{Type: message.TransformESN, ID: message.ESNNone}, nil
	}
	if proto == message.ProtoAH {
		if i := integ(name); i != nil {
			return message.Transform{Type: message.TransformInteg, ID: uint16(i.ID)}, nil
		}
	}
	if proto == message.ProtoIKE {
		if e := ikeEncr(name); e != nil {
			return encrTransform(uint16(e.ID), e.KeyBits, e.KeyAttr), nil
		}
	} else if e := espEncr(name); e != nil {
		if proto == message.ProtoAH {
			return message.Transform{}, fmt.Errorf("proposal: encryption algorithm %q in an AH proposal", tok)
		}
		return encrTransform(uint16(e.ID), e.KeyBits, espKeyAttr(e)), nil
	}
	if i := integ(name); i != nil && !i.GMAC {
		return message.Transform{Type: message.TransformInteg, ID: uint16(i.ID)}, nil
	}
	if p := prfByName(name); p != nil {
		return message.Transform{Type: message.TransformPRF, ID: uint16(p.ID)}, nil
	}
	if id, ok := keByName(name); ok {
		return message.Transform{Type: message.TransformKE, ID: uint16(id)}, nil
	}
	return message.Transform{}, fmt.Errorf("proposal: algorithm %q not recognized", tok)
}

// espKeyAttr reports whether an ESP encryption transform carries a Key
// Length attribute: the AES modes do; ChaCha20-Poly1305, 3DES and NULL have
// a fixed key length.
func espKeyAttr(e *xform.Enc) bool {
	switch e.ID {
	case xform.EncrChaCha20Poly1305, xform.EncrDES3, xform.EncrNull:
		return false
	}
	return true
}

func encrTransform(id uint16, bits int, attr bool) message.Transform {
	t := message.Transform{Type: message.TransformEncr, ID: id}
	if attr {
		t.KeyLength = uint16(bits)
	}
	return t
}

// keyword returns the strongSwan keyword for a transform of a proposal of
// protocol proto, or a descriptive placeholder for an unknown one.
func keyword(proto message.ProtocolID, t message.Transform) string {
	unknown := func() string {
		s := fmt.Sprintf("%v_%d", t.Type, t.ID)
		if t.KeyLength != 0 {
			s += "_" + strconv.Itoa(int(t.KeyLength))
		}
		return strings.ToUpper(s)
	}
	switch {
	case t.Type == message.TransformEncr:
		if proto == message.ProtoIKE {
			if e, err := ikecrypto.LookupEncr(xform.EncID(t.ID), t.KeyLength); err == nil {
				return e.Name
			}
		} else if e := lookupESPEnc(xform.EncID(t.ID), t.KeyLength); e != nil {
			return e.Name
		}
	case t.Type == message.TransformInteg:
		if i := lookupInteg(xform.IntegID(t.ID)); i != nil {
			return i.Name
		}
	case t.Type == message.TransformPRF:
		if p, err := ikecrypto.LookupPRF(ikecrypto.PRFID(t.ID)); err == nil {
			return p.Name
		}
	case t.Type.IsKE():
		name := "none"
		if t.ID != 0 {
			m, err := kex.Lookup(kex.ID(t.ID))
			if err != nil {
				return unknown()
			}
			name = m.Name
		}
		if t.Type != message.TransformKE {
			name = fmt.Sprintf("ke%d_%s", t.Type-message.TransformAddKE1+1, name)
		}
		return name
	case t.Type == message.TransformESN:
		switch t.ID {
		case message.ESNNone:
			return "noesn"
		case message.ESNUsed:
			return "esn"
		}
	}
	return unknown()
}

// lookupESPEnc finds the ESP/AH encryption transform for an ID and Key
// Length attribute.
func lookupESPEnc(id xform.EncID, keyBits uint16) *xform.Enc {
	for _, e := range xform.Encs() {
		if e.ID != id {
			continue
		}
		if int(keyBits) == e.KeyBits || (keyBits == 0 && !espKeyAttr(e)) {
			return e
		}
	}
	return nil
}

// lookupInteg finds an integrity transform by ID in internal/xform.
func lookupInteg(id xform.IntegID) *xform.Integ {
	for _, i := range xform.Integs() {
		if i.ID == id {
			return i
		}
	}
	return nil
}
