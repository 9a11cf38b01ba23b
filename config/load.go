package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Load reads the TOML configuration file at path, whatever its name (the
// haproxy.cfg importer, package config/haproxycfg, picks the syntax by the
// name). A file that cannot be read gives the os error; a file with problems
// gives an ErrorList naming every problem found.
func Load(path string) (*Config, error) {
	c, _, err := LoadLines(path)
	return c, err
}

// Lines tells which line of a configuration file wrote a value, so that a
// problem found after loading (a certificate file that cannot be read, say)
// can be reported as FILE:LINE too.
type Lines struct{ m map[string]int }

// NewLines returns the Lines of a Config built from a file in another
// syntax: m maps the path (see Of) of each value the file wrote, and of
// each table it made, to its line. m is kept, not copied.
func NewLines(m map[string]int) *Lines { return &Lines{m} }

// Of returns the line that wrote the value at path, or the line of the
// nearest enclosing table or section that has one, or 0 when unknown. A
// path is dotted, with list indexes: "frontend.0.tls",
// "backend.1.server.2.tls", "global.log.0". A nil Lines knows no line.
func (l *Lines) Of(path string) int {
	if l == nil {
		return 0
	}
	return lineOf(l.m, path)
}

// own returns the line of path itself, 0 when path has none.
func (l *Lines) own(path string) int {
	if l == nil {
		return 0
	}
	return l.m[path]
}

// LoadLines is Load that also returns where each value was written.
func LoadLines(path string) (*Config, *Lines, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return parseTOML(path, data)
}

// Parse decodes TOML data, applies the defaults to every key not written,
// and validates the result. file names the data in messages. On any problem
// it returns a nil Config and an ErrorList with every problem found.
func Parse(file string, data []byte) (*Config, error) {
	c, _, err := parseTOML(file, data)
	return c, err
}

func parseTOML(file string, data []byte) (*Config, *Lines, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := strings.Join(strings.Fields(pe.Message), " ")
			msg += unquotedHint(string(data), pe.Position.Line)
			return nil, nil, ErrorList{{File: file, Line: pe.Position.Line, Msg: "syntax error: " + msg}}
		}
		return nil, nil, ErrorList{{File: file, Msg: "syntax error: " + err.Error()}}
	}
	d := &decoder{problems: problems{file: file}, lines: keyLines(string(data)), bad: map[string]bool{}}
	c := &Config{File: file}
	c.setDefaults()
	d.table(raw, reflect.ValueOf(c).Elem(), "", nil, "")
	c.setDerivedDefaults(d.lines)
	validate(c, &d.problems, d.lines, d.bad)
	if err := d.err(); err != nil {
		return nil, nil, err
	}
	c.Warnings = d.warningStrings()
	return c, &Lines{d.lines}, nil
}

var unquotedValue = regexp.MustCompile(`^\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z][A-Za-z0-9_.:/-]*)\s*(#.*)?$`)

