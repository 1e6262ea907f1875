package packet

import (
	"fmt"
	"testing"
)

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{20, 64, 1500, 9000} {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i * 31)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			var s uint16
			for b.Loop() {
				s = Checksum(buf, uint32(s))
			}
		})
	}
}

func BenchmarkParseFlow(b *testing.B) {
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"v4-tcp", build4(5, ProtoTCP, tcpHdr(1234, 443))},
		{"v6-udp", build6(nil, ProtoUDP, []byte{0, 1, 0, 2})},
		{"v6-5ext-udp", build6([]eh{hbh, dest, rt, frag, dest}, ProtoUDP, []byte{0, 1, 0, 2})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var f Flow
			for b.Loop() {
				if err := ParseFlow(tc.pkt, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkTransportInsertion(b *testing.B) {
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"v4", build4(5, ProtoTCP, tcpHdr(1234, 443))},
		{"v6-5ext", build6([]eh{hbh, dest, rt, frag, dest}, ProtoUDP, []byte{0, 1, 0, 2})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := TransportInsertion(tc.pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkIPv4ComputeChecksum(b *testing.B) {
	ip := IPv4(build4(5, ProtoTCP, tcpHdr(1, 2)))
	b.ReportAllocs()
	for b.Loop() {
		ip.ComputeChecksum()
	}
}
