package shed

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseRules(t *testing.T) {
	src := `rules:
  - class: checkout
    action: pass
    method: POST
    path: /api/checkout*
  - class: premium
    action: pass
    header: "X-Priority: high"
  - class: api
    path: /api/*
  - class: traced
    action: probe
    header: X-Health
`
	got, err := ParseRules("rules.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Class: "checkout", Action: Pass, Method: "POST", Path: "/api/checkout*"},
		{Class: "premium", Action: Pass, Header: "X-Priority", Value: "high"},
		{Class: "api", Action: Shed, Path: "/api/*"},
		{Class: "traced", Action: Probe, Header: "X-Health"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// The flag form builds the same rule.
	r, err := ParseRuleFlag("class=checkout,action=pass,method=POST,path=/api/checkout*")
	if err != nil || r != want[0] {
		t.Fatalf("flag form: %+v, %v", r, err)
	}
	r, err = ParseRuleFlag("class=premium,action=pass,header=X-Priority: high")
	if err != nil || r != want[1] {
		t.Fatalf("flag form with header: %+v, %v", r, err)
	}
}

func TestParseRulesErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"empty file", "", `r.yaml: file is empty`},
		{"unknown top-level key", "rule:\n  - class: a\n", "field rule not found"},
		{"not a list", "rules: 3\n", "r.yaml: yaml: unmarshal errors"},
		{"rule not a mapping", "rules:\n  - checkout\n", `r.yaml:2: rules[0]: "checkout": must be a mapping`},
		{"unknown field", "rules:\n  - class: a\n    paht: /x\n", `r.yaml:3: rules[0].paht: "/x": unknown field`},
		{"field not a string", "rules:\n  - class: a\n    path: [/x]\n", `r.yaml:3: rules[0].path: must be a string`},
		{"missing class", "rules:\n  - path: /x\n", `r.yaml:2: rules[0].class: is required`},
		{"bad class", "rules:\n  - class: check out\n    path: /x\n", `r.yaml:2: rules[0].class: "check out": must be a letter`},
		{"reserved class", "rules:\n  - class: default\n    path: /x\n", `rules[0].class: "default": is reserved`},
		{"bad action", "rules:\n  - class: a\n    action: drop\n    path: /x\n", `rules[0].action: "drop": must be pass`},
		{"lowercase method", "rules:\n  - class: a\n    method: post\n", `rules[0].method: "post": methods are case-sensitive; write "POST"`},
		{"bad method", "rules:\n  - class: a\n    method: P OST\n", `rules[0].method: "P OST": must be an HTTP method`},
		{"relative path", "rules:\n  - class: a\n    path: api\n", `rules[0].path: "api": must start with /`},
		{"star inside path", "rules:\n  - class: a\n    path: /a*/b\n", `rules[0].path: "/a*/b": * is only allowed at the end`},
		{"query in path", "rules:\n  - class: a\n    path: /a?b=1\n", `rules[0].path: "/a?b=1": must be a path without`},
		{"bad header name", "rules:\n  - class: a\n    header: \"X Prio: 1\"\n", `rules[0].header: "X Prio: 1": must be "Name"`},
		{"star inside header value", "rules:\n  - class: a\n    header: \"X-P: a*b\"\n", `rules[0].header: "X-P: a*b": * is only allowed at the end of the value`},
		{"no matcher", "rules:\n  - class: a\n    action: pass\n", `r.yaml:2: rules[0]: "a": rule matches nothing`},
		{"second rule bad", "rules:\n  - class: a\n    path: /a\n  - class: b\n    method: get\n", `r.yaml:4: rules[1].method: "get"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules("r.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestParseRuleFlagErrors(t *testing.T) {
	cases := []struct{ spec, want string }{
		{"class=a,path", `--rule: "path": want key=value`},
		{"class=a,class=b,path=/x", `--rule: class: "b": given twice`},
		{"class=a,verb=GET", `--rule: verb: "GET": unknown key`},
		{"class=a,method=get", `--rule: method: "get": methods are case-sensitive`},
		{"path=/x", `--rule: class: is required`},
		{"class=a", `--rule: "a": rule matches nothing`},
	}
	for _, tc := range cases {
		_, err := ParseRuleFlag(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want error containing %q, got %v", tc.spec, tc.want, err)
		}
	}
}

func TestLoadRulesMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	if _, err := LoadRules(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("want error naming %s, got %v", p, err)
	}
	if err := os.WriteFile(p, []byte("rules:\n  - class: a\n    path: /a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rs, err := LoadRules(p); err != nil || len(rs) != 1 {
		t.Fatalf("LoadRules: %v %v", rs, err)
	}
}

func TestClassify(t *testing.T) {
	rules := []Rule{
		{Class: "checkout", Action: Pass, Method: "POST", Path: "/api/checkout*"},
		{Class: "premium", Action: Pass, Header: "X-Priority", Value: "high"},
		{Class: "api", Action: Shed, Path: "/api/*"},
	}
	rules = append(rules, DefaultProbeRules()...)
	c := newClassifier(rules)
	cases := []struct {
		method, path string
		header       map[string]string
		class        string
		action       Action
	}{
		{"POST", "/api/checkout/42", nil, "checkout", Pass},
		{"GET", "/api/checkout/42", nil, "api", Shed},
		{"GET", "/anything", map[string]string{"x-priority": "high"}, "premium", Pass},
		{"GET", "/anything", map[string]string{"X-Priority": "low"}, DefaultClass, Shed},
		{"GET", "/api/items", nil, "api", Shed},
		{"GET", "/healthz", nil, "probe", Probe},
		{"GET", "/healthz/deep", nil, DefaultClass, Shed},
		{"GET", "/", map[string]string{"User-Agent": "kube-probe/1.31"}, "probe", Probe},
		{"GET", "/", map[string]string{"User-Agent": "curl/8"}, DefaultClass, Shed},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		i, a := c.classify(r)
		if c.classes[i] != tc.class || a != tc.action {
			t.Errorf("%s %s %v: class %s action %v; want %s %v", tc.method, tc.path, tc.header, c.classes[i], a, tc.class, tc.action)
		}
	}
	_ = http.MethodGet
}
