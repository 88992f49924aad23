package sloconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []SLO
	}{
		{
			name: "defaults applied",
			in:   "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n",
			want: []SLO{{Cgroup: "/ls", LatencyBudget: 2 * time.Millisecond, Importance: 100, Target: 0.99, Line: 2}},
		},
		{
			name: "every field and duration forms",
			in: `# comment
slos:
  - cgroup: /ls
    latencyBudget: 1.5ms
    importance: 1000
    target: 0.999
  - {cgroup: "/kubepods.slice/*/*", latencyBudget: 500us, importance: 1, target: 0.5}
  - cgroup: /batch/**
    latencyBudget: "10s"
  - cgroup: /
    latencyBudget: 1ns
    target: 1e-3
  - cgroup: /a/\*star
    latencyBudget: 250µs
`,
			want: []SLO{
				{Cgroup: "/ls", LatencyBudget: 1500 * time.Microsecond, Importance: 1000, Target: 0.999, Line: 3},
				{Cgroup: "/kubepods.slice/*/*", LatencyBudget: 500 * time.Microsecond, Importance: 1, Target: 0.5, Line: 7},
				{Cgroup: "/batch/**", LatencyBudget: 10 * time.Second, Importance: 100, Target: 0.99, Line: 8},
				{Cgroup: "/", LatencyBudget: 1, Importance: 100, Target: 0.001, Line: 10},
				{Cgroup: `/a/\*star`, LatencyBudget: 250 * time.Microsecond, Importance: 100, Target: 0.99, Line: 13},
			},
		},
		{name: "explicit empty list", in: "slos: []\n", want: []SLO{}},
		{name: "null list", in: "slos:\n", want: []SLO{}},
		{name: "leading document marker", in: "---\nslos: []\n", want: []SLO{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in), "slo.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(c.SLOs, tc.want) {
				t.Errorf("SLOs:\n got %+v\nwant %+v", c.SLOs, tc.want)
			}
			if c.Source != "slo.yaml" {
				t.Errorf("Source = %q", c.Source)
			}
		})
	}
}

