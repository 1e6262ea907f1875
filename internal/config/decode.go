package config

import (
	"encoding/hex"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is a configuration error: where it is and what was expected.
type Error struct {
	File string
	Line int
	Path string // key path, e.g. connections.home.children.link.mode
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// scalar is implemented by types that parse themselves from a YAML scalar.
type scalar interface {
	parseScalar(s string) error
}

// Duration is a time span written as Go durations are ("30s", "4h", "1h30m").
type Duration time.Duration

func (d *Duration) parseScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("want a duration such as 30s or 4h, got %q", s)
	}
	*d = Duration(v)
	return nil
}

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Hex is binary data written as 0x-prefixed hexadecimal.
type Hex []byte

func (h *Hex) parseScalar(s string) error {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if t == s {
		return fmt.Errorf("want hexadecimal starting with 0x, got %q", redact(s))
	}
	b, err := hex.DecodeString(strings.ReplaceAll(t, ":", ""))
	if err != nil {
		return fmt.Errorf("want hexadecimal starting with 0x: %v", err)
	}
	*h = b
	return nil
}

// redact shortens a secret-looking value for an error message.
func redact(s string) string {
	if len(s) > 8 {
		return s[:4] + "..."
	}
	return s
}

// decoder fills Go values from YAML nodes, keeping the key path for errors
// and rejecting unknown keys.
type decoder struct {
	file string
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return d.decode(n.Content[0], v, path)
	}
	if v.CanAddr() {
		if s, ok := v.Addr().Interface().(scalar); ok {
			if n.Kind != yaml.ScalarNode {
				return d.errorf(n, path, "want a single value, got a %s", kindName(n))
			}
			if err := s.parseScalar(n.Value); err != nil {
				return d.errorf(n, path, "%v", err)
			}
			return nil
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Tag == "!!null" {
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(n, v.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return d.errorf(n, path, "want a mapping of keys, got a %s", kindName(n))
		}
		fields := map[string]int{}
		var names []string
		for i := 0; i < v.NumField(); i++ {
			tag := strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = i
			names = append(names, tag)
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			idx, ok := fields[k.Value]
			if !ok {
				return d.errorf(k, p, "unknown key (known here: %s)", strings.Join(names, ", "))
			}
			if seen[k.Value] {
				return d.errorf(k, p, "key given twice")
			}
			seen[k.Value] = true
			if err := d.decode(val, v.Field(idx), p); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return d.errorf(n, path, "want a mapping of names, got a %s", kindName(n))
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if k.Value == "" {
				return d.errorf(k, path, "empty name")
			}
			if v.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				return d.errorf(k, p, "name given twice")
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, e, p); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		return nil
	case reflect.Slice:
		items := n.Content
		if n.Kind == yaml.ScalarNode {
			// swanctl style: a single value or a comma-separated list.
			items = nil
			for _, part := range strings.Split(n.Value, ",") {
				if part = strings.TrimSpace(part); part != "" {
					items = append(items, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: part, Line: n.Line, Column: n.Column})
				}
			}
		} else if n.Kind != yaml.SequenceNode {
			return d.errorf(n, path, "want a list, got a %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, it := range items {
			if err := d.decode(it, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return d.errorf(n, path, "want a single value, got a %s", kindName(n))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			switch strings.ToLower(n.Value) {
			case "yes", "on":
				b, err = true, nil
			case "no", "off":
				b, err = false, nil
			default:
				return d.errorf(n, path, "want true or false, got %q", n.Value)
			}
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := strconv.ParseInt(n.Value, 0, v.Type().Bits())
		if err != nil {
			return d.errorf(n, path, "want an integer, got %q", n.Value)
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		u, err := strconv.ParseUint(n.Value, 0, v.Type().Bits())
		if err != nil {
			return d.errorf(n, path, "want an unsigned integer of %d bits, got %q", v.Type().Bits(), n.Value)
		}
		v.SetUint(u)
	default:
		return d.errorf(n, path, "cannot decode into %s", v.Type())
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return fmt.Sprintf("value %q", n.Value)
	}
	return "node"
}
