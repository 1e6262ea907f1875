package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The configuration reference, docs/configuration.md, has one table row
// per key: | `full.key.path` | type | default | description |, in tables
// whose header is | key | type | default | description |. Map entries are
// written <name> and list items [] (connections.<name>.children.<name>.mode,
// tun.forwards[].listen); a map entry is a key of its own
// (connections.<name>). The tests below keep it and the code in step.

const docsDir = "../../docs"

// refKey is a configuration key found by reflection.
type refKey struct {
	path string
	typ  reflect.Type
}

var scalarType = reflect.TypeFor[scalar]()

func isScalar(t reflect.Type) bool { return reflect.PointerTo(t).Implements(scalarType) }

// configKeys walks Config by its yaml tags, as the decoder does.
func configKeys(t *testing.T) []refKey {
	t.Helper()
	var out []refKey
	var walk func(st reflect.Type, prefix string)
	var descend func(ft reflect.Type, path string)
	walk = func(st reflect.Type, prefix string) {
		for i := 0; i < st.NumField(); i++ {
			f := st.Field(i)
			tag, ok := f.Tag.Lookup("yaml")
			if !ok {
				t.Errorf("%s.%s (under %q) has no yaml tag: name it or write yaml:\"-\"", st.Name(), f.Name, prefix)
				continue
			}
			tag = strings.Split(tag, ",")[0]
			if tag == "-" || tag == "" {
				continue
			}
			p := join(prefix, tag)
			out = append(out, refKey{p, f.Type})
			descend(f.Type, p)
		}
	}
	descend = func(ft reflect.Type, path string) {
		if isScalar(ft) {
			return
		}
		switch ft.Kind() {
		case reflect.Pointer:
			descend(ft.Elem(), path)
		case reflect.Struct:
			walk(ft, path)
		case reflect.Map:
			// An entry is a key of its own (connections.<name>).
			out = append(out, refKey{path + ".<name>", ft.Elem()})
			descend(ft.Elem(), path+".<name>")
		case reflect.Slice:
			descend(ft.Elem(), path+"[]")
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return out
}

// typeName is how the reference names a key's type (the start of its
// type cell).
func typeName(t reflect.Type) string {
	if isScalar(t) {
		return strings.ToLower(t.Name()) // duration, hex
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Struct:
		return "mapping"
	case reflect.Map:
		return "mapping of names"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct || t.Elem().Kind() == reflect.Pointer {
			return "list of mappings"
		}
		return "list of " + typeName(t.Elem()) + "s"
	}
	return t.String()
}

// refRow is one key row of the reference.
type refRow struct {
	line          int
	key, typ, def string
}

func readReference(t *testing.T) (map[string]refRow, []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(docsDir, "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]refRow{}
	var order []string
	inTable := false
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		if len(cells) >= 4 && strings.EqualFold(cells[0], "key") && strings.EqualFold(cells[1], "type") && strings.EqualFold(cells[2], "default") {
			inTable = true
			continue
		}
		if !inTable || strings.HasPrefix(cells[0], "---") || strings.HasPrefix(cells[0], ":--") {
			continue
		}
		if len(cells) < 4 || !strings.HasPrefix(cells[0], "`") || !strings.HasSuffix(cells[0], "`") {
			t.Errorf("configuration.md:%d: a key row wants | `key` | type | default | description |, got %q", i+1, line)
			continue
		}
		key := strings.Trim(cells[0], "`")
		if prev, dup := rows[key]; dup {
			t.Errorf("configuration.md:%d: %s listed again (first at line %d)", i+1, key, prev.line)
			continue
		}
		if cells[3] == "" {
			t.Errorf("configuration.md:%d: %s has no description", i+1, key)
		}
		rows[key] = refRow{line: i + 1, key: key, typ: cells[1], def: cells[2]}
		order = append(order, key)
	}
	if len(rows) == 0 {
		t.Fatal("configuration.md: no key tables found")
	}
	return rows, order
}

// TestReferenceComplete fails when a key of the code is missing from
// docs/configuration.md, or the reference names a key the code does not
// have, or gives it another type.
func TestReferenceComplete(t *testing.T) {
	keys := configKeys(t)
	rows, _ := readReference(t)
	known := map[string]bool{}
	for _, k := range keys {
		known[k.path] = true
		r, ok := rows[k.path]
		if !ok {
			t.Errorf("docs/configuration.md does not document %s (%s): add a row | `%s` | %s | default | description |", k.path, typeName(k.typ), k.path, typeName(k.typ))
			continue
		}
		if want := typeName(k.typ); !strings.HasPrefix(r.typ, want) {
			t.Errorf("configuration.md:%d: %s is a %s, the reference says %q", r.line, k.path, want, r.typ)
		}
	}
	for key, r := range rows {
		if !known[key] {
			t.Errorf("configuration.md:%d: %s is not a configuration key (the code has no such yaml tag)", r.line, key)
		}
	}
}

// minimalConfigs set only what a valid file must; the defaults the
// reference gives as a single `literal` are checked against what Parse
// fills in for every key they leave out.
var minimalConfigs = []string{`
connections:
  c:
    remote_addrs: [192.0.2.2]
    children:
      k:
        manual:
          enc: aes128gcm16
          in:  {spi: 0x1001, key: 0x000102030405060708090a0b0c0d0e0f10111213}
          out: {spi: 0x2002, key: 0x101112131415161718191a1b1c1d1e1f20212223}
secrets:
  s: {secret: x}
tun: {}
control: {}
daemon: {}
log: {}
`, `
connections:
  c:
    children:
      k: {}
tun:
  mode: netstack
  addresses: [10.0.0.1/24]
  forwards: [{listen: 127.0.0.1:8080, to: 10.0.0.2:80}]
  expose: [{port: 80, to: 127.0.0.1:8000}]
`}

// TestReferenceDefaults checks every `literal` default of the reference.
func TestReferenceDefaults(t *testing.T) {
	rows, _ := readReference(t)
	literal := regexp.MustCompile("^`([^`]*)`$")
	checked := map[string]bool{}
	for i, text := range minimalConfigs {
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(text), &root); err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		setKeys(root.Content[0], reflect.TypeFor[Config](), "", set)
		c, err := Parse(fmt.Sprintf("minimal-%d", i), []byte(text))
		if err != nil {
			t.Fatalf("minimal config %d: %v", i, err)
		}
		for key, r := range rows {
			m := literal.FindStringSubmatch(r.def)
			if m == nil || set[key] {
				continue
			}
			v, ok := valueAt(reflect.ValueOf(c).Elem(), key)
			if !ok {
				continue // not present in this config
			}
			got, ok := format(v)
			if !ok {
				continue
			}
			if got != m[1] && !checked[key] {
				t.Errorf("configuration.md:%d: %s defaults to %q, the reference says %q", r.line, key, got, m[1])
			}
			checked[key] = true
		}
	}
	scalarKey := map[string]bool{}
	for _, k := range configKeys(t) {
		_, ok := format(reflect.Zero(k.typ))
		scalarKey[k.path] = ok || k.typ.Kind() == reflect.Pointer && k.typ.Elem().Kind() != reflect.Struct
	}
	for key, r := range rows {
		// Lists (`dynamic`, `default`) are described, not compared.
		if literal.MatchString(r.def) && scalarKey[key] && !checked[key] {
			t.Errorf("configuration.md:%d: the default of %s (%s) is checked by no minimal config: extend minimalConfigs", r.line, key, r.def)
		}
	}
}

// setKeys records the key paths (with <name> and []) a YAML node sets.
func setKeys(n *yaml.Node, t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isScalar(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			for j := 0; j < t.NumField(); j++ {
				if strings.Split(t.Field(j).Tag.Get("yaml"), ",")[0] == k {
					out[join(prefix, k)] = true
					setKeys(n.Content[i+1], t.Field(j).Type, join(prefix, k), out)
				}
			}
		}
	case reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			setKeys(n.Content[i+1], t.Elem(), prefix+".<name>", out)
		}
	case reflect.Slice:
		for _, it := range n.Content {
			setKeys(it, t.Elem(), prefix+"[]", out)
		}
	}
}

