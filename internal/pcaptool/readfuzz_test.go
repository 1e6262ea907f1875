package pcaptool

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
)

// FuzzReadCapture feeds arbitrary capture files to Decrypt: it must return
// (an error or stats) and never panic.
func FuzzReadCapture(f *testing.F) {
	recs := records(LinkEthernet, samplePackets()[:2])
	f.Add(writePcap(f, LinkEthernet, recs))
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriter(&b, LinkEthernet)
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range recs {
		w.WritePacket(r.ci, r.data)
	}
	w.Flush()
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, file []byte) {
		Decrypt(bytes.NewReader(file), &bytes.Buffer{}, &DecryptOptions{})
	})
}

// ngBlock builds a pcapng block in byte order bo.
func ngBlock(bo binary.AppendByteOrder, typ uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	b := bo.AppendUint32(nil, typ)
	b = bo.AppendUint32(b, n)
	b = append(b, body...)
	return bo.AppendUint32(b, n)
}

func ngSection(bo binary.AppendByteOrder) []byte {
	body := bo.AppendUint32(nil, 0x1a2b3c4d)
	body = bo.AppendUint16(body, 1)
	body = bo.AppendUint16(body, 0)
	body = bo.AppendUint64(body, ^uint64(0))
	return ngBlock(bo, ngSHB, body)
}

func ngInterface(bo binary.AppendByteOrder, link uint16, tsresol byte) []byte {
	body := bo.AppendUint16(nil, link)
	body = bo.AppendUint16(body, 0)
	body = bo.AppendUint32(body, 0)
	if tsresol != 0 {
		body = bo.AppendUint16(body, 9)
		body = bo.AppendUint16(body, 1)
		body = append(body, tsresol, 0, 0, 0)
		body = bo.AppendUint32(body, 0) // opt_endofopt
	}
	return ngBlock(bo, ngIDB, body)
}

func ngPacket(bo binary.AppendByteOrder, ts uint64, data []byte, caplen uint32) []byte {
	body := bo.AppendUint32(nil, 0)
	body = bo.AppendUint32(body, uint32(ts>>32))
	body = bo.AppendUint32(body, uint32(ts))
	body = bo.AppendUint32(body, caplen)
	body = bo.AppendUint32(body, caplen)
	return ngBlock(bo, ngEPB, append(body, data...))
}

// TestNgReader reads hand-made pcapng files: both byte orders, decimal and
// binary timestamp resolutions, and rejects hostile or unsupported ones
// with an error, without allocating what a bad length claims.
func TestNgReader(t *testing.T) {
	pkt := udp4(v4a, v4b, 1, 2, []byte("pcapng"))
	sec := time.Unix(1700000000, 0).UTC()
	for _, tc := range []struct {
		bo     binary.AppendByteOrder
		tsres  byte
		ts     uint64
		wantTS time.Time
	}{
		{binary.LittleEndian, 0, 1700000000_250000, sec.Add(250 * time.Millisecond)},
		{binary.BigEndian, 9, 1700000000_000000123, sec.Add(123)},
		{binary.LittleEndian, 0x80 | 10, 1700000000<<10 | 512, sec.Add(500 * time.Millisecond)},
		{binary.BigEndian, 3, 1700000000_001, sec.Add(time.Millisecond)},
	} {
		f := append(ngSection(tc.bo), ngInterface(tc.bo, 101, tc.tsres)...)
		f = append(f, ngPacket(tc.bo, tc.ts, pkt, uint32(len(pkt)))...)
		var out bytes.Buffer
		st, err := Decrypt(bytes.NewReader(f), &out, &DecryptOptions{})
		if err != nil || st.Passed != 1 {
			t.Fatalf("%v: %v %v", tc.bo, st, err)
		}
		link, recs := readPcap(t, out.Bytes())
		if link != LinkRaw || len(recs) != 1 || !bytes.Equal(recs[0].data, pkt) || !recs[0].ci.Timestamp.Equal(tc.wantTS) {
			t.Errorf("%v tsresol %#x: link %v, records %v, want time %v", tc.bo, tc.tsres, link, recs, tc.wantTS)
		}
	}

	le := binary.LittleEndian
	hdr := append(ngSection(le), ngInterface(le, 1, 0)...)
	huge := ngPacket(le, 0, pkt, 0x7ffffff0)
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"huge caplen", append(append([]byte(nil), hdr...), huge...), "malformed pcapng file: packet length 2147483632"},
		{"huge block", append(append([]byte(nil), hdr...), le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 6), 0x7ffffff0), 0)...), "malformed pcapng file: block length 2147483632"},
		{"truncated", append(append([]byte(nil), hdr...), ngPacket(le, 0, pkt, uint32(len(pkt)))[:30]...), "file ends inside a block"},
		{"mixed link types", append(append(append([]byte(nil), hdr...), ngInterface(le, 101, 0)...), ngPacket(le, 0, pkt, uint32(len(pkt)))...), "different link types"},
		{"no interface", append(ngSection(le), ngPacket(le, 0, pkt, uint32(len(pkt)))...), "packet before any interface"},
		{"link type 276", append(ngSection(le), ngInterface(le, 276, 0)...), "link type 276 not supported"},
		{"wifi", append(ngSection(le), ngInterface(le, 105, 0)...), "link type 105 not supported"},
	}
	for _, tt := range tests {
		_, err := Decrypt(bytes.NewReader(tt.file), &bytes.Buffer{}, &DecryptOptions{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestTsharkPcapng reads a pcapng file written by Wireshark's own tools.
func TestTsharkPcapng(t *testing.T) {
	ts := tshark(t)
	recs := records(LinkEthernet, samplePackets())
	in := writeFile(t, "in.pcap", writePcap(t, LinkEthernet, recs))
	ng := filepath.Join(t.TempDir(), "in.pcapng")
	if out, err := exec.Command(ts, "-r", in, "-F", "pcapng", "-w", ng).CombinedOutput(); err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	f, err := os.ReadFile(ng)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	st, err := Decrypt(bytes.NewReader(f), &out, &DecryptOptions{})
	if err != nil || st.Passed != len(recs) {
		t.Fatalf("%v %v", st, err)
	}
	_, got := readPcap(t, out.Bytes())
	sameRecords(t, got, recs)
}