// unquotedHint recognises the commonest TOML mistake, a string written
// without quotes (log_level = info), on the line of a syntax error; the
// parser's own message for it is puzzling ("got 'o'": it read "inf").
func unquotedHint(src string, line int) string {
	lines := strings.Split(src, "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	m := unquotedValue.FindStringSubmatch(strings.TrimRight(lines[line-1], "\r"))
	if m == nil || m[2] == "true" || m[2] == "false" {
		return ""
	}
	return fmt.Sprintf(" (strings need quotes: %s = %q)", m[1], m[2])
}

// decoder fills Config values from the generic map the toml parser gives,
// collecting every unknown key and type error instead of stopping at the
// first one.
type decoder struct {
	problems
	lines map[string]int  // from keyLines
	bad   map[string]bool // paths reported as having the wrong type
}

// typeErrorf reports a key at path whose value has the wrong type.
func (d *decoder) typeErrorf(path, format string, args ...any) {
	d.bad[path] = true
	d.errorf(lineOf(d.lines, path), format, args...)
}

// lineOf returns the line of path, or of the nearest enclosing table or
// element written in the file, or 0.
func lineOf(lines map[string]int, path string) int {
	for {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// table decodes the TOML table m into the struct rv. path is the indexed
// path of m (see keyLines), key its dotted TOML key without indexes, and
// label how messages name it ("backend \"rabbitmq\": health_check").
func (d *decoder) table(m map[string]any, rv reflect.Value, path string, key []string, label string) {
	known := map[string]int{}
	heartbeat := map[string]bool{}
	for _, f := range fields(rv.Type()) {
		known[f.key] = f.index
		heartbeat[f.key] = f.heartbeat
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fullKey := toml.Key(append(append([]string(nil), key...), k)).String()
		i, ok := known[k]
		if !ok {
			msg := "unknown key " + fullKey
			if s := suggest(k, known); s != "" {
				msg += " (did you mean " + s + "?)"
			}
			d.errorf(lineOf(d.lines, joinPath(path, k)), "%s", msg)
			continue
		}
		if heartbeat[k] && m[k] == "heartbeat" {
			rv.Field(i).SetInt(int64(IdleHeartbeat))
			continue
		}
		sub := append(append([]string(nil), key...), k)
		d.value(m[k], rv.Field(i), joinPath(path, k), sub, prefix(label)+k)
	}
}

func prefix(label string) string {
	if label == "" {
		return ""
	}
	return label + ": "
}

var durationType = reflect.TypeFor[time.Duration]()

// value decodes v into rv; label names the key in messages.
func (d *decoder) value(v any, rv reflect.Value, path string, key []string, label string) {
	if rv.Type() == durationType {
		switch v := v.(type) {
		case string:
			dur, err := time.ParseDuration(v)
			if err != nil {
				d.typeErrorf(path, `%s: invalid duration %q (write a number and a unit, e.g. "500ms", "5s", "1m")`, label, v)
				return
			}
			rv.SetInt(int64(dur))
		case int64:
			if v != 0 {
				d.typeErrorf(path, `%s: a duration needs a unit: write "%ds" or "%dms", not %d`, label, v, v, v)
				return
			}
			rv.SetInt(0)
		default:
			d.typeErrorf(path, `%s: expected a duration such as "5s", got %s`, label, describe(v))
		}
		return
	}
	switch rv.Kind() {
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.typeErrorf(path, "%s: expected a string, got %s", label, describe(v))
			return
		}
		rv.SetString(s)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok {
			d.typeErrorf(path, "%s: expected an integer, got %s", label, describe(v))
			return
		}
		rv.SetInt(n)
	case reflect.Float64:
		switch n := v.(type) {
		case float64:
			rv.SetFloat(n)
		case int64:
			rv.SetFloat(float64(n))
		default:
			d.typeErrorf(path, "%s: expected a number, got %s", label, describe(v))
		}
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.typeErrorf(path, "%s: expected true or false, got %s", label, describe(v))
			return
		}
		rv.SetBool(b)
	case reflect.Pointer:
		m, ok := v.(map[string]any)
		if !ok {
			d.typeErrorf(path, "%s: expected a table, got %s", label, describe(v))
			return
		}
		p := reflect.New(rv.Type().Elem())
		if df, ok := p.Interface().(defaulter); ok {
			df.setDefaults()
		}
		d.table(m, p.Elem(), path, key, label)
		rv.Set(p)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.typeErrorf(path, "%s: expected a table, got %s", label, describe(v))
			return
		}
		d.table(m, rv, path, key, label)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			d.typeErrorf(path, "%s: expected a table, got %s", label, describe(v))
			return
		}
		if len(m) == 0 {
			rv.Set(reflect.Zero(rv.Type()))
			return
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		out := reflect.MakeMapWithSize(rv.Type(), len(m))
		for _, k := range names {
			e := reflect.New(rv.Type().Elem()).Elem()
			d.value(m[k], e, joinPath(path, k), append(append([]string(nil), key...), k), label+"."+k)
			out.SetMapIndex(reflect.ValueOf(k), e)
		}
		rv.Set(out)
	case reflect.Slice:
		if rv.Type().Elem().Kind() != reflect.Struct {
			d.list(v, rv, path, key, label)
			return
		}
		elems, ok := tables(v)
		if !ok {
			k := toml.Key(key).String()
			d.typeErrorf(path, "%s: expected an array of tables, written [[%s]], got %s", label, k, describe(v))
			return
		}
		if len(elems) == 0 {
			rv.Set(reflect.Zero(rv.Type()))
			return
		}
		singular := key[len(key)-1]
		outer := strings.TrimSuffix(label, singular)
		_, named := rv.Type().Elem().FieldByName("Name")
		s := reflect.MakeSlice(rv.Type(), len(elems), len(elems))
		for i, m := range elems {
			e := s.Index(i)
			if df, ok := e.Addr().Interface().(defaulter); ok {
				df.setDefaults()
			}
			epath := joinPath(path, strconv.Itoa(i))
			if !named {
				d.table(m, e, epath, key, outer+elemLabel(singular, i, ""))
				continue
			}
			// Decode the name first so that messages about the other keys
			// can say which element they are about.
			if name, ok := m["name"]; ok {
				d.value(name, e.FieldByName("Name"), joinPath(epath, "name"), append(key, "name"), outer+elemLabel(singular, i, "")+": name")
			}
			rest := make(map[string]any, len(m))
			for k, v := range m {
				if k != "name" {
					rest[k] = v
				}
			}
			d.table(rest, e, epath, key, outer+elemLabel(singular, i, e.FieldByName("Name").String()))
		}
		rv.Set(s)
	default:
		panic(fmt.Sprintf("config: no decoder for %s", rv.Type()))
	}
}

