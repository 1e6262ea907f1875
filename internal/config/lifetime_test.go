package config

import (
	"strings"
	"testing"
)

// lifetimeConfig is a configuration with the given lines in its child and
// connection.
func lifetimeConfig(conn, child string) string {
	return `
connections:
  c:
    remote_addrs: [192.0.2.2]
` + conn + `    children:
      k:
        mode: tunnel
` + child + `tun:
  mode: netstack
`
}

func TestLifetimes(t *testing.T) {
	for _, tc := range []struct {
		name, conn, child string
		err               string // substring of the error; "" for none
	}{
		{"defaults", "", "", ""},
		{"all set", "    rekey_time: 4h\n    over_time: 10m\n    rand_time: 5m\n    reauth_time: 8h\n    keyingtries: 0\n",
			"        rekey_time: 1h\n        life_time: 66m\n        rand_time: 0s\n        rekey_bytes: 1000000\n        life_bytes: 2000000\n        rand_bytes: 1000\n" +
				"        rekey_packets: 1000\n        life_packets: 1100\n        rand_packets: 0\n        dpd_action: restart\n        close_action: trap\n", ""},
		{"life below rekey", "", "        rekey_time: 1h\n        life_time: 30m\n", "children.k.life_time: want more than rekey_time (1h0m0s), got 30m0s"},
		{"rand at rekey", "", "        rekey_time: 1h\n        rand_time: 1h\n", "children.k.rand_time: want less than rekey_time"},
		{"bytes", "", "        rekey_bytes: 100\n        life_bytes: 100\n", "children.k.life_bytes: want more than rekey_bytes (100), got 100"},
		{"packets", "", "        rekey_packets: 100\n        rand_packets: 200\n", "children.k.rand_packets: want less than rekey_packets"},
		{"ike rand", "    rekey_time: 1h\n    rand_time: 2h\n", "", "c.rand_time: want less than rekey_time"},
		{"dpd action", "", "        dpd_action: hold\n", "dpd_action: want clear, trap or restart"},
		{"keyingtries", "    keyingtries: -2\n", "", "c.keyingtries: want 0 (until it works) or more"},
		{"close action", "", "        close_action: restart\n", "close_action: want none, trap or start"},
		{"negative size", "", "        rekey_bytes: -1\n", "rekey_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("lifetime.yaml", []byte(lifetimeConfig(tc.conn, tc.child)))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if err != nil || tc.name != "all set" {
				return
			}
			ch := c.Connections["c"].Children["k"]
			if ch.RandTime == nil || *ch.RandTime != 0 || ch.RandPackets == nil || *ch.RandPackets != 0 || *ch.RandBytes != 1000 ||
				ch.DPDAction != "restart" || ch.CloseAction != "trap" || ch.LifeBytes != 2000000 ||
				*c.Connections["c"].KeyingTries != 0 || c.Connections["c"].ReauthTime.D().Hours() != 8 {
				t.Errorf("child %+v", ch)
			}
		})
	}
	for _, tries := range []string{"-1", "21"} {
		if _, err := Parse("ike.yaml", []byte(lifetimeConfig("", "")+"ike: {retransmit_tries: "+tries+"}\n")); err == nil ||
			!strings.Contains(err.Error(), "ike.retransmit_tries") {
			t.Errorf("retransmit_tries %s: error %v", tries, err)
		}
	}
	c, err := Parse("ike.yaml", []byte(lifetimeConfig("", "")+"ike: {retransmit_timeout: 2s, retransmit_tries: 3}\n"))
	if err != nil || c.IKE.RetransmitTimeout.D().Seconds() != 2 || c.IKE.RetransmitTries != 3 {
		t.Errorf("ike section: %+v, %v", c, err)
	}
	if c, err := Parse("d.yaml", []byte(lifetimeConfig("", ""))); err != nil || c.Connections["c"].Children["k"].DPDAction != "clear" ||
		c.Connections["c"].Children["k"].CloseAction != "none" {
		t.Errorf("default actions: %v", err)
	}
}
