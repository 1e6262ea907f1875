package config

import (
	"strings"
	"testing"
)

const good = `
connections:
  home:
    local_addrs: [192.0.2.1]
    remote_addrs: [198.51.100.7]
    local_port: 4500
    remote_port: 4500
    proposals: [aes128gcm16-prfsha256-x25519]
    dpd_delay: 30s
    rekey_time: 4h
    local:  {auth: psk, id: a.example.org}
    remote: {auth: psk, id: b.example.org}
    children:
      link:
        mode: transport
        local_ts: [10.1.0.1/32]
        remote_ts: 10.1.0.2
        esp_proposals: [aes128gcm16]
        replay_window: 4096
        rekey_time: 1h
        start_action: start
        manual:
          proto: esp
          enc: aes128gcm16
          in:  {spi: 0x1001, key: 0x000102030405060708090a0b0c0d0e0f10111213}
          out: {spi: 0x2002, key: 0x101112131415161718191a1b1c1d1e1f20212223}
secrets:
  ike-home: {id: [a.example.org, b.example.org], secret: "s3cret"}
tun:
  mode: kernel
  addresses: [10.1.0.1/24]
control:
  metrics: 127.0.0.1:9669
log:
  level: info
  levels: {ike: debug}
`

func TestGood(t *testing.T) {
	c, err := Parse("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	conn := c.Connections["home"]
	ch := conn.Children["link"]
	if conn.Version != 2 || conn.LocalPort != 4500 || conn.DPDDelay.D().Seconds() != 30 {
		t.Errorf("connection: %+v", conn)
	}
	if ch.Mode != "transport" || *ch.ReplayWindow != 4096 || len(ch.RemotePrefixes) != 1 || ch.RemotePrefixes[0].String() != "10.1.0.2/32" {
		t.Errorf("child: %+v", ch)
	}
	if m := ch.Manual; m.In.SPI != 0x1001 || len(m.In.Key) != 20 || m.EncAlg.Name != "aes128gcm16" {
		t.Errorf("manual: %+v", m)
	}
	if c.Tun.Name != DefaultTunName || c.Tun.MTU != DefaultMTU || c.Control.Socket != DefaultSocketPath() {
		t.Errorf("defaults: %+v %+v", c.Tun, c.Control)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %v", c.Warnings)
	}
}

func TestBad(t *testing.T) {
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"mode typo", "mode: transport", "mode: tunel", `f.yaml: connections.home.children.link.mode: want tunnel or transport, got "tunel"`},
		{"unknown key", "replay_window: 4096", "replay_windw: 4096", `connections.home.children.link.replay_windw: unknown key`},
		{"start action", "start_action: start", "start_action: go", `connections.home.children.link.start_action: want start, trap or none, got "go"`},
		{"short key", "0x000102030405060708090a0b0c0d0e0f10111213}", "0x000102030405060708090a0b0c0d0e0f}", `connections.home.children.link.manual.in.key: aes128gcm16 wants 20 bytes (16 key and 4 salt), got 16`},
		{"bad hex", "key: 0x000102030405060708090a0b0c0d0e0f10111213}", "key: 0x00zz}", `connections.home.children.link.manual.in.key: want hexadecimal starting with 0x`},
		{"no 0x", "key: 0x000102030405060708090a0b0c0d0e0f10111213}", "key: 000102030405060708090a0b0c0d0e0f10111213}", `want hexadecimal starting with 0x, got "0001..."`},
		{"reserved spi", "spi: 0x1001", "spi: 7", `connections.home.children.link.manual.in.spi: want an SPI of 256 or more (0-255 are reserved), got 7`},
		{"same spi", "spi: 0x2002", "spi: 0x1001", `connections.home.children.link.manual: in and out use the same SPI 0x1001`},
		{"unknown enc", "enc: aes128gcm16", "enc: aes128gcm", `connections.home.children.link.manual.enc: unknown algorithm "aes128gcm"`},
		{"integ with aead", "enc: aes128gcm16", "enc: aes128gcm16\n          integ: sha256", `connections.home.children.link.manual.integ: aes128gcm16 already provides integrity: remove integ`},
		{"cbc without integ", "enc: aes128gcm16", "enc: aes128", `connections.home.children.link.manual.integ: missing: an integrity algorithm such as sha256`},
		{"ts", "local_ts: [10.1.0.1/32]", "local_ts: [10.1.0.1/24]", `connections.home.children.link.local_ts: want a network prefix, got "10.1.0.1/24" (host bits set; did you mean 10.1.0.0/24?)`},
		{"ts junk", "local_ts: [10.1.0.1/32]", "local_ts: [nowhere]", `connections.home.children.link.local_ts: want an IP address, prefix or dynamic, got "nowhere"`},
		{"duration", "dpd_delay: 30s", "dpd_delay: 30 seconds", `connections.home.dpd_delay: want a duration such as 30s or 4h, got "30 seconds"`},
		{"port", "local_port: 4500", "local_port: 70000", `connections.home.local_port: want an unsigned integer of 16 bits, got "70000"`},
		{"auth", "local:  {auth: psk", "local:  {auth: eap", `connections.home.local.auth: want psk, pubkey or rsa/pss, got "eap"`},
		{"pubkey without certs", "local:  {auth: psk", "local:  {key: k.pem, auth: pubkey", `connections.home.local.certs: auth pubkey needs our certificate file`},
		{"pubkey without key", "local:  {auth: psk", "local:  {certs: [c.pem], auth: pubkey", `connections.home.local.key: auth pubkey needs the private key file of the first certificate`},
		{"pubkey remote without ca", "remote: {auth: psk", "remote: {auth: pubkey", `connections.home.remote.cacerts: auth pubkey needs the CA certificates`},
		{"rsa/pss remote without ca", "remote: {auth: psk", "remote: {auth: rsa/pss", `connections.home.remote.cacerts: auth rsa/pss needs the CA certificates`},
		{"certs with psk", "local:  {auth: psk", "local:  {certs: [c.pem], auth: psk", `connections.home.local.certs: certificates need auth: pubkey (auth is psk)`},
		{"key with psk", "local:  {auth: psk", "local:  {key: k.pem, auth: psk", `connections.home.local.key: a private key needs auth: pubkey (auth is psk)`},
		{"cacerts with psk", "remote: {auth: psk", "remote: {cacerts: [ca.pem], auth: psk", `connections.home.remote.cacerts: CA certificates need auth: pubkey (auth is psk)`},
		{"empty cert name", "remote: {auth: psk", "remote: {cacerts: [''], auth: pubkey", `connections.home.remote.cacerts[0]: empty file name`},
		{"ikev1", "local_port: 4500", "version: 1\n    local_port: 4500", `connections.home.version: IKEv1 is not implemented yet: want 2`},
		{"tun mode", "mode: kernel", "mode: user", `tun.mode: want kernel or netstack, got "user"`},
		{"tun addr", "addresses: [10.1.0.1/24]", "addresses: [10.1.0.1]", `tun.addresses[0]: want an address with prefix length such as 10.1.0.1/24, got "10.1.0.1"`},
		{"window", "replay_window: 4096", "replay_window: 100000", `connections.home.children.link.replay_window: want 0 (off) to 65536 packets, got 100000`},
		{"secret both", `secret: "s3cret"}`, `secret: "s3cret", env: X}`, `secrets.ike-home: want exactly one of secret, file or env`},
		{"list as map", "proposals: [aes128gcm16-prfsha256-x25519]", "proposals: {a: b}", `connections.home.proposals: want a list, got a mapping`},
		{"fragmentation", "dpd_delay: 30s", "dpd_delay: 30s\n    fragmentation: maybe", `connections.home.fragmentation: want yes, accept, force or no, got "maybe"`},
		{"fragment size", "dpd_delay: 30s", "dpd_delay: 30s\n    fragment_size: 100", `connections.home.fragment_size: want 256 to 65535 octets (a whole IP datagram), or 0 for 1280, got 100`},
		{"fragment size type", "dpd_delay: 30s", "dpd_delay: 30s\n    fragment_size: big", `connections.home.fragment_size`},
		{"log level", "level: info", "level: verbose", `log.level: want debug, info, warn or error, got "verbose"`},
		{"log format", "level: info", "level: info\n  format: text", `log.format: want console or json, got "text"`},
		{"log subsystem", "levels: {ike: debug}", "levels: {ikev2: debug}", `log.levels.ikev2: want a subsystem: ike, esp, spd, tun, net or control`},
		{"log subsystem level", "levels: {ike: debug}", "levels: {ike: trace}", `log.levels.ike: want debug, info, warn or error, got "trace"`},
		{"socks in kernel mode", "mode: kernel", "mode: kernel\n  socks5: 127.0.0.1:1080", `tun: socks5, forwards and expose need mode: netstack`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.from) {
				t.Fatalf("test bug: %q not in the good config", tc.from)
			}
			bad := strings.Replace(good, tc.from, tc.to, 1)
			_, err := Parse("f.yaml", []byte(bad))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got  %s\nwant %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "0a0b0c0d") {
				t.Fatalf("error leaks key material: %s", err)
			}
		})
	}
}

