package ah

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/xform"
)

// scapyNames maps our algorithms to scapy's names; the GMAC ones are added
// by testdata/scapy_ah.py (scapy 2.5 has no AES-GMAC for AH).
var scapyNames = map[string]string{
	"sha1":       "HMAC-SHA1-96",
	"sha256":     "SHA2-256-128",
	"sha384":     "SHA2-384-192",
	"sha512":     "SHA2-512-256",
	"md5":        "HMAC-MD5-96",
	"aes128gmac": "AES-GMAC-128",
	"aes192gmac": "AES-GMAC-192",
	"aes256gmac": "AES-GMAC-256",
}

// scapyPython returns a python with scapy and cryptography, or skips.
func scapyPython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("GOIPSEC_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if out, err := exec.Command(py, "-c", "import scapy.layers.ipsec, cryptography.hazmat.primitives.ciphers.aead").CombinedOutput(); err != nil {
		t.Skipf("skipping the scapy cross-check: %s cannot import scapy and cryptography (install python3-scapy and python3-cryptography, or set GOIPSEC_PYTHON): %v %s",
			py, err, bytes.TrimSpace(out))
	}
	return py
}

type pyReq struct {
	Op     string `json:"op"`
	Alg    string `json:"alg"`
	Key    string `json:"key"`
	SPI    uint32 `json:"spi"`
	Seq    uint32 `json:"seq"`
	ESNEn  bool   `json:"esn_en"`
	ESN    uint32 `json:"esn"`
	Tunnel string `json:"tunnel"`
	Pkt    string `json:"pkt"`
}

type pyResp struct {
	OK  bool   `json:"ok"`
	Pkt string `json:"pkt"`
	Err string `json:"err"`
}

// runScapy sends the requests to testdata/scapy_ah.py in one process.
func runScapy(t *testing.T, py string, reqs []pyReq) []pyResp {
	t.Helper()
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for i := range reqs {
		if err := enc.Encode(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/scapy_ah.py")
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scapy_ah.py: %v\n%s", err, stderr.Bytes())
	}
	var resps []pyResp
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r pyResp
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("scapy_ah.py answer %q: %v", sc.Bytes(), err)
		}
		resps = append(resps, r)
	}
	if len(resps) != len(reqs) {
		t.Fatalf("scapy_ah.py answered %d of %d requests\n%s", len(resps), len(reqs), stderr.Bytes())
	}
	return resps
}

// xcase is one combination of the cross-check.
type xcase struct {
	alg  string
	v    variant
	mode Mode
	esn  bool
}

func (c xcase) String() string {
	return fmt.Sprintf("%s/%s/%v/esn=%v", c.alg, c.v.name, c.mode, c.esn)
}

// mutation is a change to a sealed packet and whether it must still verify.
type mutation struct {
	name    string
	f       func(p []byte)
	mutable bool
}

// mutations lists, for a sealed packet of variant v, changes to mutable
// fields (which must verify) and to immutable ones (which must not).
func mutations(v variant, mode Mode, p []byte) []mutation {
	ahOff, _, _ := Locate(p)
	ms := []mutation{
		{"payload", func(p []byte) { p[len(p)-1] ^= 0x80 }, false},
		{"AH sequence number", func(p []byte) { p[ahOff+11] ^= 1 }, false},
		{"source address", func(p []byte) {
			if p[0]>>4 == 4 {
				p[13] ^= 1
			} else {
				p[9] ^= 1
			}
		}, false},
	}
	if p[0]>>4 == 4 {
		ms = append(ms,
			mutation{"TTL", func(p []byte) { p[8] -= 3; fixSum(p) }, true},
			mutation{"TOS", func(p []byte) { p[1] = 0xb8 | 0x03; fixSum(p) }, true}, // EF, ECN CE
			mutation{"DF", func(p []byte) { p[6] ^= 0x40; fixSum(p) }, true},
			mutation{"stale checksum", func(p []byte) { p[10] ^= 0x55 }, true},
		)
		if v.name == "v4opts" {
			ms = append(ms,
				mutation{"record route data", func(p []byte) { copy(p[27:31], []byte{10, 0, 0, 1}); p[26] = 8; fixSum(p) }, true},
				mutation{"router alert data", func(p []byte) { p[23] ^= 1; fixSum(p) }, false},
			)
		}
	} else {
		ms = append(ms,
			mutation{"hop limit", func(p []byte) { p[7] -= 5 }, true},
			mutation{"traffic class", func(p []byte) { p[0] ^= 0x0b; p[1] ^= 0x70 }, true},
			mutation{"flow label", func(p []byte) { p[1] ^= 0x0f; p[2] ^= 0xff; p[3] ^= 0x01 }, true},
		)
		if v.name == "v6ext" {
			ms = append(ms,
				mutation{"hop-by-hop mutable option data", func(p []byte) { p[40+8] ^= 0xff; p[40+11] ^= 1 }, true},
				mutation{"hop-by-hop router alert data", func(p []byte) { p[40+5] ^= 1 }, false},
				mutation{"destination option data", func(p []byte) { p[56+5] ^= 1 }, false},
				mutation{"routing header address", func(p []byte) { p[64+8+3] ^= 1 }, false},
			)
		}
	}
	return ms
}

