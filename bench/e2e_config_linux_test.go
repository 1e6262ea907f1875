//go:build linux

package bench

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// The baseline goipsec must not share a port, TUN device or inner
// addresses with the goipsec under test: both run in the same namespaces.
func TestGoipsecConfigPerImpl(t *testing.T) {
	tr, err := ParseE2ETransform("aes128gcm16")
	if err != nil {
		t.Fatal(err)
	}
	k := goipsecKeys{spi: 0x1000_0001, key: make([]byte, tr.enc.KeyLen())}
	seen := map[string]string{}
	for _, tc := range []struct {
		impl, tun string
		port      int
	}{
		{ImplGoipsec, "goipsec0", goipsecPort},
		{ImplBaseline, "goipsec1", goipsecPort + 1},
	} {
		a, ok := e2eInner[tc.impl]
		if !ok {
			t.Fatalf("%s has no inner addresses", tc.impl)
		}
		if other, dup := seen[a[0].String()]; dup {
			t.Errorf("%s and %s share inner address %v", tc.impl, other, a[0])
		}
		seen[a[0].String()] = tc.impl
		y := goipsecConfig(tr, leftUnder, rightUnder, tc.port, tc.tun, a[0], a[1], k, k, "/tmp/x.sock")
		for _, want := range []string{
			"name: " + tc.tun + "\n",
			"local_port: " + strconv.Itoa(tc.port) + "\n",
			"addresses: [" + netip.PrefixFrom(a[0], 24).String() + "]",
		} {
			if !strings.Contains(y, want) {
				t.Errorf("%s configuration lacks %q:\n%s", tc.impl, want, y)
			}
		}
	}
}
