package message

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"
)

// Distinguished names (ID_DER_ASN1_DN) in strongSwan's syntax.

// dn attribute types by strongSwan's names.
var dnTypes = []struct {
	name string
	oid  asn1.ObjectIdentifier
}{
	{"C", asn1.ObjectIdentifier{2, 5, 4, 6}}, {"ST", asn1.ObjectIdentifier{2, 5, 4, 8}},
	{"L", asn1.ObjectIdentifier{2, 5, 4, 7}}, {"O", asn1.ObjectIdentifier{2, 5, 4, 10}},
	{"OU", asn1.ObjectIdentifier{2, 5, 4, 11}}, {"CN", asn1.ObjectIdentifier{2, 5, 4, 3}},
	{"SN", asn1.ObjectIdentifier{2, 5, 4, 4}}, {"serialNumber", asn1.ObjectIdentifier{2, 5, 4, 5}},
	{"T", asn1.ObjectIdentifier{2, 5, 4, 12}}, {"G", asn1.ObjectIdentifier{2, 5, 4, 42}},
	{"dnQualifier", asn1.ObjectIdentifier{2, 5, 4, 46}}, {"UID", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}},
	{"DC", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}},
	{"E", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}},
}

// ParseDN reads a distinguished name as strongSwan writes it, "C=CH,
// O=Org, CN=name" (RDNs in order, separated by ',' or '/'; a '\' escapes
// the next character), and returns its DER encoding.
func ParseDN(s string) ([]byte, error) {
	var rdns pkix.RDNSequence
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == ',' || (c == '/' && i > 0):
			parts = append(parts, cur.String())
			cur.Reset()
		case c == '/' && i == 0:
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, cur.String())
	for _, part := range parts {
		typ, val, ok := strings.Cut(part, "=")
		typ, val = strings.TrimSpace(typ), strings.TrimSpace(val)
		if !ok || typ == "" || val == "" {
			return nil, fmt.Errorf("distinguished name %q: want type=value, got %q", s, part)
		}
		var oid asn1.ObjectIdentifier
		for _, t := range dnTypes {
			if strings.EqualFold(t.name, typ) {
				oid = t.oid
			}
		}
		if oid == nil {
			return nil, fmt.Errorf("distinguished name %q: unknown attribute type %q", s, typ)
		}
		v := any(val)
		if oid.Equal(dnTypes[len(dnTypes)-1].oid) {
			v = asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(val)}
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: v}})
	}
	der, err := asn1.Marshal(rdns)
	if err != nil {
		return nil, fmt.Errorf("distinguished name %q: %w", s, err)
	}
	return der, nil
}

// DNEqual compares two DER distinguished names as strongSwan does: the
// same attribute types in the same order with values equal regardless of
// case and string type.
func DNEqual(a, b []byte) bool { return dnCompare(a, b, false) }

// DNMatch is DNEqual where a value "*" of pattern matches any value of its
// attribute (strongSwan's wildcards: "C=CH, O=Org, CN=*").
func DNMatch(pattern, dn []byte) bool { return dnCompare(pattern, dn, true) }

func dnCompare(a, b []byte, wild bool) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var ra, rb pkix.RDNSequence
	if rest, err := asn1.Unmarshal(a, &ra); err != nil || len(rest) != 0 {
		return false
	}
	if rest, err := asn1.Unmarshal(b, &rb); err != nil || len(rest) != 0 {
		return false
	}
	if len(ra) != len(rb) {
		return false
	}
	for i := range ra {
		if len(ra[i]) != len(rb[i]) {
			return false
		}
		for j := range ra[i] {
			x, y := ra[i][j], rb[i][j]
			xv := attrString(x.Value)
			if !x.Type.Equal(y.Type) || !(wild && xv == "*") && !strings.EqualFold(xv, attrString(y.Value)) {
				return false
			}
		}
	}
	return true
}

func attrString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case asn1.RawValue:
		return string(x.Bytes)
	}
	return fmt.Sprint(v)
}

// FormatDN formats a DER distinguished name as strongSwan prints it
// ("C=CH, O=Org, CN=name"); an empty or malformed one as hex.
func FormatDN(der []byte) string {
	if s, ok := formatDN(der); ok {
		return s
	}
	return fmt.Sprintf("%x", der)
}

func formatDN(der []byte) (string, bool) {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdns); err != nil || len(rest) != 0 || len(rdns) == 0 {
		return "", false
	}
	var parts []string
	for _, rdn := range rdns {
		for _, atv := range rdn {
			name := atv.Type.String()
			for _, t := range dnTypes {
				if t.oid.Equal(atv.Type) {
					name = t.name
				}
			}
			parts = append(parts, name+"="+attrString(atv.Value))
		}
	}
	return strings.Join(parts, ", "), true
}
