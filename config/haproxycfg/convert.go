package haproxycfg

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/amqplb/amqplb/config"
)

// Load reads the configuration file at path: TOML when its name ends in
// .toml (config.Load), haproxy.cfg syntax otherwise. A file that cannot be
// read gives the os error; a file with problems gives a config.ErrorList
// naming every problem found.
func Load(path string) (*config.Config, error) {
	c, _, err := LoadLines(path)
	return c, err
}

// LoadLines is Load that also returns where each value was written.
func LoadLines(path string) (*config.Config, *config.Lines, error) {
	if isTOML(path) {
		return config.LoadLines(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return parseHAProxy(path, data)
}

func isTOML(path string) bool { return strings.EqualFold(filepath.Ext(path), ".toml") }

// Convert reads data written in haproxy.cfg syntax (file names it in
// messages) and returns its amqplb TOML equivalent, which config.Parse reads
// back to the same Config (File and Warnings aside), with comments: after
// each key the line of the haproxy.cfg it comes from, and before each table
// the section it comes from and the warnings about that section's lines
// (what was ignored or changed). The Config is the one the haproxy.cfg
// gives; on problems it returns a nil Config and a config.ErrorList, like
// Load.
func Convert(file string, data []byte) ([]byte, *config.Config, error) {
	p := importHAProxy(file, data)
	if err := p.err(); err != nil {
		return nil, nil, err
	}
	p.cfg.Warnings = p.warningStrings()
	n := &config.Notes{File: file, Lines: config.NewLines(p.lines), Before: map[string][]string{}}
	n.Header = []string{
		fmt.Sprintf("amqplb configuration converted from %s by amqplb convert.", file),
		fmt.Sprintf("A comment after a key names the line of %s it comes from; a key", filepath.Base(file)),
		"without one has amqplb's default. Before each table: the section it comes",
		"from and what amqplb said about that section's lines.",
	}

	// The tables in the order config.ToAnnotatedTOML writes them, and the first one of
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
		n.Before[path] = append(n.Before[path], fmt.Sprintf("%s:%d-%d: %s", file, s.line, s.end, sectionName(s)))
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
	config.ErrorList(p.warnings).Sort()
	for _, w := range p.warnings {
		s := sectionOf(w.Line)
		switch {
		case s != nil && s.kind == "global":
			n.Before["global"] = append(n.Before["global"], w.Error())
		case s != nil && first[s] != "":
			n.Before[first[s]] = append(n.Before[first[s]], w.Error())
		default:
			rest = append(rest, w.Error())
		}
	}
	if len(rest) > 0 {
		n.Header = append(n.Header, "", "About the other sections (defaults, sections amqplb does not use):")
		n.Header = append(n.Header, rest...)
	}
	if len(n.Before["global"]) > 0 {
		if s := p.firstOfKind("global"); s != nil {
			n.Before["global"] = append([]string{fmt.Sprintf("%s:%d-%d: global", file, s.line, s.end)}, n.Before["global"]...)
		}
	}
	return config.ToAnnotatedTOML(p.cfg, n), p.cfg, nil
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
// returns it as TOML: for a haproxy.cfg what Convert gives, for a TOML file
// what config.ToTOML gives (every key written, comments dropped).
func ConvertFile(path string) ([]byte, *config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if isTOML(path) {
		c, err := config.Parse(path, data)
		if err != nil {
			return nil, nil, err
		}
		return config.ToTOML(c), c, nil
	}
	return Convert(path, data)
}
