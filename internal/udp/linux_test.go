//go:build linux

package udp

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func sockoptInt(t *testing.T, c *Conn, level, opt int) int {
	t.Helper()
	var v int
	var err error
	if cerr := c.sys.rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), level, opt) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMarkAndBuffers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SO_MARK and SO_RCVBUFFORCE need root (CAP_NET_ADMIN)")
	}
	c := listen(t, "udp", ":0", &Options{Mark: 0x4242})
	if m := sockoptInt(t, c, unix.SOL_SOCKET, unix.SO_MARK); m != 0x4242 {
		t.Errorf("SO_MARK = %#x, want 0x4242", m)
	}
	r, s := c.BufferSizes()
	// Linux reports twice what was set.
	if r < DefaultBufferSize || s < DefaultBufferSize {
		t.Errorf("buffers %d/%d, want >= %d (forced)", r, s, DefaultBufferSize)
	}
	d := listen(t, "udp4", "127.0.0.1:0", &Options{RecvBuffer: -1, SendBuffer: 1 << 20, BatchSize: 7})
	if d.BatchSize() != 7 {
		t.Errorf("BatchSize = %d", d.BatchSize())
	}
	if m := sockoptInt(t, d, unix.SOL_SOCKET, unix.SO_MARK); m != 0 {
		t.Errorf("SO_MARK = %#x without a mark", m)
	}
	if _, s := d.BufferSizes(); s != 2<<20 {
		t.Errorf("send buffer %d, want %d", s, 2<<20)
	}
}

func TestMarkNeedsPrivilege(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as a non-root user only")
	}
	if _, err := Listen("udp4", "127.0.0.1:0", &Options{Mark: 1}); err == nil {
		t.Error("SO_MARK without CAP_NET_ADMIN succeeded")
	}
}

// Link-local peers keep their zone, resolved through the cache.
func TestZone(t *testing.T) {
	var s mmsgState
	if z := s.zoneFor(1); z != "lo" && z != "1" {
		t.Errorf("zoneFor(1) = %q", z)
	}
	if id, err := s.scopeFor("lo"); err != nil || id != 1 {
		t.Errorf("scopeFor(lo) = %d, %v", id, err)
	}
	if id, err := s.scopeFor("7"); err != nil || id != 7 {
		t.Errorf("scopeFor(7) = %d, %v", id, err)
	}
	if _, err := s.scopeFor("no-such-if0"); err == nil {
		t.Error("scopeFor(no-such-if0) succeeded")
	}
}

func TestBatchSizeCap(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0", &Options{BatchSize: 5000})
	if c.BatchSize() != MaxBatchSize || len(c.sys.rd.hdrs) != MaxBatchSize {
		t.Errorf("BatchSize = %d, want %d", c.BatchSize(), MaxBatchSize)
	}
	if d := listen(t, "udp4", "127.0.0.1:0", nil); d.BatchSize() != DefaultBatchSize {
		t.Errorf("default BatchSize = %d", d.BatchSize())
	}
}
