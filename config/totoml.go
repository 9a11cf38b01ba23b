package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ToTOML writes c as an amqplb.toml file that Parse reads back to the same
// Config (File and Warnings aside). Every key is written, defaults included,
// so that the file documents itself; lists and tables that are empty are
// left out. When PasswordEnv is set the password itself is not written.
// What is written, in which order and how, follows the toml tags of the
// Config types (see Config): there is no other list of the keys.
func ToTOML(c *Config) []byte { return writeTOML(c, nil) }

// Notes are the comments ToAnnotatedTOML writes into a file converted from
// another syntax: where each key came from, and what was said about the
// lines of each section.
type Notes struct {
	// File is the source file that the comments after keys name.
	File string
	// Lines gives the line of File each key comes from, by path (see
	// Lines.Of; only a path's own line, not an enclosing one's, is used).
	// A key without one gets no comment.
	Lines *Lines
	// Before maps a table's path ("global", "frontend.0",
	// "backend.1.health_check") to the comment lines written before its
	// header.
	Before map[string][]string
	// Header are the comment lines at the top of the file.
	Header []string
}

// ToAnnotatedTOML is ToTOML with the comments n gives; an empty comment
// line is written as a bare "#".
func ToAnnotatedTOML(c *Config, n *Notes) []byte { return writeTOML(c, n) }

// tomlWriter writes a Config as TOML.
type tomlWriter struct {
	buf   bytes.Buffer
	notes *Notes
	path  string // of the table being written
}

// writeTOML writes c, with the comments of n when it is not nil.
func writeTOML(c *Config, n *Notes) []byte {
	w := &tomlWriter{notes: n}
	if n != nil {
		for _, l := range n.Header {
			w.comment(l)
		}
	}
	w.tableBody(reflect.ValueOf(c).Elem(), nil, "")
	return w.buf.Bytes()
}

// tableBody writes the keys of the table v (a struct), whose dotted key is
// key and whose path is path (see Lines.Of), then its tables.
func (w *tomlWriter) tableBody(v reflect.Value, key []string, path string) {
	var tables []field
	for _, f := range fields(v.Type()) {
		fv := v.Field(f.index)
		if omitted(v, f) {
			continue
		}
		if !f.inline && isTable(fv.Type()) {
			tables = append(tables, f)
			continue
		}
		if !f.inline || fv.Kind() != reflect.Slice {
			w.line(f.key, value(fv))
			continue
		}
		// An array of inline tables, one per line.
		fmt.Fprintf(&w.buf, "%s = [", tomlKey(f.key))
		w.note(f.key)
		for i := 0; i < fv.Len(); i++ {
			fmt.Fprintf(&w.buf, "  %s,", value(fv.Index(i)))
			w.note(f.key + "." + strconv.Itoa(i))
		}
		w.buf.WriteString("]\n")
	}
	for _, f := range tables {
		fv := reflect.Indirect(v.Field(f.index))
		k := append(append([]string(nil), key...), f.key)
		if fv.Kind() != reflect.Slice {
			p := joinPath(path, f.key)
			w.table("["+dottedKey(k)+"]", p)
			w.tableBody(fv, k, p)
			continue
		}
		for i := 0; i < fv.Len(); i++ {
			p := joinPath(path, f.key, strconv.Itoa(i))
			w.table("[["+dottedKey(k)+"]]", p)
			w.tableBody(fv.Index(i), k, p)
		}
	}
}

// isTable reports whether a value of type t is written as a table, [k] or
// [[k]], unless its field is inline: a struct, a pointer to one, or a list
// of them. A time.Duration is a string.
func isTable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

// omitted reports whether the field f of the struct v is left out.
func omitted(v reflect.Value, f field) bool {
	fv := v.Field(f.index)
	switch fv.Kind() {
	case reflect.Pointer:
		if fv.IsNil() {
			return true
		}
	case reflect.Slice, reflect.Map:
		if fv.Len() == 0 {
			return true
		}
	}
	if f.omitempty && fv.IsZero() {
		return true
	}
	if f.unless != "" {
		for _, g := range fields(v.Type()) {
			if g.key == f.unless && !v.Field(g.index).IsZero() {
				return true
			}
		}
	}
	return false
}

// value writes v as a TOML value: a table or list inline.
func value(v reflect.Value) string {
	if v.Type() == durationType {
		if time.Duration(v.Int()) == IdleHeartbeat {
			return tomlQuote("heartbeat")
		}
		return tomlQuote(FormatDuration(time.Duration(v.Int())))
	}
	switch v.Kind() {
	case reflect.String:
		return tomlQuote(v.String())
	case reflect.Int:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Float64:
		f := strconv.FormatFloat(v.Float(), 'g', -1, 64)
		if !strings.ContainsAny(f, ".eEnN") {
			f += ".0" // a TOML float, not an integer
		}
		return f
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Pointer:
		return value(v.Elem())
	case reflect.Slice:
		q := make([]string, v.Len())
		for i := range q {
			q[i] = value(v.Index(i))
		}
		return "[" + strings.Join(q, ", ") + "]"
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		kv := make([]string, len(keys))
		for i, k := range keys {
			kv[i] = tomlKey(k) + " = " + value(v.MapIndex(reflect.ValueOf(k)))
		}
		return "{ " + strings.Join(kv, ", ") + " }"
	case reflect.Struct:
		var kv []string
		for _, f := range fields(v.Type()) {
			if !omitted(v, f) {
				kv = append(kv, tomlKey(f.key)+" = "+value(v.Field(f.index)))
			}
		}
		return "{ " + strings.Join(kv, ", ") + " }"
	}
	panic(fmt.Sprintf("config: no TOML writer for %s", v.Type()))
}

// dottedKey writes the keys of a table header.
func dottedKey(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = tomlKey(k)
	}
	return strings.Join(q, ".")
}

// table starts the table whose header is header and whose path is path.
func (w *tomlWriter) table(header, path string) {
	if w.buf.Len() > 0 {
		w.buf.WriteByte('\n')
	}
	w.path = path
	if w.notes != nil {
		for _, l := range w.notes.Before[path] {
			w.comment(l)
		}
	}
	w.buf.WriteString(header)
	w.note("")
}

// comment writes s as comment lines.
func (w *tomlWriter) comment(s string) {
	if s == "" {
		w.buf.WriteString("#\n")
		return
	}
	for _, l := range strings.Split(s, "\n") {
		w.buf.WriteString("# " + commentText(l) + "\n")
	}
}

// commentText makes s fit in a TOML comment: UTF-8, no control characters
// but tabs. Messages quote words of the source, which may have any bytes.
func commentText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return '\uFFFD'
		}
		return r
	}, s)
}

// note ends a line, with a comment naming the source line of key (of the
// table itself when key is "") when known.
func (w *tomlWriter) note(key string) {
	if w.notes != nil {
		if l := w.notes.Lines.own(joinPath(w.path, key)); l > 0 {
			fmt.Fprintf(&w.buf, "  # %s:%d", w.notes.File, l)
		}
	}
	w.buf.WriteByte('\n')
}

// line writes key = value, and ends the line.
func (w *tomlWriter) line(key, value string) {
	fmt.Fprintf(&w.buf, "%s = %s", tomlKey(key), value)
	w.note(key)
}

// tomlKey writes k as a TOML key: bare when it can be, quoted otherwise.
func tomlKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBareKeyChar(k[i]) {
			return tomlQuote(k)
		}
	}
	return k
}

// tomlQuote quotes s as a TOML basic string. strconv.Quote is not used
// because its \x escapes are not TOML 1.0.
func tomlQuote(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
