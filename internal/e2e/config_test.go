//go:build linux

package e2e

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// sa is one direction's static keys (aes128gcm16: 16 key and 4 salt bytes).
type sa struct {
	spi uint32
	key []byte
}

func newSA(spi uint32) sa { return sa{spi: spi, key: randBytes(20)} }

func (s sa) hexKey() string { return "0x" + hex.EncodeToString(s.key) }

// peer is what one goipsec configuration says.
type peer struct {
	local, remote         string // underlay addresses
	localPort, remotePort int    // 0: the default, 4500
	mode                  string // tunnel | transport
	localTS, remoteTS     []string
	in, out               sa
	tunMode               string // kernel (default) | netstack
	tunName               string
	tunAddrs              []string
	extra                 string // more YAML under tun:
}

func (p peer) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections:\n  e2e:\n")
	fmt.Fprintf(&b, "    local_addrs: [%s]\n    remote_addrs: [%s]\n", p.local, p.remote)
	if p.localPort != 0 {
		fmt.Fprintf(&b, "    local_port: %d\n", p.localPort)
	}
	if p.remotePort != 0 {
		fmt.Fprintf(&b, "    remote_port: %d\n", p.remotePort)
	}
	fmt.Fprintf(&b, "    children:\n      link:\n        mode: %s\n", p.mode)
	fmt.Fprintf(&b, "        local_ts: [%s]\n        remote_ts: [%s]\n", strings.Join(p.localTS, ", "), strings.Join(p.remoteTS, ", "))
	fmt.Fprintf(&b, "        manual:\n          proto: esp\n          enc: aes128gcm16\n")
	fmt.Fprintf(&b, "          in:  {spi: %#x, key: %s}\n", p.in.spi, p.in.hexKey())
	fmt.Fprintf(&b, "          out: {spi: %#x, key: %s}\n", p.out.spi, p.out.hexKey())
	mode := p.tunMode
	if mode == "" {
		mode = "kernel"
	}
	fmt.Fprintf(&b, "tun:\n  mode: %s\n", mode)
	if p.tunName != "" {
		fmt.Fprintf(&b, "  name: %s\n", p.tunName)
	}
	if len(p.tunAddrs) > 0 {
		fmt.Fprintf(&b, "  addresses: [%s]\n", strings.Join(p.tunAddrs, ", "))
	}
	b.WriteString(p.extra)
	return b.String()
}

// wiresharkSAs are the tshark options that let it decrypt ESP under the
// given SAs (Wireshark 4.0's esp_sa table: protocol, source, destination,
// SPI, encryption, key, authentication, authentication key).
func wiresharkSAs(sas ...sa) []string {
	o := []string{"-o", "esp.enable_encryption_decode:TRUE"}
	for _, s := range sas {
		for _, proto := range []string{"IPv4", "IPv6"} {
			o = append(o, "-o", fmt.Sprintf(`uat:esp_sa:"%s","*","*","0x%08x","AES-GCM with 16 octet ICV [RFC4106]","%s","NULL",""`,
				proto, s.spi, s.hexKey()))
		}
	}
	return o
}