// Every case lists the complete error output, one line per problem, so the
// test pins down the line, field, value and message of each.
var invalidCases = []struct {
	name string
	in   string
	want []string
}{
	{"empty file", "", []string{
		`slo.yaml: file is empty; write "slos: []" to configure no SLOs`}},
	{"only comments", "# nothing\n", []string{
		`slo.yaml: file is empty; write "slos: []" to configure no SLOs`}},
	{"empty document", "---\n", []string{
		`slo.yaml:1: document is empty; write "slos: []" to configure no SLOs`}},
	{"missing slos", "{}\n", []string{
		`slo.yaml:1: slos: missing; write "slos: []" to configure no SLOs`}},
	{"top level list", "- cgroup: /ls\n", []string{
		`slo.yaml:1: the top level must be a mapping with the key "slos", not a list`}},
	{"unknown top-level field", "slos: []\nslo: []\n", []string{
		`slo.yaml:2: slo: unknown field; known fields here: slos`}},
	{"unknown entry field with suggestion", "slos:\n  - cgroup: /ls\n    latency_budget: 2ms\n", []string{
		`slo.yaml:2: slos[0].latencyBudget: missing; every SLO needs a budget, e.g. latencyBudget: 2ms`,
		`slo.yaml:3: slos[0].latency_budget: unknown field; did you mean "latencyBudget"?`}},
	{"unknown entry field", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    weight: 3\n", []string{
		`slo.yaml:4: slos[0].weight: unknown field; known fields here: cgroup, latencyBudget, importance, target`}},
	{"slos not a list", "slos: /ls\n", []string{
		`slo.yaml:1: slos: "/ls": must be a list of SLO entries, not a string`}},
	{"entry not a mapping", "slos:\n  - /ls\n", []string{
		`slo.yaml:2: slos[0]: "/ls": must be a mapping with the fields cgroup, latencyBudget, importance, target, not a string`}},
	{"empty entry", "slos:\n  -\n", []string{
		`slo.yaml:2: slos[0]: must be a mapping with the fields cgroup, latencyBudget, importance, target, not an empty value`}},
	{"missing cgroup", "slos:\n  - latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: missing; every SLO names a cgroup path or glob, e.g. cgroup: /ls`}},
	{"empty cgroup", "slos:\n  - cgroup: \"\"\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "": must not be empty; use / for the root cgroup`}},
	{"null cgroup", "slos:\n  - cgroup:\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: must be a string, not an empty value`}},
	{"relative cgroup", "slos:\n  - cgroup: ls\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "ls": must start with / (paths are relative to the cgroup hierarchy root, e.g. /ls)`}},
	{"mount path", "slos:\n  - cgroup: /sys/fs/cgroup/ls\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "/sys/fs/cgroup/ls": write the path relative to the cgroup hierarchy root, without /sys/fs/cgroup (e.g. /ls)`}},
	{"malformed glob", "slos:\n  - cgroup: /a/[b\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "/a/[b": malformed glob in path element "[b": syntax error in pattern`}},
	{"dangling escape", "slos:\n  - cgroup: /a\\\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "/a\\": malformed glob in path element "a\\": syntax error in pattern`}},
	{"dot-dot", "slos:\n  - cgroup: /a/../b\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "/a/../b": path element ".." is not allowed`}},
	{"dot", "slos:\n  - cgroup: /a/./b\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "/a/./b": path element "." is not allowed`}},
	{"double slash", "slos:\n  - cgroup: /a//b\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "/a//b": empty path element (doubled or trailing /)`}},
	{"trailing slash", "slos:\n  - cgroup: /a/\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "/a/": empty path element (doubled or trailing /)`}},
	{"long element", "slos:\n  - cgroup: /" + strings.Repeat("x", 256) + "\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "/` + strings.Repeat("x", 256) + `": path element longer than 255 bytes`}},
	{"NUL in cgroup", "slos:\n  - cgroup: \"/a\\0b\"\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "/a\x00b": must not contain a NUL byte`}},
	{"cgroup is a number", "slos:\n  - cgroup: 12\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: "12": must be a string, not an integer; quote it`}},
	{"cgroup is a list", "slos:\n  - cgroup: [/a]\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0].cgroup: must be a string, not a list`}},
	{"zero budget", "slos:\n  - cgroup: /ls\n    latencyBudget: 0ms\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "0ms": must be greater than 0`}},
	{"negative budget", "slos:\n  - cgroup: /ls\n    latencyBudget: -1ms\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "-1ms": must be greater than 0`}},
	{"budget too large", "slos:\n  - cgroup: /ls\n    latencyBudget: 10.001s\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "10.001s": must be at most 10s`}},
	{"budget an hour", "slos:\n  - cgroup: /ls\n    latencyBudget: 1h\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "1h": must be at most 10s`}},
	{"budget plain integer", "slos:\n  - cgroup: /ls\n    latencyBudget: 2\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "2": a plain number is ambiguous; add a unit: ns, us, ms or s (e.g. 2ms, 500us, 1.5ms)`}},
	{"budget plain float", "slos:\n  - cgroup: /ls\n    latencyBudget: 0.002\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "0.002": a plain number is ambiguous; add a unit: ns, us, ms or s (e.g. 2ms, 500us, 1.5ms)`}},
	// Quoted or not, a number without a unit gets the same words (an
	// annotation or SLOPolicy, always a string, says the same).
	{"budget quoted number", "slos:\n  - cgroup: /ls\n    latencyBudget: \"2\"\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "2": a plain number is ambiguous; add a unit: ns, us, ms or s (e.g. 2ms, 500us, 1.5ms)`}},
	{"budget unparseable", "slos:\n  - cgroup: /ls\n    latencyBudget: 2 ms\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "2 ms": not a duration; add a unit: ns, us, ms or s (e.g. 2ms, 500us, 1.5ms)`}},
	{"budget bool", "slos:\n  - cgroup: /ls\n    latencyBudget: true\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "true": must be a duration string, not a boolean`}},
	{"budget mapping", "slos:\n  - cgroup: /ls\n    latencyBudget: {ms: 2}\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: must be a duration string, not a mapping`}},
	{"importance zero", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    importance: 0\n", []string{
		`slo.yaml:4: slos[0].importance: "0": must be an integer from 1 to 1000`}},
	{"importance too large", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    importance: 1001\n", []string{
		`slo.yaml:4: slos[0].importance: "1001": must be an integer from 1 to 1000`}},
	{"importance overflows", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    importance: 99999999999999999999\n", []string{
		`slo.yaml:4: slos[0].importance: "99999999999999999999": must be an integer from 1 to 1000, not a number`}},
	{"importance fractional", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    importance: 1.5\n", []string{
		`slo.yaml:4: slos[0].importance: "1.5": must be an integer from 1 to 1000, not a number`}},
	{"importance string", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    importance: \"100\"\n", []string{
		`slo.yaml:4: slos[0].importance: "100": must be an integer from 1 to 1000, not a string`}},
	{"importance without value", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    importance:\n", []string{
		`slo.yaml:4: slos[0].importance: has no value; remove the field to use the default 100`}},
	{"target zero", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    target: 0\n", []string{
		`slo.yaml:4: slos[0].target: "0": must be a fraction greater than 0 and less than 1 (e.g. 0.99)`}},
	{"target one", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    target: 1.0\n", []string{
		`slo.yaml:4: slos[0].target: "1.0": must be a fraction greater than 0 and less than 1 (e.g. 0.99)`}},
	{"target NaN", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    target: .nan\n", []string{
		`slo.yaml:4: slos[0].target: ".nan": must be a fraction greater than 0 and less than 1 (e.g. 0.99)`}},
	{"target percent", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    target: 99%\n", []string{
		`slo.yaml:4: slos[0].target: "99%": write a fraction, not a percentage (e.g. 0.99 for 99%)`}},
	{"target without value", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    target: ~\n", []string{
		`slo.yaml:4: slos[0].target: has no value; remove the field to use the default 0.99`}},
	{"duplicate field", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n    latencyBudget: 3ms\n", []string{
		`slo.yaml:4: slos[0].latencyBudget: duplicate field; first set on line 3`}},
	{"duplicate entry, same values", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n  - cgroup: /ls\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:4: slos[1].cgroup: "/ls": duplicate: the same cgroup already has an entry on line 2`}},
	{"duplicate entry, escaped spelling", "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n  - cgroup: /l\\s\n    latencyBudget: 3ms\n", []string{
		`slo.yaml:4: slos[1].cgroup: "/l\\s": duplicate: the same cgroup already has an entry on line 2`}},
	{"duplicate glob, first entry otherwise bad", "slos:\n  - cgroup: /k/*\n    latencyBudget: 0s\n  - cgroup: /k/*\n    latencyBudget: 3ms\n", []string{
		`slo.yaml:3: slos[0].latencyBudget: "0s": must be greater than 0`,
		`slo.yaml:4: slos[1].cgroup: "/k/*": duplicate: the same cgroup already has an entry on line 2`}},
	{"alias", "x: &b 2ms\nslos:\n  - cgroup: /ls\n    latencyBudget: *b\n", []string{
		`slo.yaml:1: x: unknown field; known fields here: slos`,
		`slo.yaml:4: slos[0].latencyBudget: YAML aliases (*name) are not supported; write the value out`}},
	{"merge key", "slos:\n  - <<: {cgroup: /ls}\n    latencyBudget: 2ms\n", []string{
		`slo.yaml:2: slos[0]: keys must be plain field names, not a merge key (<<)`,
		`slo.yaml:2: slos[0].cgroup: missing; every SLO names a cgroup path or glob, e.g. cgroup: /ls`}},
	{"two documents", "slos: []\n---\nslos: []\n", []string{
		`slo.yaml:2: a second YAML document starts here; put all SLOs in one document`}},
	{"trailing document marker", "slos: []\n---\n", []string{
		`slo.yaml:2: a second YAML document starts here; put all SLOs in one document`}},
	// The parser notices an unclosed list at the end of the file.
	{"unclosed list at end of file", "slos: [\n", []string{
		`slo.yaml:2: YAML syntax: did not find expected node content`}},
	{"bad indentation", "slos:\n  - cgroup: /ls\n   latencyBudget: 2ms\n", []string{
		`slo.yaml:2: YAML syntax: did not find expected '-' indicator`}},
	{"syntax error after a valid document", "slos: []\n---\nslos: [\n", []string{
		`slo.yaml:4: YAML syntax: did not find expected node content`}},
	{"mapping value in a scalar", "slos:\n  - cgroup: /ls: x\n", []string{
		`slo.yaml:2: YAML syntax: mapping values are not allowed in this context`}},
	{"syntax error", "slos:\n  - cgroup: [/ls\n", []string{
		`slo.yaml:2: YAML syntax: did not find expected ',' or ']'`}},
	{"tab indentation", "slos:\n\t- cgroup: /ls\n", []string{
		`slo.yaml:2: YAML syntax: found character that cannot start any token`}},
	{"many problems in one pass", `slos:
  - cgroup: /ls
    latencyBudget: 0ms
    importance: 1001
  - cgroup: ls
    latencyBudget: 2
  - cgroup: /ls
    latencyBudget: 1ms
    target: 2
`, []string{
		`slo.yaml:3: slos[0].latencyBudget: "0ms": must be greater than 0`,
		`slo.yaml:4: slos[0].importance: "1001": must be an integer from 1 to 1000`,
		`slo.yaml:5: slos[1].cgroup: "ls": must start with / (paths are relative to the cgroup hierarchy root, e.g. /ls)`,
		`slo.yaml:6: slos[1].latencyBudget: "2": a plain number is ambiguous; add a unit: ns, us, ms or s (e.g. 2ms, 500us, 1.5ms)`,
		`slo.yaml:7: slos[2].cgroup: "/ls": duplicate: the same cgroup already has an entry on line 2`,
		`slo.yaml:9: slos[2].target: "2": must be a fraction greater than 0 and less than 1 (e.g. 0.99)`}},
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in), "slo.yaml")
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", c.SLOs)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) != len(tc.want) {
				t.Fatalf("want an ErrorList of %d, got %T %v", len(tc.want), err, err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe != list[0] {
				t.Errorf("errors.As does not reach the first FieldError")
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	data := []byte("slos: []\n" + strings.Repeat("#", MaxFileSize))
	_, err := Parse(data, "big.yaml")
	want := "big.yaml: file is larger than 1048576 bytes"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestParseTooManySLOs(t *testing.T) {
	entries := func(n int) []byte {
		var sb strings.Builder
		sb.WriteString("slos:\n")
		for i := range n {
			fmt.Fprintf(&sb, "  - {cgroup: /p%d/*, latencyBudget: 1ms}\n", i)
		}
		return []byte(sb.String())
	}
	if _, err := Parse(entries(MaxSLOs), "max.yaml"); err != nil {
		t.Fatalf("%d entries rejected: %v", MaxSLOs, err)
	}
	_, err := Parse(entries(MaxSLOs+1), "big.yaml")
	want := "big.yaml:2: slos: has 10001 entries; at most 10000 are allowed (one glob such as /kubepods.slice/** covers many cgroups)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "slo.yaml")
	if err := os.WriteFile(p, []byte("slos:\n  - cgroup: /ls\n    latencyBudget: 0s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if want := p + `:3: slos[0].latencyBudget: "0s": must be greater than 0`; err == nil || err.Error() != want {
		t.Errorf("Load bad file: got %v, want %q", err, want)
	}
	if err := os.WriteFile(p, []byte("slos:\n  - cgroup: /ls\n    latencyBudget: 3ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != p || len(c.SLOs) != 1 || c.SLOs[0].LatencyBudget != 3*time.Millisecond {
		t.Errorf("Load: %+v", c)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load missing file: got %v, want ErrNotExist", err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file but a directory") {
		t.Errorf("Load directory: got %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	in := "slos:\n  - cgroup: \"/a: b/*\"\n    latencyBudget: 1.5ms\n  - cgroup: /x/**\n    latencyBudget: 1s\n    importance: 7\n    target: 0.123456789\n"
	c, err := Parse([]byte(in), "in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := "slos:\n    - cgroup: '/a: b/*'\n      latencyBudget: 1.5ms\n      importance: 100\n      target: 0.99\n    - cgroup: /x/**\n      latencyBudget: 1s\n      importance: 7\n      target: 0.123456789\n"
	if string(out) != want {
		t.Errorf("Marshal:\n%s\nwant:\n%s", out, want)
	}
	c2, err := Parse(out, "out.yaml")
	if err != nil {
		t.Fatalf("re-parse: %v", err)
	}
	if !sameSLOs(c.SLOs, c2.SLOs) {
		t.Errorf("round trip changed SLOs:\n%+v\n%+v", c.SLOs, c2.SLOs)
	}
	empty, err := (&Config{}).Marshal()
	if err != nil || string(empty) != "slos: []\n" {
		t.Errorf("empty Marshal: %q %v", empty, err)
	}
}

// sameSLOs compares entries ignoring Line, which depends on layout.
func sameSLOs(a, b []SLO) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.Line, y.Line = 0, 0
		if x != y {
			return false
		}
	}
	return true
}
