package sloconfig

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem in an SLO config file. Its message names the
// file, the line, the field and the offending value, so that an SRE can go
// straight to it:
//
//	slo.yaml:4: slos[0].latencyBudget: "0ms": must be greater than 0
type FieldError struct {
	Source string // file name as given to Parse or Load
	Line   int    // 1-based; 0 when the problem has no line (e.g. unreadable file)
	Field  string // e.g. "slos[0].latencyBudget"; empty for whole-file problems
	Value  string // the offending value as written; see HasValue
	// HasValue is false when there is no scalar to quote (a missing field, a
	// mapping where a string belongs, ...).
	HasValue bool
	Msg      string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	if e.HasValue {
		fmt.Fprintf(&b, ": %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList holds every problem found in one file, ordered by line. Its
// Error method puts each on its own line. errors.As finds the individual
// *FieldError values through Unwrap.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual errors to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// sorted orders by line, keeping discovery order within a line, so the
// report reads top to bottom like the file.
func (l ErrorList) sorted() ErrorList {
	sort.SliceStable(l, func(i, j int) bool { return l[i].Line < l[j].Line })
	return l
}
