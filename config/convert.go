package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ConvertHAProxy reads data written in haproxy.cfg syntax (file names it in
// messages) and returns its amqplb TOML equivalent, which Parse reads back
// to the same Config (File and Warnings aside), with comments: after each
// key the line of the haproxy.cfg it comes from, and before each table the
// section it comes from and the warnings about that section's lines (what
// was ignored or changed). The Config is the one the haproxy.cfg gives; on
// problems it returns a nil Config and an ErrorList, like Load.
func ConvertHAProxy(file string, data []byte) ([]byte, *Config, error) {
	p := importHAProxy(file, data)
	if err := p.err(); err != nil {
		return nil, nil, err
	}
	p.cfg.Warnings = p.warningStrings()
	n := &notes{file: file, lines: p.lines, before: map[string][]string{}}
	n.header = []string{
		fmt.Sprintf("amqplb configuration converted from %s by amqplb convert.", file),
		fmt.Sprintf("A comment after a key names the line of %s it comes from; a key", filepath.Base(file)),
		"without one has amqplb's default. Before each table: the section it comes",
		"from and what amqplb said about that section's lines.",
	}

	// The tables in the order writeTOML writes them, and the first one of
	// each section.
	var order []string
	for i := range p.cfg.Stats {
		order = append(order, fmt.Sprintf("stats.%d", i))
	}
	for i := range p.cfg.Frontends {
		order = append(order, fmt.Sprintf("frontend.%d", i))
	}
	for i := range p.cfg.Backends {
		order = append(order, fmt.Sprintf("backend.%d", i))
	}
	first := map[*hapSection]string{}
	for _, path := range order {
		s := p.owners[path]
		if s == nil {
			continue
		}
		n.before[path] = append(n.before[path], fmt.Sprintf("%s:%d-%d: %s", file, s.line, s.end, sectionName(s)))
		if _, ok := first[s]; !ok {
			first[s] = path
		}
	}
	sectionOf := func(line int) *hapSection {
		for _, s := range p.sections {
			if line >= s.line && line <= s.end {
				return s
			}
		}
		return nil
	}
	var rest []string
	sortByLine(p.warnings)
	for _, w := range p.warnings {
		s := sectionOf(w.Line)
		switch {
		case s != nil && s.kind == "global":
			n.before["global"] = append(n.before["global"], w.Error())
		case s != nil && first[s] != "":
			n.before[first[s]] = append(n.before[first[s]], w.Error())
		default:
			rest = append(rest, w.Error())
		}
	}
	if len(rest) > 0 {
		n.header = append(n.header, "", "About the other sections (defaults, sections amqplb does not use):")
		n.header = append(n.header, rest...)
	}
	if len(n.before["global"]) > 0 {
		if s := p.firstOfKind("global"); s != nil {
			n.before["global"] = append([]string{fmt.Sprintf("%s:%d-%d: global", file, s.line, s.end)}, n.before["global"]...)
		}
	}
	return writeTOML(p.cfg, n), p.cfg, nil
}

func (p *hapParser) firstOfKind(kind string) *hapSection {
	for _, s := range p.sections {
		if s.kind == kind {
			return s
		}
	}
	return nil
}

// ConvertFile reads the configuration file at path, as Load does, and
// returns it as TOML: for a haproxy.cfg what ConvertHAProxy gives, for a
// TOML file what ToTOML gives (every key written, comments dropped).
func ConvertFile(path string) ([]byte, *Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if strings.EqualFold(filepath.Ext(path), ".toml") {
		c, err := Parse(path, data)
		if err != nil {
			return nil, nil, err
		}
		return ToTOML(c), c, nil
	}
	return ConvertHAProxy(path, data)
}