// TestCertPaths checks that certificate and key files are taken relative
// to the configuration file's directory.
func TestCertPaths(t *testing.T) {
	y := strings.Replace(strings.Replace(good, "local:  {auth: psk", "local:  {auth: pubkey, certs: [c.pem, /abs/i.pem], key: private/k.pem", 1),
		"remote: {auth: psk", "remote: {auth: pubkey, cacerts: [ca.pem]", 1)
	c, err := Parse("/etc/goipsec/goipsec.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	l, r := c.Connections["home"].Local, c.Connections["home"].Remote
	if strings.Join(l.Certs, ",") != "/etc/goipsec/c.pem,/abs/i.pem" || l.Key != "/etc/goipsec/private/k.pem" || strings.Join(r.CACerts, ",") != "/etc/goipsec/ca.pem" {
		t.Errorf("paths: %+v %+v", l, r)
	}
}

func TestLegacyWarning(t *testing.T) {
	cfg := strings.Replace(good, "enc: aes128gcm16", "enc: 3des\n          integ: sha1", 1)
	cfg = strings.ReplaceAll(cfg, "0x000102030405060708090a0b0c0d0e0f10111213}", "0x000102030405060708090a0b0c0d0e0f1011121314151617, authkey: 0x0001020304050607080910111213141516171819}")
	cfg = strings.ReplaceAll(cfg, "0x101112131415161718191a1b1c1d1e1f20212223}", "0x000102030405060708090a0b0c0d0e0f1011121314151617, authkey: 0x0001020304050607080910111213141516171819}")
	c, err := Parse("f.yaml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 2 {
		t.Fatalf("warnings: %v", c.Warnings)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("connections: {a: {children: {b: {mode: x}}}}"))
	f.Add([]byte("tun: [1, 2]"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}

func TestFragmentation(t *testing.T) {
	for _, tc := range []struct {
		add  string
		mode string
		size int
	}{
		{"", "yes", 0},
		{"\n    fragmentation: accept\n    fragment_size: 576", "accept", 576},
		{"\n    fragmentation: no", "no", 0},
		{"\n    fragmentation: force\n    fragment_size: 65535", "force", 65535},
	} {
		c, err := Parse("f.yaml", []byte(strings.Replace(good, "dpd_delay: 30s", "dpd_delay: 30s"+tc.add, 1)))
		if err != nil {
			t.Fatalf("%q: %v", tc.add, err)
		}
		if h := c.Connections["home"]; h.Fragmentation != tc.mode || h.FragmentSize != tc.size {
			t.Errorf("%q: fragmentation %q, fragment_size %d", tc.add, h.Fragmentation, h.FragmentSize)
		}
	}
}
