package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		spec, want, err string
		hasDefault      bool
	}{
		{spec: "debug", want: "debug", hasDefault: true},
		{spec: "warn,ike=debug", want: "warn,ike=debug", hasDefault: true},
		{spec: "ike=debug,esp=warn", want: "info,esp=warn,ike=debug"},
		{spec: " ike=error , info ", want: "info,ike=error", hasDefault: true},
		{spec: "verbose", err: `want debug, info, warn or error, got "verbose"`},
		{spec: "info,debug", err: `"info,debug": the default level is given twice`},
		{spec: "ikev2=debug", err: `"ikev2=debug": want a subsystem (ike, esp, spd, tun, net, control), got "ikev2"`},
		{spec: "ike=loud", err: `ike: want debug, info, warn or error, got "loud"`},
		{spec: "", err: `want debug, info, warn or error, got ""`},
	} {
		lv, def, err := ParseSpec(tc.spec)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: error %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || lv.String() != tc.want || def != tc.hasDefault {
			t.Errorf("%q: %v %v %v, want %s %v", tc.spec, lv, def, err, tc.want, tc.hasDefault)
		}
	}
}

func TestOverride(t *testing.T) {
	cfg, _, _ := ParseSpec("warn,ike=info,esp=error")
	cli, hasDef, _ := ParseSpec("ike=debug")
	if got := cfg.Override(cli, hasDef).String(); got != "warn,esp=error,ike=debug" {
		t.Errorf("override: %s", got)
	}
	cli, hasDef, _ = ParseSpec("error")
	if got := cfg.Override(cli, hasDef).String(); got != "error,esp=error,ike=info" {
		t.Errorf("override of the default: %s", got)
	}
}

// syncBuffer is a WriteSyncer over a buffer, safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) Sync() error { return nil }
func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil {
			out = append(out, m)
		}
	}
	s.b.Reset()
	return out
}

func TestSubsystemLevels(t *testing.T) {
	var buf syncBuffer
	lv, _, _ := ParseSpec("info,ike=debug,esp=error")
	logs, err := New("json", &buf, lv)
	if err != nil {
		t.Fatal(err)
	}
	root := logs.Logger
	peer := root.Named("peer-a")
	loggers := map[string]*zap.Logger{
		"root": root, "ike": root.Named("ike"), "peer-ike": peer.Named("ike").With(zap.String("sa", "x")),
		"esp": peer.Named("esp"), "tun": root.Named("tun"), "ike-sub": root.Named("ike").Named("rekey"),
		"other": root.Named("dataplane"),
	}
	emit := func() {
		for name, l := range loggers {
			// Distinct messages: the sampler counts by message.
			l.Debug("d "+name, zap.String("who", name))
			l.Info("i "+name, zap.String("who", name))
			l.Warn("w "+name, zap.String("who", name))
			l.Error("e "+name, zap.String("who", name))
		}
	}
	count := func() map[string]int {
		n := map[string]int{}
		for _, m := range buf.lines() {
			n[m["who"].(string)]++
		}
		return n
	}
	emit()
	want := map[string]int{"root": 3, "ike": 4, "peer-ike": 4, "esp": 1, "tun": 3, "ike-sub": 4, "other": 3}
	if got := count(); !equalCounts(got, want) {
		t.Errorf("lines per logger %v, want %v", got, want)
	}

	// A reload changes the levels of loggers made before.
	lv, _, _ = ParseSpec("warn,esp=debug")
	logs.SetLevels(lv)
	emit()
	want = map[string]int{"root": 2, "ike": 2, "peer-ike": 2, "esp": 4, "tun": 2, "ike-sub": 2, "other": 2}
	if got := count(); !equalCounts(got, want) {
		t.Errorf("after SetLevels: lines per logger %v, want %v", got, want)
	}
	if got := logs.Levels(); got.Default != zapcore.WarnLevel || got.Sub["esp"] != zapcore.DebugLevel || got.Sub["ike"] != zapcore.WarnLevel {
		t.Errorf("Levels() = %v", got)
	}
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// TestSampling: a flood of one line (a per-packet error) is cut down to
// the first SampleInitial and then one in SampleThereafter per second.
func TestSampling(t *testing.T) {
	var buf syncBuffer
	logs, err := New("json", &buf, Levels{Default: zapcore.DebugLevel})
	if err != nil {
		t.Fatal(err)
	}
	esp := logs.Logger.Named("esp")
	for i := range 1000 {
		esp.Warn("bad packet", zap.Int("i", i))
	}
	esp.Warn("another line")
	lines := buf.lines()
	// Within one second: 10, then every 100th of the remaining 990 (9),
	// plus the other message. A second boundary may let a few more through.
	if n := len(lines); n < SampleInitial+1 || n > 2*(SampleInitial+1000/SampleThereafter)+1 {
		t.Errorf("%d lines written for 1001 logged", n)
	}
	if last := lines[len(lines)-1]; last["msg"] != "another line" {
		t.Errorf("another message was sampled away: %v", last)
	}
}

func TestFormats(t *testing.T) {
	var buf syncBuffer
	logs, err := New("console", &buf, Levels{Default: zapcore.InfoLevel})
	if err != nil {
		t.Fatal(err)
	}
	logs.Logger.Named("ike").Info("hello", zap.String("k", "v"))
	buf.mu.Lock()
	out := buf.b.String()
	buf.mu.Unlock()
	if !strings.Contains(out, "INFO\tike\thello\t{\"k\": \"v\"}") {
		t.Errorf("console line %q", out)
	}
	if _, err := New("xml", &buf, Levels{}); err == nil || err.Error() != `want console or json, got "xml"` {
		t.Errorf("format xml: %v", err)
	}
}