// list decodes an array of plain values (strings) into the slice rv; an
// empty array gives a nil slice, as an absent key does.
func (d *decoder) list(v any, rv reflect.Value, path string, key []string, label string) {
	elems, ok := v.([]any)
	if !ok {
		d.typeErrorf(path, "%s: expected an array, got %s", label, describe(v))
		return
	}
	if len(elems) == 0 {
		rv.Set(reflect.Zero(rv.Type()))
		return
	}
	s := reflect.MakeSlice(rv.Type(), len(elems), len(elems))
	for i, e := range elems {
		d.value(e, s.Index(i), joinPath(path, strconv.Itoa(i)), key, fmt.Sprintf("%s[%d]", label, i))
	}
	rv.Set(s)
}

// tables returns v as a list of tables if it is an array of tables,
// written either [[x]] or x = [{...}].
func tables(v any) ([]map[string]any, bool) {
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		out := make([]map[string]any, len(v))
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out[i] = m
		}
		return out, true
	}
	return nil, false
}

// elemLabel names the i'th element of an array of tables in messages:
// `server "rmq1"`, or `server #2` while it has no name.
func elemLabel(kind string, i int, name string) string {
	if name != "" {
		return fmt.Sprintf("%s %q", kind, name)
	}
	return fmt.Sprintf("%s #%d", kind, i+1)
}

// describe names a TOML value's type and shows the value.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case time.Time:
		return "date-time " + v.Format(time.RFC3339)
	}
	return fmt.Sprintf("%T", v)
}

// suggest returns the known key closest to an unknown one, if it is close
// enough to be a typo.
func suggest(k string, known map[string]int) string {
	best, bestDist := "", 3
	for name := range known {
		if dist := editDistance(k, name); dist < bestDist || dist == bestDist && best != "" && name < best {
			best, bestDist = name, dist
		}
	}
	if bestDist > 2 || bestDist*2 >= len(k) {
		return ""
	}
	return best
}

// editDistance is the Damerau–Levenshtein (optimal string alignment)
// distance, so that a transposition ("wieght") counts as one edit.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