// valueAt finds key in v, taking the first entry of maps and lists.
func valueAt(v reflect.Value, key string) (reflect.Value, bool) {
	for _, seg := range strings.Split(strings.ReplaceAll(key, "[]", ".[]"), ".") {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return v, false
			}
			v = v.Elem()
		}
		switch seg {
		case "<name>":
			if v.Kind() != reflect.Map || v.Len() == 0 {
				return v, false
			}
			ks := v.MapKeys()
			sort.Slice(ks, func(i, j int) bool { return ks[i].String() < ks[j].String() })
			v = v.MapIndex(ks[0])
		case "[]":
			if v.Kind() != reflect.Slice || v.Len() == 0 {
				return v, false
			}
			v = v.Index(0)
		default:
			if v.Kind() != reflect.Struct {
				return v, false
			}
			found := false
			for i := 0; i < v.NumField(); i++ {
				if strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0] == seg {
					v, found = v.Field(i), true
					break
				}
			}
			if !found {
				return v, false
			}
		}
	}
	return v, true
}

// format writes a scalar value as the reference writes defaults.
func format(v reflect.Value) (string, bool) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "", false
		}
		v = v.Elem()
	}
	if v.Type() == reflect.TypeFor[Duration]() {
		return time.Duration(v.Int()).String(), true
	}
	switch v.Kind() {
	case reflect.String:
		return v.String(), true
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10), true
	}
	return "", false
}

