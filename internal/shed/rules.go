package shed

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Action says what to do with a request a rule matches.
type Action uint8

const (
	// Shed: the request only gets the rule's class; it is sheddable.
	Shed Action = iota
	// Pass: never shed (priority traffic).
	Pass
	// Probe: never shed, counted as a health or readiness probe.
	Probe
)

var actionNames = map[string]Action{"shed": Shed, "pass": Pass, "probe": Probe}

func (a Action) String() string {
	for n, v := range actionNames {
		if v == a {
			return n
		}
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// DefaultClass is the class of requests no rule matches.
const DefaultClass = "default"

// Rule matches requests by method, path and header; every matcher given
// must match. A path or header value ending in "*" matches by prefix,
// otherwise exactly. A header without a value matches when present.
type Rule struct {
	Class  string
	Action Action
	Method string
	Path   string
	Header string // canonical header name
	Value  string
}

// Match reports whether the rule matches r.
func (rl *Rule) Match(r *http.Request) bool {
	if rl.Method != "" && r.Method != rl.Method {
		return false
	}
	if rl.Path != "" && !matchPattern(rl.Path, r.URL.Path) {
		return false
	}
	if rl.Header != "" {
		vals, ok := r.Header[rl.Header]
		if !ok {
			return false
		}
		if rl.Value == "" {
			return true
		}
		for _, v := range vals {
			if matchPattern(rl.Value, v) {
				return true
			}
		}
		return false
	}
	return true
}

func matchPattern(pattern, s string) bool {
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(s, p)
	}
	return s == pattern
}

// DefaultProbeRules let Kubernetes probes and the usual health paths
// through: a pod that fails its readiness probe while overloaded would be
// taken out of service, turning a brown-out into an outage.
func DefaultProbeRules() []Rule {
	return []Rule{
		{Class: "probe", Action: Probe, Header: "User-Agent", Value: "kube-probe/*"},
		{Class: "probe", Action: Probe, Path: "/healthz"},
		{Class: "probe", Action: Probe, Path: "/readyz"},
		{Class: "probe", Action: Probe, Path: "/livez"},
	}
}

// RuleError is one bad rule. Its message names where the rule came from,
// the field and the value:
//
//	rules.yaml:7: rules[1].method: "get": methods are case-sensitive; write "GET"
type RuleError struct {
	Source string // file name or "--rule"
	Line   int    // 0 when not from a file
	Field  string
	Value  string
	Msg    string
}

func (e *RuleError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	if e.Value != "" {
		fmt.Fprintf(&b, ": %q", e.Value)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// ruleSpec is a rule as written, in a file or a --rule flag.
type ruleSpec struct {
	Class  string `yaml:"class"`
	Action string `yaml:"action"`
	Method string `yaml:"method"`
	Path   string `yaml:"path"`
	Header string `yaml:"header"`
}

var (
	classRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,63}$`)
	methodRE = regexp.MustCompile(`^[A-Z]+$`)
	// RFC 9110 token characters.
	tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// compile validates s; field prefixes the field names in errors.
func (s ruleSpec) compile(source string, line int, field string) (Rule, error) {
	fail := func(name, value, msg string) (Rule, error) {
		f := field + name
		if name == "" {
			f = strings.TrimSuffix(field, ".")
		}
		return Rule{}, &RuleError{Source: source, Line: line, Field: f, Value: value, Msg: msg}
	}
	var r Rule
	if s.Class == "" {
		return fail("class", "", "is required (it names the rule in the metrics)")
	}
	if !classRE.MatchString(s.Class) {
		return fail("class", s.Class, "must be a letter or _ followed by up to 63 letters, digits, _ or - (it becomes a metric label)")
	}
	r.Class = s.Class
	if s.Class == DefaultClass {
		return fail("class", s.Class, "is reserved for requests no rule matches")
	}
	a, ok := actionNames[s.Action]
	if s.Action == "" {
		a, ok = Shed, true
	}
	if !ok {
		return fail("action", s.Action, "must be pass (never shed), probe (never shed, health check) or shed (classify only)")
	}
	r.Action = a
	if s.Method != "" {
		if up := strings.ToUpper(s.Method); up != s.Method && methodRE.MatchString(up) {
			return fail("method", s.Method, fmt.Sprintf("methods are case-sensitive; write %q", up))
		}
		if !methodRE.MatchString(s.Method) {
			return fail("method", s.Method, "must be an HTTP method such as GET or POST")
		}
		r.Method = s.Method
	}
	if s.Path != "" {
		if !strings.HasPrefix(s.Path, "/") {
			return fail("path", s.Path, "must start with /")
		}
		if i := strings.IndexByte(s.Path, '*'); i >= 0 && i != len(s.Path)-1 {
			return fail("path", s.Path, "* is only allowed at the end (prefix match)")
		}
		if strings.ContainsAny(s.Path, " \t?#") {
			return fail("path", s.Path, "must be a path without spaces, query or fragment")
		}
		r.Path = s.Path
	}
	if s.Header != "" {
		name, value, _ := strings.Cut(s.Header, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !tokenRE.MatchString(name) {
			return fail("header", s.Header, `must be "Name" (present) or "Name: value" with a valid header name`)
		}
		if i := strings.IndexByte(value, '*'); i >= 0 && i != len(value)-1 {
			return fail("header", s.Header, "* is only allowed at the end of the value (prefix match)")
		}
		r.Header, r.Value = http.CanonicalHeaderKey(name), value
	}
	if r.Method == "" && r.Path == "" && r.Header == "" {
		return fail("", s.Class, "rule matches nothing: give at least one of method, path, header")
	}
	return r, nil
}

// ParseRuleFlag parses the compact form used by --rule:
//
//	class=checkout,action=pass,method=POST,path=/api/checkout*,header=X-Priority: high
//
// Values cannot contain commas.
func ParseRuleFlag(spec string) (Rule, error) {
	const source = "--rule"
	var s ruleSpec
	seen := map[string]bool{}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return Rule{}, &RuleError{Source: source, Value: kv, Msg: "want key=value (keys: class, action, method, path, header)"}
		}
		if seen[k] {
			return Rule{}, &RuleError{Source: source, Field: k, Value: v, Msg: "given twice"}
		}
		seen[k] = true
		switch k {
		case "class":
			s.Class = v
		case "action":
			s.Action = v
		case "method":
			s.Method = v
		case "path":
			s.Path = v
		case "header":
			s.Header = v
		default:
			return Rule{}, &RuleError{Source: source, Field: k, Value: v, Msg: "unknown key (keys: class, action, method, path, header)"}
		}
	}
	return s.compile(source, 0, "")
}

// ParseRules parses a rules file:
//
//	rules:
//	  - class: checkout
//	    action: pass
//	    method: POST
//	    path: /api/checkout*
func ParseRules(source string, data []byte) ([]Rule, error) {
	var doc struct {
		Rules []yaml.Node `yaml:"rules"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &RuleError{Source: source, Msg: "file is empty; want a mapping with key rules"}
		}
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	out := make([]Rule, 0, len(doc.Rules))
	for i := range doc.Rules {
		n := &doc.Rules[i]
		field := fmt.Sprintf("rules[%d].", i)
		var s ruleSpec
		if n.Kind != yaml.MappingNode {
			return nil, &RuleError{Source: source, Line: n.Line, Field: strings.TrimSuffix(field, "."), Value: n.Value, Msg: "must be a mapping with class, action, method, path, header"}
		}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, v := n.Content[j], n.Content[j+1]
			if v.Kind != yaml.ScalarNode {
				return nil, &RuleError{Source: source, Line: v.Line, Field: field + k.Value, Msg: "must be a string"}
			}
			switch k.Value {
			case "class", "action", "method", "path", "header":
			default:
				return nil, &RuleError{Source: source, Line: k.Line, Field: field + k.Value, Value: v.Value, Msg: "unknown field (fields: class, action, method, path, header)"}
			}
		}
		if err := n.Decode(&s); err != nil {
			return nil, &RuleError{Source: source, Line: n.Line, Field: strings.TrimSuffix(field, "."), Msg: err.Error()}
		}
		r, err := s.compile(source, n.Line, field)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// LoadRules reads and parses a rules file.
func LoadRules(path string) ([]Rule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading rules file: %w", err)
	}
	return ParseRules(path, data)
}

// classifier maps a request to its rule (first match wins) and keeps the
// class list for the metrics.
type classifier struct {
	rules   []Rule
	classes []string // index 0 is DefaultClass
	index   []int    // class index of each rule
}

func newClassifier(rules []Rule) *classifier {
	c := &classifier{rules: rules, classes: []string{DefaultClass}}
	pos := map[string]int{DefaultClass: 0}
	for _, r := range rules {
		i, ok := pos[r.Class]
		if !ok {
			i = len(c.classes)
			pos[r.Class] = i
			c.classes = append(c.classes, r.Class)
		}
		c.index = append(c.index, i)
	}
	return c
}

// classify returns the class index and action for r.
func (c *classifier) classify(r *http.Request) (int, Action) {
	for i := range c.rules {
		if c.rules[i].Match(r) {
			return c.index[i], c.rules[i].Action
		}
	}
	return 0, Shed
}
