package tun

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

func makeBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

func pkt(seq, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(seq*31 + i)
	}
	return b
}

func TestPairDirections(t *testing.T) {
	a, b := NewPair(1500)
	defer a.Close()
	for _, d := range []Device{a, b} {
		if ev := <-d.Events(); ev != EventUp {
			t.Fatalf("first event %v, want EventUp", ev)
		}
		if mtu, _ := d.MTU(); mtu != 1500 {
			t.Fatalf("MTU %d", mtu)
		}
		if d.BatchSize() != IdealBatchSize || d.File() != nil {
			t.Fatal("BatchSize or File")
		}
	}
	na, _ := a.Name()
	nb, _ := b.Name()
	if na == nb {
		t.Fatalf("both ends are called %q", na)
	}
	for _, dir := range []struct {
		name     string
		from, to Device
	}{{"a->b", a, b}, {"b->a", b, a}} {
		const offset = 16
		out := make([][]byte, 10)
		for i := range out {
			out[i] = append(make([]byte, offset), pkt(i, 40+i*100)...)
		}
		if n, err := dir.from.Write(out, offset); n != len(out) || err != nil {
			t.Fatalf("%s: Write = %d, %v", dir.name, n, err)
		}
		bufs, sizes := makeBufs(4, 2000)
		got := 0
		for got < len(out) {
			n, err := dir.to.Read(bufs, sizes, 8)
			if err != nil {
				t.Fatalf("%s: Read: %v", dir.name, err)
			}
			for i := range n {
				if !bytes.Equal(bufs[i][8:8+sizes[i]], out[got][offset:]) {
					t.Fatalf("%s: packet %d differs", dir.name, got)
				}
				got++
			}
		}
	}
}

func TestPairErrors(t *testing.T) {
	a, b := NewPair(100)
	defer a.Close()
	n, err := a.Write([][]byte{make([]byte, 101), make([]byte, 100), make([]byte, 3)}, 0)
	if n != 2 || err == nil {
		t.Fatalf("Write with an oversized packet = %d, %v", n, err)
	}
	if n, err := a.Write([][]byte{make([]byte, 3)}, 4); n != 0 || err == nil {
		t.Fatalf("Write with offset past the buffer = %d, %v", n, err)
	}
	bufs, sizes := makeBufs(4, 50)
	if n, err := b.Read(bufs, sizes, 0); n != 0 || !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("Read into a short buffer = %d, %v", n, err)
	}
	if n, err := b.Read(bufs, sizes, 0); n != 1 || err != nil || sizes[0] != 3 {
		t.Fatalf("Read after the dropped packet = %d, %v", n, err)
	}
	if n, err := b.Read(nil, nil, 0); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
}

func TestPairClose(t *testing.T) {
	a, b := NewPair(1500)
	errc := make(chan error, 2)
	for _, d := range []Device{a, b} {
		go func() {
			bufs, sizes := makeBufs(1, 1500)
			_, err := d.Read(bufs, sizes, 0)
			errc <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, os.ErrClosed) {
				t.Fatalf("Read after Close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Read still blocked after Close")
		}
	}
	if _, err := a.Write([][]byte{{0x45}}, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	<-b.Events() // EventUp
	if _, ok := <-b.Events(); ok {
		t.Fatal("Events not closed")
	}
	b.Close()
	a.Close()
	// A writer blocked on a full queue is released by Close.
	c, d := NewPair(64)
	done := make(chan error)
	go func() {
		var err error
		for err == nil {
			_, err = c.Write([][]byte{make([]byte, 64)}, 0)
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("blocked Write: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write still blocked after Close")
	}
}

// Many writers and readers at once, more packets than the queue holds:
// nothing is lost or corrupted.
func TestPairConcurrent(t *testing.T) {
	a, b := NewPair(1500)
	defer a.Close()
	const writers, perWriter = 4, 3000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([][]byte, 0, 16)
			for i := 0; i < perWriter; {
				batch = batch[:0]
				for ; len(batch) < 16 && i < perWriter; i++ {
					p := pkt(i, 20+i%1000)
					p[0], p[1], p[2] = byte(w), byte(i>>8), byte(i)
					batch = append(batch, p)
				}
				if n, err := a.Write(batch, 0); n != len(batch) || err != nil {
					t.Errorf("Write = %d, %v", n, err)
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	seen := map[[3]byte]bool{}
	var rg sync.WaitGroup
	for range 2 {
		rg.Add(1)
		go func() {
			defer rg.Done()
			bufs, sizes := makeBufs(IdealBatchSize, 1500)
			for {
				n, err := b.Read(bufs, sizes, 0)
				if err != nil {
					return
				}
				mu.Lock()
				for i := range n {
					p := bufs[i][:sizes[i]]
					seq := int(p[1])<<8 | int(p[2])
					want := pkt(seq, 20+seq%1000)
					if !bytes.Equal(p[3:], want[3:]) {
						t.Errorf("packet %d of writer %d corrupted", seq, p[0])
					}
					seen[[3]byte(p[:3])] = true
				}
				done := len(seen) == writers*perWriter
				mu.Unlock()
				if done {
					b.Close()
				}
			}
		}()
	}
	wg.Wait()
	rg.Wait()
	if len(seen) != writers*perWriter {
		t.Fatalf("received %d distinct packets, want %d", len(seen), writers*perWriter)
	}
}

func TestPairZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	a, b := NewPair(1500)
	defer a.Close()
	out := make([][]byte, IdealBatchSize)
	for i := range out {
		out[i] = pkt(i, 1400)
	}
	bufs, sizes := makeBufs(IdealBatchSize, 1500)
	round := func() {
		if _, err := a.Write(out, 0); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(out); {
			n, err := b.Read(bufs, sizes, 0)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	round() // makes the slots
	if n := testing.AllocsPerRun(100, round); n != 0 {
		t.Fatalf("%v allocations per round of %d packets", n, len(out))
	}
}

func BenchmarkPair(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			x, y := NewPair(1500)
			defer x.Close()
			out := make([][]byte, IdealBatchSize)
			for i := range out {
				out[i] = pkt(i, size)
			}
			bufs, sizes := makeBufs(IdealBatchSize, 1500)
			x.Write(out, 0) // make the slots
			for got := 0; got < len(out); {
				n, _ := y.Read(bufs, sizes, 0)
				got += n
			}
			b.ResetTimer()
			b.ReportAllocs()
			b.SetBytes(int64(size * len(out)))
			reads := 0
			for range b.N {
				x.Write(out, 0)
				for got := 0; got < len(out); {
					n, _ := y.Read(bufs, sizes, 0)
					got += n
					reads++
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(out)), "ns/pkt")
			b.ReportMetric(float64(b.N*len(out))/float64(reads), "pkts/read")
		})
	}
}
