package pcaptool

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
)

// scapyAH are scapy's names for the AH integrity algorithms; the AES-GMAC
// ones are defined by testdata/scapy_ah.py (scapy 2.5 has none for AH).
var scapyAH = map[string]string{
	"sha256": "SHA2-256-128", "sha384": "SHA2-384-192", "sha512": "SHA2-512-256",
	"sha1": "HMAC-SHA1-96", "md5": "HMAC-MD5-96",
	"aes128gmac": "AES-GMAC-128", "aes192gmac": "AES-GMAC-192", "aes256gmac": "AES-GMAC-256",
}

// pythonAH returns the interpreter with scapy and cryptography (for the
// AES-GMAC oracle), or skips the test.
func pythonAH(t *testing.T) string {
	t.Helper()
	py := python(t)
	if out, err := exec.Command(py, "-c", "import cryptography.hazmat.primitives.ciphers.aead").CombinedOutput(); err != nil {
		t.Skipf("skipping scapy AH cross-check: %s cannot import cryptography (apt-get install python3-cryptography): %v %s", py, err, bytes.TrimSpace(out))
	}
	return py
}

type scapyAHJob struct {
	SPI  uint32 `json:"spi"`
	Seq  uint64 `json:"seq"`
	Alg  string `json:"alg"`
	Key  string `json:"key"`
	ESN  bool   `json:"esn"`
	TSrc string `json:"tsrc"`
	TDst string `json:"tdst"`
	Op   string `json:"op"`
	In   string `json:"in"`
	Out  string `json:"out"`

	name  string
	spec  string // goipsec's outbound spec
	dspec string // goipsec's inbound spec
	mc    modeCase
	ours  []byte // sign: goipsec's AH packets with the same SA, for comparison
}

// scapyAHPackets are the cleartext packets of the scapy cross-check: IPv4
// with and without options, IPv6 with and without the extension headers
// scapy's AH knows (Hop-by-Hop with a mutable option, Destination Options,
// Routing).
func scapyAHPackets() [][]byte {
	return [][]byte{
		udp4(v4a, v4b, 1234, 40001, []byte("hello, scapy")),
		udp4opts(v4a, v4b, v4Options, 1111, 2222, []byte("IPv4 with options")),
		icmp4(v4b, v4a, 31),
		udp6(v6a, v6b, 5000, 6000, bytes.Repeat([]byte{0xa5}, 77)),
		udp6(v6b, v6a, 7, 9, []byte("IPv6 with extension headers"), v6AHExt()...),
	}
}

// TestScapyAH checks goipsec's AH against scapy's, on pcap files, for
// every integrity algorithm, tunnel mode (IPv4 and IPv6 outer) and
// transport mode, with and without ESN:
//   - scapy signs a capture and goipsec verifies it and gives back the
//     original packets; in transport mode scapy's AH packets are also the
//     same bytes as goipsec's;
//   - goipsec protects a capture and scapy verifies it and gives back the
//     original packets;
//   - scapy rejects goipsec's packets with one immutable byte changed.
func TestScapyAH(t *testing.T) {
	py := pythonAH(t)
	if testing.Short() {
		t.Skip("skipping scapy cross-check in short mode")
	}
	dir := t.TempDir()
	pkts := scapyAHPackets()
	cleartext := writePcap(t, LinkRaw, records(LinkRaw, pkts))
	in := filepath.Join(dir, "in.pcap")
	if err := os.WriteFile(in, cleartext, 0o600); err != nil {
		t.Fatal(err)
	}

	var jobs []*scapyAHJob
	spi := uint32(0x5000)
	for _, alg := range ahAlgs() {
		for _, mc := range modeCases {
			for _, esn := range []bool{false, true} {
				for _, op := range []string{"sign", "verify", "reject"} {
					spi++
					extra, dextra, seq := "", "", uint64(1)
					if esn {
						// High-order bits 7: the receiver needs seq= to know them.
						extra, dextra, seq = ",esn,seq=0x700000020", ",esn,seq=0x700000001", 0x700000020
					}
					sp := mustSpec(t, ahSpec(alg, spi, extra))
					j := &scapyAHJob{SPI: spi, Seq: seq, Alg: scapyAH[alg], Key: hex.EncodeToString(sp.AuthKey), ESN: esn, Op: op,
						In: in, Out: filepath.Join(dir, fmt.Sprintf("%x.pcap", spi)),
						name: fmt.Sprintf("%s/%s/esn=%v/scapy-%s", alg, mc.name, esn, op),
						spec: ahSpec(alg, spi, extra), dspec: ahSpec(alg, spi, dextra), mc: mc}
					if mc.mode == esp.Tunnel {
						j.TSrc, j.TDst = mc.src.String(), mc.dst.String()
					}
					opts := &EncryptOptions{SA: sp, Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst}
					enc, st, log := encrypt(t, cleartext, opts)
					if st.Encrypted != len(pkts) {
						t.Fatalf("%s: %s %s", j.name, st, log)
					}
					switch op {
					case "sign":
						j.ours = enc
					case "verify", "reject":
						if op == "reject" {
							// One immutable byte changed in each packet: the
							// last payload byte.
							_, recs := readPcap(t, enc)
							for _, r := range recs {
								r.data[len(r.data)-1] ^= 0x20
							}
							enc = writePcap(t, LinkRaw, recs)
						}
						j.In = filepath.Join(dir, fmt.Sprintf("%x-in.pcap", spi))
						if err := os.WriteFile(j.In, enc, 0o600); err != nil {
							t.Fatal(err)
						}
					}
					jobs = append(jobs, j)
				}
			}
		}
	}
	runScapy(t, py, "testdata/scapy_ah.py", jobs)

	for _, j := range jobs {
		t.Run(j.name, func(t *testing.T) {
			out := scapyOutput(t, j.Out, j.Op)
			_, recs := readPcap(t, out)
			switch j.Op {
			case "verify":
				checkPackets(t, "scapy verified and decapsulated", out, pkts)
			case "reject":
				if len(recs) != 0 {
					t.Errorf("scapy accepted %d tampered packets", len(recs))
				}
			case "sign":
				if j.mc.mode == esp.Transport {
					_, ours := readPcap(t, j.ours)
					for i, r := range recs {
						if !bytes.Equal(r.data, ours[i].data) {
							t.Errorf("packet %d: scapy and goipsec protect differently:\nscapy   %x\ngoipsec %x", i+1, r.data, ours[i].data)
						}
					}
				}
				dec, st, log := decrypt(t, out, mustSpec(t, j.dspec))
				if st.Verified != len(pkts) || log != "" {
					t.Fatalf("verifying scapy's packets: %s\n%s", st, log)
				}
				checkPackets(t, "verified", dec, pkts)
				// And goipsec rejects scapy's packets with an immutable
				// byte changed.
				for i := range recs {
					recs[i].data[len(recs[i].data)-1] ^= 0x20
				}
				_, st, _ = decrypt(t, writePcap(t, LinkRaw, recs), mustSpec(t, j.dspec))
				if st.Verified != 0 || st.Rejected != len(pkts) {
					t.Errorf("tampered scapy packets: %s", st)
				}
			}
		})
	}
}