// keyRef matches a configuration key path written in backquotes in the
// docs: `tun.mode`, `connections.home.children.link.mode`,
// `tun.forwards[0].listen`, `connections.<name>.local.auth`.
var keyRef = regexp.MustCompile("`((?:connections|secrets|tun|control|daemon|log)(?:\\.[A-Za-z0-9_<>-]+(?:\\[[0-9]*\\])?)+)")

// TestDocsNameRealKeys fails when docs/*.md name a key path that does not
// exist (concrete names stand for <name>, [N] for []).
func TestDocsNameRealKeys(t *testing.T) {
	known := map[string]bool{}
	for _, k := range configKeys(t) {
		known[k.path] = true
	}
	files, _ := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if len(files) == 0 {
		t.Fatal("no docs/*.md")
	}
	index := regexp.MustCompile(`\[[0-9]*\]`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range keyRef.FindAllStringSubmatch(line, -1) {
				if !matchesKey(index.ReplaceAllString(m[1], "[]"), known) {
					t.Errorf("%s:%d: %s is not a configuration key", filepath.Base(f), i+1, m[1])
				}
			}
		}
	}
}

// matchesKey reports whether path is a known key with any name for each
// <name>.
func matchesKey(path string, known map[string]bool) bool {
	if known[path] {
		return true
	}
	segs := strings.Split(path, ".")
	for k := range known {
		ks := strings.Split(k, ".")
		if len(ks) != len(segs) {
			continue
		}
		ok := true
		for i := range ks {
			if ks[i] != segs[i] && ks[i] != "<name>" {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestDocsYAML loads every ```yaml block of docs/*.md as a configuration
// file, unless its first line starts with "# fragment" (a piece of a file,
// or not goipsec's).
func TestDocsYAML(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(docsDir, "*.md"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) != "```yaml" {
				continue
			}
			start := i + 1
			var block []string
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				block = append(block, lines[i])
			}
			if len(block) > 0 && strings.HasPrefix(strings.TrimSpace(block[0]), "# fragment") {
				continue
			}
			name := fmt.Sprintf("%s:%d", filepath.Base(f), start)
			if _, err := Parse(name, []byte(strings.Join(block, "\n"))); err != nil {
				t.Errorf("%v", err)
			}
			n++
		}
	}
	if n == 0 {
		t.Error("no yaml blocks in docs/*.md")
	}
}
