package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/goipsec/goipsec/sad"
)

func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := Run(ctx, &out, Options{Bytes: 8 << 20})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.Greeting != "hello from peer b, through ESP" || res.Bytes != 8<<20 {
		t.Fatalf("result %+v", res)
	}
	for i, list := range res.SAs {
		if len(list) != 2 {
			t.Fatalf("peer %d: %d SAs", i, len(list))
		}
		for _, s := range list {
			if s.Packets == 0 {
				t.Errorf("peer %d SA %#x (%v) carried no packets", i, s.SPI, s.Dir)
			}
			if s.Dir == sad.Inbound && s.Bytes < 1<<20 && i == 0 {
				t.Errorf("peer a inbound SA carried only %d bytes of an 8 MiB transfer", s.Bytes)
			}
		}
	}
	for i, sas := range res.IKE {
		if len(sas) != 1 || sas[0].Proposal != "aes128gcm16-prfsha256-x25519" || len(sas[0].Children) != 1 ||
			sas[0].Children[0].Proposal != "aes128gcm16-noesn" {
			t.Errorf("peer %d negotiated %+v", i, sas)
		}
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"GET http://10.99.0.2/", "SHA-256 verified", "aes128gcm16",
		"IKE SA demo: aes128gcm16-prfsha256-x25519", "CHILD_SA demo.net: ESP aes128gcm16-noesn"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
