// Package logging builds goipsec's zap loggers: console or JSON lines on
// one output, a level per subsystem (ike, esp, spd, tun, net, control) that
// can change while the daemon runs, and sampling so that a flood of equal
// lines (per-packet errors) stays a trickle.
//
// A logger belongs to a subsystem by name: the last element of its name
// (zap's Named) that is a subsystem decides, so log.Named("peer-a").
// Named("ike") is an ike logger. Loggers of no subsystem use the default
// level.
package logging

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Subsystems are the names that have a level of their own.
var Subsystems = []string{"ike", "esp", "spd", "tun", "net", "control"}

// Levels are the default level and the levels of some subsystems.
type Levels struct {
	Default zapcore.Level
	Sub     map[string]zapcore.Level
}

// ParseLevel reads one level: debug, info, warn or error.
func ParseLevel(s string) (zapcore.Level, error) {
	switch s {
	case "debug", "info", "warn", "error":
		return zapcore.ParseLevel(s)
	}
	return 0, fmt.Errorf("want debug, info, warn or error, got %q", s)
}

// ParseSpec reads the command line form: a comma-separated list of a
// level (the default) and SUBSYSTEM=LEVEL entries, e.g. "info,ike=debug"
// or "esp=warn". hasDefault reports whether the list sets the default.
func ParseSpec(spec string) (lv Levels, hasDefault bool, err error) {
	lv = Levels{Default: zapcore.InfoLevel, Sub: map[string]zapcore.Level{}}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		sub, level, ok := strings.Cut(item, "=")
		if !ok {
			if hasDefault {
				return lv, false, fmt.Errorf("%q: the default level is given twice", spec)
			}
			l, err := ParseLevel(item)
			if err != nil {
				return lv, false, err
			}
			lv.Default, hasDefault = l, true
			continue
		}
		if !slices.Contains(Subsystems, sub) {
			return lv, false, fmt.Errorf("%q: want a subsystem (%s), got %q", item, strings.Join(Subsystems, ", "), sub)
		}
		l, err := ParseLevel(level)
		if err != nil {
			return lv, false, fmt.Errorf("%s: %w", sub, err)
		}
		lv.Sub[sub] = l
	}
	return lv, hasDefault, nil
}

// Override returns lv with what o sets replacing it: o's default if
// hasDefault, and each of o's subsystem levels.
func (lv Levels) Override(o Levels, hasDefault bool) Levels {
	out := Levels{Default: lv.Default, Sub: map[string]zapcore.Level{}}
	if hasDefault {
		out.Default = o.Default
	}
	for k, v := range lv.Sub {
		out.Sub[k] = v
	}
	for k, v := range o.Sub {
		out.Sub[k] = v
	}
	return out
}

// String writes lv in the command line form, subsystems sorted.
func (lv Levels) String() string {
	parts := []string{lv.Default.String()}
	keys := make([]string, 0, len(lv.Sub))
	for k := range lv.Sub {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+lv.Sub[k].String())
	}
	return strings.Join(parts, ",")
}

// Logs is a root logger and the levels of its subsystems.
type Logs struct {
	// Logger is the root logger; name subsystem loggers with Named.
	Logger *zap.Logger
	def    zap.AtomicLevel
	sub    map[string]zap.AtomicLevel
	min    zap.AtomicLevel // the lowest of all: what the core lets through at all
}

// Sampling: per second and message, the first Initial lines are written,
// then one in Thereafter.
const (
	SampleInitial    = 10
	SampleThereafter = 100
)

// New builds the loggers writing format ("console" or "json") to out.
func New(format string, out zapcore.WriteSyncer, lv Levels) (*Logs, error) {
	var enc zapcore.Encoder
	switch format {
	case "console":
		c := zap.NewDevelopmentEncoderConfig()
		enc = zapcore.NewConsoleEncoder(c)
	case "json":
		c := zap.NewProductionEncoderConfig()
		c.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(c)
	default:
		return nil, fmt.Errorf("want console or json, got %q", format)
	}
	l := &Logs{def: zap.NewAtomicLevel(), min: zap.NewAtomicLevel(), sub: map[string]zap.AtomicLevel{}}
	for _, s := range Subsystems {
		l.sub[s] = zap.NewAtomicLevel()
	}
	l.SetLevels(lv)
	base := zapcore.NewCore(enc, out, zapcore.DebugLevel)
	sampled := zapcore.NewSamplerWithOptions(base, time.Second, SampleInitial, SampleThereafter)
	l.Logger = zap.New(&levelCore{Core: sampled, logs: l}, zap.ErrorOutput(out))
	return l, nil
}

// SetLevels changes the levels at once for every logger of l; subsystems
// lv does not name take its default.
func (l *Logs) SetLevels(lv Levels) {
	l.def.SetLevel(lv.Default)
	lowest := lv.Default
	for _, s := range Subsystems {
		v, ok := lv.Sub[s]
		if !ok {
			v = lv.Default
		}
		l.sub[s].SetLevel(v)
		lowest = min(lowest, v)
	}
	l.min.SetLevel(lowest)
}

// Levels returns the current levels, every subsystem listed.
func (l *Logs) Levels() Levels {
	out := Levels{Default: l.def.Level(), Sub: map[string]zapcore.Level{}}
	for s, a := range l.sub {
		out.Sub[s] = a.Level()
	}
	return out
}

// levelFor returns the level of a logger by its name.
func (l *Logs) levelFor(name string) zapcore.Level {
	for name != "" {
		i := strings.LastIndexByte(name, '.')
		if a, ok := l.sub[name[i+1:]]; ok {
			return a.Level()
		}
		if i < 0 {
			break
		}
		name = name[:i]
	}
	return l.def.Level()
}

// levelCore filters entries by the level of their logger's subsystem.
type levelCore struct {
	zapcore.Core
	logs *Logs
}

func (c *levelCore) Enabled(lvl zapcore.Level) bool { return c.logs.min.Enabled(lvl) }

func (c *levelCore) With(fields []zapcore.Field) zapcore.Core {
	return &levelCore{Core: c.Core.With(fields), logs: c.logs}
}

func (c *levelCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if ent.Level < c.logs.levelFor(ent.LoggerName) {
		return ce
	}
	return c.Core.Check(ent, ce)
}

// FromConfig reads the configuration's log.level and log.levels (already
// validated by the config package).
func FromConfig(level string, levels map[string]string) (Levels, error) {
	lv := Levels{Default: zapcore.InfoLevel, Sub: map[string]zapcore.Level{}}
	if level != "" {
		l, err := ParseLevel(level)
		if err != nil {
			return lv, fmt.Errorf("log.level: %w", err)
		}
		lv.Default = l
	}
	for sub, s := range levels {
		l, err := ParseLevel(s)
		if err != nil {
			return lv, fmt.Errorf("log.levels.%s: %w", sub, err)
		}
		lv.Sub[sub] = l
	}
	return lv, nil
}

// Full returns lv with every subsystem listed (those lv does not name at
// the default level), as Logs.Levels reports them.
func (lv Levels) Full() Levels {
	out := Levels{Default: lv.Default, Sub: map[string]zapcore.Level{}}
	for _, s := range Subsystems {
		v, ok := lv.Sub[s]
		if !ok {
			v = lv.Default
		}
		out.Sub[s] = v
	}
	return out
}
