package config

import (
	"strconv"
	"strings"
)

// BurntSushi/toml v1.6.0 records key positions only internally (MetaData's
// unexported keyInfo, keyed by the dotted key, so all elements of an array of
// tables share one entry), and the decoder stops at the first type error. So
// config decodes the generic map itself and finds lines with keyLines, a
// small scanner run only on text the toml parser has already accepted.

// keyLines maps every key of a valid TOML document to the line it is written
// on. A path is the keys joined by "." with the index of each array element:
// "backend.0.server.1.weight". A table header, or an inline table that is an
// array element, maps its own path ("backend.0.server.1").
func keyLines(src string) map[string]int {
	s := &lineScanner{src: src, line: 1, out: map[string]int{}, arrays: map[string]int{}}
	s.document()
	return s.out
}

type lineScanner struct {
	src    string
	i      int
	line   int
	out    map[string]int
	arrays map[string]int // path of an array of tables → elements seen
}

func joinPath(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func (s *lineScanner) eof() bool { return s.i >= len(s.src) }

func (s *lineScanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

// advance moves n bytes on, counting the newlines passed.
func (s *lineScanner) advance(n int) {
	if s.i+n > len(s.src) {
		n = len(s.src) - s.i
	}
	s.line += strings.Count(s.src[s.i:s.i+n], "\n")
	s.i += n
}

func (s *lineScanner) skipSpace() {
	for !s.eof() && (s.peek() == ' ' || s.peek() == '\t') {
		s.i++
	}
}

// skipBlank skips spaces, newlines and comments.
func (s *lineScanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.advance(1)
		case '#':
			s.skipComment()
		default:
			return
		}
	}
}

func (s *lineScanner) skipComment() {
	for !s.eof() && s.peek() != '\n' {
		s.i++
	}
}

func (s *lineScanner) document() {
	table := ""
	for !s.eof() {
		s.skipBlank()
		if s.eof() {
			return
		}
		start := s.i
		if s.peek() == '[' {
			table = s.header()
		} else {
			s.keyValue(table)
		}
		// Rest of the line: spaces and a comment at most.
		s.skipSpace()
		if s.peek() == '#' {
			s.skipComment()
		}
		if s.i == start { // not TOML after all; never loop forever
			s.advance(1)
		}
	}
}

// header reads [a.b] or [[a.b]], records its line and returns its path.
func (s *lineScanner) header() string {
	line := s.line
	array := strings.HasPrefix(s.src[s.i:], "[[")
	if array {
		s.i += 2
	} else {
		s.i++
	}
	keys := s.keys()
	s.skipSpace()
	if array {
		s.advance(2)
	} else {
		s.advance(1)
	}
	path := ""
	for n, k := range keys {
		path = joinPath(path, k)
		last := n == len(keys)-1
		switch {
		case last && array:
			idx := s.arrays[path]
			s.arrays[path] = idx + 1
			path = joinPath(path, strconv.Itoa(idx))
		case s.arrays[path] > 0: // an element of an array of tables: the latest
			path = joinPath(path, strconv.Itoa(s.arrays[path]-1))
		}
	}
	s.out[path] = line
	return path
}

// keyValue reads key = value in table.
func (s *lineScanner) keyValue(table string) {
	line := s.line
	keys := s.keys()
	if len(keys) == 0 {
		return
	}
	path := table
	for _, k := range keys {
		path = joinPath(path, k)
		if _, ok := s.out[path]; !ok { // a.b = 1 also defines a, here
			s.out[path] = line
		}
	}
	s.out[path] = line
	s.skipSpace()
	if s.peek() == '=' {
		s.i++
	}
	s.skipSpace()
	s.value(path)
}

// keys reads a dotted key: bare, "basic" or 'literal' parts.
func (s *lineScanner) keys() []string {
	var keys []string
	for {
		s.skipSpace()
		if s.eof() {
			return keys
		}
		switch c := s.peek(); {
		case c == '"':
			raw := s.quoted('"')
			k, err := strconv.Unquote(raw)
			if err != nil {
				k = strings.Trim(raw, `"`)
			}
			keys = append(keys, k)
		case c == '\'':
			keys = append(keys, strings.Trim(s.quoted('\''), "'"))
		default:
			start := s.i
			for !s.eof() && isBareKeyChar(s.peek()) {
				s.i++
			}
			if s.i == start {
				return keys
			}
			keys = append(keys, s.src[start:s.i])
		}
		s.skipSpace()
		if s.peek() != '.' {
			return keys
		}
		s.i++
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// quoted reads a one-line string starting at the quote q and returns it
// with its quotes.
func (s *lineScanner) quoted(q byte) string {
	start := s.i
	s.i++
	for !s.eof() && s.peek() != q && s.peek() != '\n' {
		if q == '"' && s.peek() == '\\' {
			s.i++
		}
		s.i++
	}
	s.advance(1)
	return s.src[start:s.i]
}

// value skips one value, recording the keys of inline tables and the
// elements of arrays under path.
func (s *lineScanner) value(path string) {
	rest := s.src[s.i:]
	switch {
	case strings.HasPrefix(rest, `"""`), strings.HasPrefix(rest, "'''"):
		s.multiline(rest[:3])
	case strings.HasPrefix(rest, `"`):
		s.quoted('"')
	case strings.HasPrefix(rest, "'"):
		s.quoted('\'')
	case strings.HasPrefix(rest, "["):
		s.i++
		for n := 0; ; n++ {
			s.skipBlank()
			if s.eof() {
				return
			}
			if s.peek() == ']' {
				s.i++
				return
			}
			start := s.i
			s.value(joinPath(path, strconv.Itoa(n)))
			s.skipBlank()
			if s.peek() == ',' {
				s.i++
			} else if s.i == start {
				s.advance(1)
			}
		}
	case strings.HasPrefix(rest, "{"):
		s.out[path] = s.line
		s.i++
		for {
			s.skipBlank()
			if s.eof() {
				return
			}
			if s.peek() == '}' {
				s.i++
				return
			}
			start := s.i
			s.keyValue(path)
			s.skipBlank()
			if s.peek() == ',' {
				s.i++
			} else if s.i == start {
				s.advance(1)
			}
		}
	default: // number, boolean, date-time (which may hold one space)
		for !s.eof() {
			c := s.peek()
			if c == ' ' && s.i+1 < len(s.src) && s.src[s.i+1] >= '0' && s.src[s.i+1] <= '9' &&
				s.i >= 10 && s.src[s.i-3] == '-' {
				s.i++ // "1979-05-27 07:32:00"
				continue
			}
			if strings.IndexByte(" \t\r\n,]}#", c) >= 0 {
				return
			}
			s.i++
		}
	}
}

// multiline skips a multi-line string, delimited by three quotes of
// either kind; up to two more quotes may end it.
func (s *lineScanner) multiline(delim string) {
	s.advance(3)
	for !s.eof() {
		if delim == `"""` && s.peek() == '\\' {
			s.advance(2)
			continue
		}
		if strings.HasPrefix(s.src[s.i:], delim) {
			s.advance(3)
			for n := 0; n < 2 && s.peek() == delim[0]; n++ {
				s.advance(1)
			}
			return
		}
		s.advance(1)
	}
}
