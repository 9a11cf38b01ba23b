package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	File string // the file's path as given to Load or Parse
	Line int    // 1-based; 0 if unknown
	Msg  string // one line, naming the frontend/backend/server and key
}

// Error returns "FILE:LINE: msg", or "FILE: msg" when the line is unknown.
func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ErrorList is every problem found in a file, sorted by line (problems
// without a line last). Load and Parse return it as their error.
type ErrorList []*Error

// Error returns the errors one per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the errors, for errors.As and errors.Is.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Sort orders l as Load and Parse return it: by line, keeping the order of
// the errors on one line, with the errors that have no line last.
func (l ErrorList) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].Line, l[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
}

// problems collects errors and warnings while a file is decoded and
// validated.
type problems struct {
	file     string
	errs     []*Error
	warnings []*Error
}

func (p *problems) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) warnf(line int, format string, args ...any) {
	p.warnings = append(p.warnings, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// err returns the sorted ErrorList, or nil (not a nil ErrorList) when there
// is nothing wrong.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	ErrorList(p.errs).Sort()
	return ErrorList(p.errs)
}

func (p *problems) warningStrings() []string {
	if len(p.warnings) == 0 {
		return nil
	}
	ErrorList(p.warnings).Sort()
	s := make([]string, len(p.warnings))
	for i, w := range p.warnings {
		s[i] = w.Error()
	}
	return s
}
