package udp

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// BenchmarkBatch moves batches of datagrams over loopback: each op is one
// WriteBatch of the whole batch and the ReadBatch calls to take it in.
// Offloads: "plain" sends one datagram per message and receives one per
// message; "gso" sends equal-size runs as segmented sends (the receiving
// socket cuts them up); "gso+gro" also lets the receiving socket keep them
// whole (Message.Segment). Metrics: ns/pkt, and datagrams per receive
// system call.
func BenchmarkBatch(b *testing.B) {
	for _, off := range []string{"plain", "gso", "gso+gro"} {
		for _, batch := range []int{1, 32, 128} {
			for _, size := range []int{64, 1400} {
				b.Run(off+"/batch="+strconv.Itoa(batch)+"/size="+strconv.Itoa(size), func(b *testing.B) {
					c := listen(b, "udp4", "127.0.0.1:0", &Options{DisableGSO: off == "plain"})
					d := listen(b, "udp4", "127.0.0.1:0", nil)
					if off == "gso+gro" && !d.EnableGRO() {
						b.Skip("no UDP_GRO")
					}
					out := makeMsgs(batch, size, 0)
					for i := range out {
						out[i].End = size
						out[i].Addr = d.LocalAddr()
					}
					in := makeMsgs(batch, 65535, 64)
					b.ReportAllocs()
					b.SetBytes(int64(batch * size))
					calls := 0
					b.ResetTimer()
					for range b.N {
						calls += pumpDatagrams(b, c, d, out, in)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/pkt")
					b.ReportMetric(float64(b.N*batch)/float64(calls), "pkts/recvcall")
				})
			}
		}
	}
}

// pumpDatagrams is pump counting datagrams, not messages (GRO).
func pumpDatagrams(tb testing.TB, a, b *Conn, out, in []Message) int {
	if _, err := a.WriteBatch(out); err != nil {
		tb.Fatal(err)
	}
	calls := 0
	for got := 0; got < len(out); {
		n, err := b.ReadBatch(in)
		if err != nil {
			tb.Fatal(err)
		}
		for i := range n {
			got += in[i].Datagrams()
		}
		calls++
	}
	return calls
}

// BenchmarkStdlib is the baseline: one datagram per system call with the
// standard library's allocation-free calls.
func BenchmarkStdlib(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			d, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			dst := d.LocalAddr().(*net.UDPAddr).AddrPort()
			out := make([]byte, size)
			in := make([]byte, 2048)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for range b.N {
				if _, err := c.WriteToUDPAddrPort(out, dst); err != nil {
					b.Fatal(err)
				}
				if _, _, err := d.ReadFromUDPAddrPort(in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}
