package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/logging"
)

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) Sync() error { return nil }
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestKeysNeverLogged runs two daemons with every subsystem at debug level
// (one logging console lines, the other JSON) through a handshake,
// traffic, a Child SA rekey and an IKE SA rekey, and looks for every key
// the key hook saw (and the pre-shared key) in the logs: in hex either
// case, base64 and raw.
func TestKeysNeverLogged(t *testing.T) {
	const psk = "0x5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e7"
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pa, remotePort: pb, ike: "aes256-sha256-ecp256", esp: "aes256-sha256",
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: psk}
	b := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pb, remotePort: pa, ike: "aes256-sha256-ecp256", esp: "aes256-sha256",
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: psk}
	var out logBuffer
	debug := logging.Levels{Default: zapcore.DebugLevel}
	p := startDaemonsLog(t, a, b, func(name string) *zap.Logger {
		format := map[string]string{"a": "console", "b": "json"}[name]
		logs, err := logging.New(format, &out, debug)
		if err != nil {
			t.Fatal(err)
		}
		return logs.Logger.Named(name)
	})
	var keys [][]byte
	collect := func() {
		for {
			select {
			case k := <-p.keysA:
				if k.IKE != nil {
					keys = append(keys, k.SKEYSEED, k.IKE.D, k.IKE.Ai, k.IKE.Ar, k.IKE.Ei, k.IKE.Er, k.IKE.Pi, k.IKE.Pr)
				}
				if c := k.ChildKeys; c != nil {
					keys = append(keys, c.EncI, c.EncR, c.IntegI, c.IntegR)
				}
			default:
				return
			}
		}
	}
	waitChild(t, p.a, true)
	waitChild(t, p.b, true)
	exchange(t, p, 64<<10)
	collect()
	old := outSPI(p.a)
	if err := p.a.Rekey(context.Background(), "link"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); outSPI(p.a) == old; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Child SA was not rekeyed")
		}
	}
	ikeBefore := ikeSAsByConn(p.a)["link"]
	if n, err := p.a.IKE().RekeyIKE("link"); err != nil || n != 1 {
		t.Fatalf("IKE rekey: %d %v", n, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ikeSAsByConn(p.a)["link"] == ikeBefore; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the IKE SA was not rekeyed")
		}
	}
	exchange(t, p, 64<<10)
	collect()

	pskBytes, err := ike.ParsePSK(psk)
	if err != nil {
		t.Fatal(err)
	}
	keys = append(keys, pskBytes)
	// 1 SA + 1 rekeyed child + 1 rekeyed IKE SA: 8 + 4 + 4 + 8 keys, + PSK.
	if len(keys) < 25 {
		t.Fatalf("the key hook gave %d keys", len(keys))
	}
	logText := out.String()
	if !strings.Contains(logText, "IKE SA rekeyed") || !strings.Contains(logText, "CHILD_SA rekeyed") || !strings.Contains(logText, `"level":"debug"`) {
		t.Fatalf("the logs lack the rekeys or debug lines:\n%s", logText)
	}
	for _, k := range keys {
		if len(k) < 8 {
			t.Fatalf("a key of %d bytes", len(k))
		}
		for _, enc := range []string{fmt.Sprintf("%x", k), fmt.Sprintf("%X", k), base64.StdEncoding.EncodeToString(k), string(k),
			fmt.Sprintf("%x", k[:8]), base64.StdEncoding.EncodeToString(k[:6])} {
			if strings.Contains(logText, enc) {
				t.Fatalf("key material %q appears in the debug log", enc)
			}
		}
	}
	if !strings.Contains(logText, "\tDEBUG\ta.ike\t") || !strings.Contains(logText, `"logger":"b.ike"`) {
		t.Fatalf("want console lines of a and JSON lines of b:\n%s", logText)
	}
	t.Logf("%d keys, %d bytes of debug log checked", len(keys), len(logText))
}
