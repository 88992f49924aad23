package sloconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/scx-slo/scx-slo/internal/slovalue"
)

// Field names of one SLO entry, in the order the docs list them.
var sloFields = []string{"cgroup", "latencyBudget", "importance", "target"}

const emptyHint = `write "slos: []" to configure no SLOs`

// parser walks the YAML node tree itself rather than decoding into
// structs, so that every problem can be reported with its line and the
// walk can go on to find the rest.
type parser struct {
	src  string
	errs ErrorList
}

func (p *parser) fail(line int, field string, msg string) {
	p.errs = append(p.errs, &FieldError{Source: p.src, Line: line, Field: field, Msg: msg})
}

// failValue reports a problem with a scalar, quoting it as written.
func (p *parser) failValue(n *yaml.Node, field string, msg string) {
	if n.Kind != yaml.ScalarNode || (n.Tag == "!!null" && n.Value == "") {
		p.fail(n.Line, field, msg)
		return
	}
	p.errs = append(p.errs, &FieldError{Source: p.src, Line: n.Line, Field: field, Value: n.Value, HasValue: true, Msg: msg})
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// parserProblems are the yaml.v3 v3.0.1 errors raised by its parser rather
// than its scanner. yaml.v3 reports their line 0-based (and leaves out
// line 0), while scanner errors are 1-based.
var parserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"found undefined tag handle",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// failYAML turns a yaml.v3 syntax error into a FieldError with its line.
func (p *parser) failYAML(err error) {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		p.fail(0, "", "YAML: "+err.Error())
		return
	}
	line, _ := strconv.Atoi(m[1]) // 0 when absent
	if contains(parserProblems, m[2]) {
		line++
	}
	if line == 0 {
		p.fail(0, "", "YAML: "+m[2])
		return
	}
	p.fail(line, "", "YAML syntax: "+m[2])
}

func (p *parser) parse(data []byte) []SLO {
	if len(data) > MaxFileSize {
		p.fail(0, "", fmt.Sprintf("file is larger than %d bytes", MaxFileSize))
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			// An empty file is more often a half-written file or a wrong
			// path than a wish for no SLOs, so it must be said explicitly.
			p.fail(0, "", "file is empty; "+emptyHint)
		} else {
			p.failYAML(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.fail(extra.Line, "", "a second YAML document starts here; put all SLOs in one document")
	case !errors.Is(err, io.EOF):
		p.failYAML(err)
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		p.fail(doc.Line, "", "document is empty; "+emptyHint)
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.fail(root.Line, "", fmt.Sprintf("the top level must be a mapping with the key \"slos\", not %s", describe(root)))
		return nil
	}
	fields := p.mapping(root, "", []string{"slos"})
	list, ok := fields["slos"]
	if !ok {
		p.fail(root.Line, "slos", "missing; "+emptyHint)
		return nil
	}
	if !p.plain(list, "slos") {
		return nil
	}
	switch {
	case list.Kind == yaml.ScalarNode && list.Tag == "!!null":
		return []SLO{}
	case list.Kind != yaml.SequenceNode:
		p.failValue(list, "slos", fmt.Sprintf("must be a list of SLO entries, not %s", describe(list)))
		return nil
	case len(list.Content) > MaxSLOs:
		p.fail(list.Line, "slos", fmt.Sprintf("has %d entries; at most %d are allowed (one glob such as /kubepods.slice/** covers many cgroups)", len(list.Content), MaxSLOs))
		return nil
	}
	slos := make([]SLO, 0, len(list.Content))
	firstLine := make(map[string]int) // pattern key -> line of its first entry
	for i, item := range list.Content {
		s, key, ok := p.slo(item, fmt.Sprintf("slos[%d]", i))
		if key != "" { // checked even when other fields are bad, to report it in the same pass
			if first, dup := firstLine[key]; dup {
				p.failValue(item.Content[indexOfKey(item, "cgroup")+1], fmt.Sprintf("slos[%d].cgroup", i),
					fmt.Sprintf("duplicate: the same cgroup already has an entry on line %d", first))
				continue
			}
			firstLine[key] = s.Line
		}
		if ok {
			slos = append(slos, s)
		}
	}
	return slos
}

// slo validates one list entry and applies defaults. key identifies the
// cgroup set for duplicate detection; it is set whenever the cgroup field
// itself is valid, even if ok is false.
func (p *parser) slo(n *yaml.Node, field string) (s SLO, key string, ok bool) {
	if !p.plain(n, field) {
		return SLO{}, "", false
	}
	if n.Kind != yaml.MappingNode {
		p.failValue(n, field, fmt.Sprintf("must be a mapping with the fields %s, not %s", strings.Join(sloFields, ", "), describe(n)))
		return SLO{}, "", false
	}
	before := len(p.errs)
	s = SLO{Importance: DefaultImportance, Target: DefaultTarget, Line: n.Line}
	f := p.mapping(n, field+".", sloFields)

	if v, found := f["cgroup"]; !found {
		p.fail(n.Line, field+".cgroup", "missing; every SLO names a cgroup path or glob, e.g. cgroup: /ls")
	} else if str, isStr := p.str(v, field+".cgroup"); isStr {
		if pat, err := compilePattern(str); err != nil {
			p.failValue(v, field+".cgroup", err.Error())
		} else {
			s.Cgroup, key = str, pat.key(str)
		}
	}

	if v, found := f["latencyBudget"]; !found {
		p.fail(n.Line, field+".latencyBudget", "missing; every SLO needs a budget, e.g. latencyBudget: 2ms")
	} else if p.plain(v, field+".latencyBudget") {
		if d, err := latencyBudget(v); err != nil {
			p.failValue(v, field+".latencyBudget", err.Error())
		} else {
			s.LatencyBudget = d
		}
	}

	if v, found := f["importance"]; found && p.present(v, field+".importance", DefaultImportance) {
		if imp, ok := p.importance(v, field+".importance"); ok {
			s.Importance = imp
		}
	}

	if v, found := f["target"]; found && p.present(v, field+".target", DefaultTarget) {
		if t, ok := p.target(v, field+".target"); ok {
			s.Target = t
		}
	}
	return s, key, len(p.errs) == before
}

// latencyBudget reads a budget: YAML numbers are refused for their
// missing unit, strings go through the shared parser.
func latencyBudget(v *yaml.Node) (time.Duration, error) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!str" {
		return slovalue.ParseLatencyBudget(v.Value)
	}
	return parseDuration(v) // says what is wrong with the non-string
}