// TestWiresharkAH has tshark dissect goipsec's AH packets, every
// algorithm, tunnel (IPv4 and IPv6 outer) and transport mode: the AH
// fields (next header, length, SPI, sequence number, ICV length) are as
// sent, the protected packet behind AH decodes (UDP ports, payload), and
// nothing is malformed.
func TestWiresharkAH(t *testing.T) {
	ts := tshark(t)
	type expect struct {
		name    string
		spi     uint32
		seq     uint32
		nh      uint8
		ahLen   int
		icvLen  int
		payload []byte
	}
	var (
		recs []record
		want []expect
	)
	spi := uint32(0x6000)
	for _, alg := range ahAlgs() {
		for _, mc := range modeCases {
			spi++
			name := fmt.Sprintf("%s/%s", alg, mc.name)
			p4 := []byte(fmt.Sprintf("goipsec AH %s v4", name))
			p6 := []byte(fmt.Sprintf("goipsec AH %s v6", name))
			pkts := [][]byte{udp4opts(v4a, v4b, v4Options, 40000, 40001, p4), udp6(v6a, v6b, 40000, 40001, p6, v6AHExt()...)}
			sp := mustSpec(t, ahSpec(alg, spi, ",seq=1000"))
			enc, st, log := encrypt(t, writePcap(t, LinkEthernet, records(LinkEthernet, pkts)),
				&EncryptOptions{SA: sp, Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst})
			if st.Encrypted != 2 {
				t.Fatalf("%s: %s\n%s", name, st, log)
			}
			_, r := readPcap(t, enc)
			recs = append(recs, r...)
			for i, p := range [][]byte{p4, p6} {
				v := int(r[i].data[14] >> 4)
				e := expect{name: name, spi: spi, seq: uint32(1000 + i), ahLen: ahHeaderLen(t, sp, v), payload: p}
				e.icvLen = e.ahLen - 12
				e.nh = packet.ProtoUDP
				if mc.mode == esp.Tunnel {
					e.nh = packet.ProtoIPv4
					if i == 1 {
						e.nh = packet.ProtoIPv6
					}
				} else if i == 1 {
					e.nh = packet.ProtoDestOpts // AH goes before the second Destination Options header
				}
				want = append(want, e)
			}
		}
	}
	file := writeFile(t, "ah.pcap", writePcap(t, LinkEthernet, recs))
	args := []string{"-r", file, "-n", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "ah.next_header", "-e", "ah.length", "-e", "ah.spi", "-e", "ah.sequence", "-e", "ah.icv",
		"-e", "udp.dstport", "-e", "data.data", "-e", "_ws.malformed"}
	for i, f := range tsharkFields(t, ts, args, len(want), 8) {
		w := want[i]
		if f[0] != strconv.Itoa(int(w.nh)) {
			t.Errorf("packet %d (%s): AH next header %q, want %d", i+1, w.name, f[0], w.nh)
		}
		if f[1] != strconv.Itoa(w.ahLen/4-2) {
			t.Errorf("packet %d (%s): AH length %q, want %d", i+1, w.name, f[1], w.ahLen/4-2)
		}
		if spi, err := strconv.ParseUint(f[2], 0, 32); err != nil || uint32(spi) != w.spi {
			t.Errorf("packet %d (%s): AH SPI %q, want %#x", i+1, w.name, f[2], w.spi)
		}
		if f[3] != strconv.Itoa(int(w.seq)) {
			t.Errorf("packet %d (%s): AH sequence %q, want %d", i+1, w.name, f[3], w.seq)
		}
		if icv, err := hex.DecodeString(strings.ReplaceAll(f[4], ":", "")); err != nil || len(icv) != w.icvLen {
			t.Errorf("packet %d (%s): AH ICV %q, want %d bytes", i+1, w.name, f[4], w.icvLen)
		}
		if !strings.HasSuffix(f[5], "40001") {
			t.Errorf("packet %d (%s): UDP ports %q: the packet behind AH did not decode", i+1, w.name, f[5])
		}
		if f[6] != hex.EncodeToString(w.payload) {
			t.Errorf("packet %d (%s): payload %q, want %q", i+1, w.name, f[6], hex.EncodeToString(w.payload))
		}
		if f[7] != "" {
			t.Errorf("packet %d (%s): malformed", i+1, w.name)
		}
	}
}
