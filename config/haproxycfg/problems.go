package haproxycfg

import (
	"fmt"

	"github.com/amqplb/amqplb/config"
)

// problems collects the errors and warnings found while a file is imported
// and validated, as package config does for TOML.
type problems struct {
	file     string
	errs     []*config.Error
	warnings []*config.Error
}

func (p *problems) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &config.Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) warnf(line int, format string, args ...any) {
	p.warnings = append(p.warnings, &config.Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// err returns the sorted ErrorList, or nil (not a nil ErrorList) when there
// is nothing wrong.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	config.ErrorList(p.errs).Sort()
	return config.ErrorList(p.errs)
}

func (p *problems) warningStrings() []string {
	if len(p.warnings) == 0 {
		return nil
	}
	config.ErrorList(p.warnings).Sort()
	s := make([]string, len(p.warnings))
	for i, w := range p.warnings {
		s[i] = w.Error()
	}
	return s
}