// importance and target check the YAML type (an importance written as a
// string or a float is refused, as the docs say), then hand the text to
// the shared parser.
func (p *parser) importance(v *yaml.Node, field string) (int, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
		p.failValue(v, field, slovalue.MsgImportanceRange+", not "+describe(v))
		return 0, false
	}
	i, err := slovalue.ParseImportance(v.Value)
	if err != nil {
		p.failValue(v, field, err.Error())
		return 0, false
	}
	return i, true
}

func (p *parser) target(v *yaml.Node, field string) (float64, bool) {
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!float" && v.Tag != "!!int") {
		msg := slovalue.MsgTargetRange + ", not " + describe(v)
		if v.Tag == "!!str" && strings.HasSuffix(v.Value, "%") {
			msg = slovalue.MsgTargetPercnt
		}
		p.failValue(v, field, msg)
		return 0, false
	}
	t, err := slovalue.ParseTarget(v.Value)
	if err != nil {
		p.failValue(v, field, err.Error())
		return 0, false
	}
	return t, true
}

// mapping collects the values of a mapping's keys, reporting keys not in
// known, repeated keys and keys that are not plain names.
func (p *parser) mapping(n *yaml.Node, prefix string, known []string) map[string]*yaml.Node {
	out := make(map[string]*yaml.Node, len(known))
	keyLine := make(map[string]int, len(known))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			p.fail(k.Line, strings.TrimSuffix(prefix, "."), fmt.Sprintf("keys must be plain field names, not %s", describe(k)))
			continue
		}
		if first, dup := keyLine[k.Value]; dup {
			p.fail(k.Line, prefix+k.Value, fmt.Sprintf("duplicate field; first set on line %d", first))
			continue
		}
		keyLine[k.Value] = k.Line
		if !contains(known, k.Value) {
			p.fail(k.Line, prefix+k.Value, unknownField(k.Value, known))
			continue
		}
		out[k.Value] = v
	}
	return out
}

func unknownField(name string, known []string) string {
	fold := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
	}
	for _, k := range known {
		if fold(k) == fold(name) {
			return fmt.Sprintf("unknown field; did you mean %q?", k)
		}
	}
	return "unknown field; known fields here: " + strings.Join(known, ", ")
}

// plain rejects aliases, which would let one node stand in several places
// and make line numbers in messages misleading.
func (p *parser) plain(n *yaml.Node, field string) bool {
	if n.Kind == yaml.AliasNode {
		p.fail(n.Line, field, "YAML aliases (*name) are not supported; write the value out")
		return false
	}
	return true
}

// present reports whether an optional field has a value. A key with no
// value is rejected: it usually means the value was forgotten.
func (p *parser) present(v *yaml.Node, field string, def any) bool {
	if !p.plain(v, field) {
		return false
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		p.fail(v.Line, field, fmt.Sprintf("has no value; remove the field to use the default %v", def))
		return false
	}
	return true
}

// str returns a string scalar; numbers, booleans and the like must be
// quoted to be used as strings.
func (p *parser) str(v *yaml.Node, field string) (string, bool) {
	if !p.plain(v, field) {
		return "", false
	}
	if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
		msg := "must be a string, not " + describe(v)
		if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			msg += "; quote it"
		}
		p.failValue(v, field, msg)
		return "", false
	}
	return v.Value, true
}

// describe names a node's type for messages: "a mapping", "an integer".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return tagName(n.Tag)
}

func tagName(tag string) string {
	switch tag {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "an empty value"
	case "!!timestamp":
		return "a timestamp"
	case "!!binary":
		return "binary data"
	case "!!merge":
		return "a merge key (<<)"
	}
	return "a value tagged " + tag
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func indexOfKey(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return i
		}
	}
	return -1
}
