package pcaptool

import (
	"bytes"
	"testing"

	"github.com/google/gopacket"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/saspec"
)

var fuzzSpecs = []string{
	transform{enc: "aes128gcm16"}.spec(0x1001, ""),
	transform{"aes128", "sha256"}.spec(0x1002, ",esn"),
	transform{enc: "aes128gmac"}.spec(0x1003, ",esn"),
	transform{"null", "sha1"}.spec(0x1004, ",window=0"),
	ahSpec("sha256", 0x2001, ""),
	ahSpec("aes128gmac", 0x2002, ",esn"),
	ahSpec("md5", 0x2003, ",window=0"),
}

// FuzzDecrypt feeds arbitrary packets, as raw IP and as Ethernet records,
// to Decrypt: it must never panic and must account for every record.
func FuzzDecrypt(f *testing.F) {
	for i, s := range fuzzSpecs {
		for _, mc := range modeCases {
			opts := &EncryptOptions{SA: mustSpec(f, s), Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst}
			if i%2 == 0 && opts.SA.Proto == saspec.ESP {
				opts.UDP = &esp.UDPPorts{Src: 4500, Dst: 4500}
			}
			enc, _, _ := encrypt(f, writePcap(f, LinkRaw, records(LinkRaw, ahPackets())), opts)
			_, recs := readPcap(f, enc)
			for _, r := range recs {
				f.Add(r.data)
			}
		}
	}
	f.Add(udp4(v4a, v4b, 4500, 4500, []byte{0xff}))
	f.Add(udp4(v4a, v4b, 4500, 4500, []byte{0, 0, 0, 0, 1}))
	f.Add([]byte{0x45})
	f.Add([]byte{0x60})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var sas []*saspec.Spec
		for _, s := range fuzzSpecs {
			sas = append(sas, mustSpec(t, s))
		}
		recs := []record{
			{gopacket.CaptureInfo{CaptureLength: len(pkt), Length: len(pkt)}, pkt},
			{gopacket.CaptureInfo{CaptureLength: len(pkt), Length: len(pkt) + 100}, pkt},
		}
		var out bytes.Buffer
		st, err := Decrypt(bytes.NewReader(writePcap(t, LinkRaw, recs)), &out, &DecryptOptions{SAs: sas})
		if err != nil {
			t.Fatal(err)
		}
		if st.Packets != 2 || st.Decrypted+st.Verified+st.Rejected+st.Dummy+st.IKE+st.Keepalives+st.Passed != 2 {
			t.Fatalf("records unaccounted for: %s", st)
		}
		eth := append(append([]byte(nil), macHdr...), 0x08, 0x00)
		eth = append(eth, pkt...)
		erecs := []record{{gopacket.CaptureInfo{CaptureLength: len(eth), Length: len(eth)}, eth}}
		if _, err := Decrypt(bytes.NewReader(writePcap(t, LinkEthernet, erecs)), &out, &DecryptOptions{SAs: sas}); err != nil {
			t.Fatal(err)
		}
		// Encrypting arbitrary packets must not panic either, with ESP and
		// with AH.
		for _, mc := range modeCases {
			for _, opts := range []*EncryptOptions{
				{SA: sas[1], Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst, UDP: &esp.UDPPorts{Src: 1, Dst: 2}},
				{SA: sas[4], Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst},
			} {
				var eout bytes.Buffer
				if _, err := Encrypt(bytes.NewReader(writePcap(t, LinkRaw, recs[:1])), &eout, opts); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