func fixSum(p []byte) {
	p[10], p[11] = 0, 0
	var s uint32
	for i := 0; i < int(p[0]&0xf)*4; i += 2 {
		s += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	binary.BigEndian.PutUint16(p[10:12], ^uint16(s))
}

// TestScapyCrossCheck checks goipsec against scapy's AH implementation
// (and, for AES-GMAC, an RFC 4543 implementation over scapy and
// cryptography's AESGCM): for every algorithm, both modes, IPv4 with and
// without options and IPv6 with and without extension headers (a
// Hop-by-Hop header with a mutable option, Destination Options and a type
// 0 routing header), with and without ESN:
//   - with the same key and sequence number both produce the same bytes;
//   - scapy verifies and decapsulates what goipsec sealed, also after
//     changes to mutable fields, and rejects changes to immutable ones;
//   - goipsec verifies and decapsulates what scapy sealed, also after a
//     change to any mutable byte, and rejects a change to any other byte.
func TestScapyCrossCheck(t *testing.T) {
	py := scapyPython(t)
	var cases []xcase
	for _, alg := range algs {
		for _, v := range variants {
			for _, mode := range []Mode{Transport, Tunnel} {
				for _, esn := range []bool{false, true} {
					cases = append(cases, xcase{alg, v, mode, esn})
				}
			}
		}
	}
	type plan struct {
		c          xcase
		key        []byte
		p          []byte // cleartext packet
		want       []byte // what decapsulation gives at the receiver
		sealed     []byte // by goipsec, with the sequence number scapy uses
		delivered  []byte // sealed by goipsec with its own sequence number, as it arrives
		muts       []mutation
		first      int // index of the first request of this case
		highBits   uint32
		scapySeqLo uint32
	}
	var plans []*plan
	var reqs []pyReq
	for i, c := range cases {
		ig, err := xform.LookupInteg(c.alg)
		if err != nil {
			t.Fatal(err)
		}
		pl := &plan{c: c, key: randBytes(t, ig.KeyLen), first: len(reqs), scapySeqLo: 9}
		if c.esn {
			pl.highBits = 1
		}
		n := 160 + 7*i%100
		pl.p = c.v.inner(n)
		pl.want = pl.p
		if c.mode == Transport {
			pl.want = traverse(pl.p)
		}
		spi := uint32(0x10000 + i)
		cfg := Config{SPI: spi, Integ: ig, IntegKey: pl.key, ESN: c.esn, NextSeq: uint64(pl.highBits)<<32 | uint64(pl.scapySeqLo)}
		same, err := NewSA(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		var outer []byte
		if c.mode == Tunnel {
			outer = c.v.outer
		}
		pl.sealed = sealPkt(t, same, c.mode, pl.p, outer)
		cfg.NextSeq = uint64(pl.highBits)<<32 | 77
		out, err := NewSA(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		pl.delivered = traverse(sealPkt(t, out, c.mode, pl.p, outer))
		pl.muts = mutations(c.v, c.mode, pl.delivered)
		base := pyReq{Alg: scapyNames[c.alg], Key: hex.EncodeToString(pl.key), SPI: spi, ESNEn: c.esn, ESN: pl.highBits}
		// 0: scapy seals.
		r := base
		r.Op, r.Seq, r.Pkt = "seal", pl.scapySeqLo, hex.EncodeToString(pl.p)
		if c.mode == Tunnel {
			r.Tunnel = hex.EncodeToString(outer)
		}
		reqs = append(reqs, r)
		// 1: scapy opens what goipsec sealed; 2...: mutated copies.
		r.Op, r.Pkt = "open", hex.EncodeToString(pl.delivered)
		reqs = append(reqs, r)
		for _, m := range pl.muts {
			q := append([]byte(nil), pl.delivered...)
			m.f(q)
			r.Pkt = hex.EncodeToString(q)
			reqs = append(reqs, r)
		}
		plans = append(plans, pl)
	}
	resps := runScapy(t, py, reqs)

	for _, pl := range plans {
		t.Run(pl.c.String(), func(t *testing.T) {
			ig, _ := xform.LookupInteg(pl.c.alg)
			spi := reqs[pl.first].SPI
			// scapy's packet, byte for byte.
			r := resps[pl.first]
			if !r.OK {
				t.Fatalf("scapy seal: %s", r.Err)
			}
			byScapy, _ := hex.DecodeString(r.Pkt)
			if !bytes.Equal(byScapy, pl.sealed) {
				t.Errorf("scapy and goipsec seal differently:\nscapy   %x\ngoipsec %x", byScapy, pl.sealed)
			}
			// scapy opens goipsec's packets.
			r = resps[pl.first+1]
			if !r.OK {
				t.Errorf("scapy rejects goipsec's packet: %s", r.Err)
			} else if got, _ := hex.DecodeString(r.Pkt); !bytes.Equal(got, pl.want) {
				t.Errorf("scapy decapsulates goipsec's packet to\n%x\nwant\n%x", got, pl.want)
			}
			for j, m := range pl.muts {
				r := resps[pl.first+2+j]
				switch {
				case m.mutable && !r.OK:
					t.Errorf("scapy rejects goipsec's packet with %s changed (mutable): %s", m.name, r.Err)
				case !m.mutable && r.OK:
					t.Errorf("scapy accepts goipsec's packet with %s changed (immutable)", m.name)
				case !m.mutable && r.Err != "integrity":
					t.Errorf("scapy on %s changed: %s", m.name, r.Err)
				}
			}
			// goipsec opens scapy's packet, as it arrives.
			cfg := Config{SPI: spi, Integ: ig, IntegKey: pl.key, ESN: pl.c.esn}
			in, err := NewSA(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			cfg.ReplayWindow = -1
			inFlip, err := NewSA(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			if pl.c.esn { // receivers that have seen sequence numbers past 2^32
				if err := in.Window().Accept(1<<32 + 1); err != nil {
					t.Fatal(err)
				}
				if err := inFlip.Window().Accept(1<<32 + 1); err != nil {
					t.Fatal(err)
				}
			}
			arrived := traverse(byScapy)
			got, err := openPkt(in, pl.c.mode, arrived)
			if err != nil {
				t.Fatalf("goipsec rejects scapy's packet: %v", err)
			}
			if !bytes.Equal(got, pl.want) {
				t.Fatalf("goipsec decapsulates scapy's packet to\n%x\nwant\n%x", got, pl.want)
			}
			for _, m := range mutations(pl.c.v, pl.c.mode, arrived) {
				q := append([]byte(nil), arrived...)
				m.f(q)
				buf, off, end := bufWith(q)
				_, err := inFlip.Open(buf, off, end)
				if m.mutable && err != nil {
					t.Errorf("goipsec rejects scapy's packet with %s changed (mutable): %v", m.name, err)
				}
				if !m.mutable && err == nil {
					t.Errorf("goipsec accepts scapy's packet with %s changed (immutable)", m.name)
				}
			}
			checkFlips(t, inFlip, arrived)
		})
	}
}
