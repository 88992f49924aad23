package sloconfig

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics, that every rejection is a
// well-formed ErrorList, and that every accepted config satisfies the
// documented limits and survives a canonical Marshal/Parse round trip.
// Seeds live in testdata/fuzz/FuzzParse. CI: go test -run '^$' -fuzz
// FuzzParse -fuzztime=20s ./internal/sloconfig
func FuzzParse(f *testing.F) {
	f.Add([]byte("slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n"))
	f.Add([]byte("slos:\n  - {cgroup: /k/**/c-?, latencyBudget: 1.5ms, importance: 7, target: 0.5}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			checkRejection(t, data, c, err)
			return
		}
		checkAccepted(t, c)
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		c2, err := Parse(out, "fuzz.yaml")
		if err != nil {
			t.Fatalf("canonical form rejected: %v\n%s", err, out)
		}
		if !sameSLOs(c.SLOs, c2.SLOs) {
			t.Fatalf("round trip changed SLOs:\n%+v\n%+v", c.SLOs, c2.SLOs)
		}
		out2, err := c2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("canonical form not stable: %v\n%s\n%s", err, out, out2)
		}
	})
}

func checkRejection(t *testing.T, data []byte, c *Config, err error) {
	var list ErrorList
	if c != nil || !errors.As(err, &list) || len(list) == 0 {
		t.Fatalf("rejection is not an ErrorList: %T %v (config %v)", err, err, c)
	}
	// YAML also breaks lines at CR and the Unicode line separators; +2
	// because the parser may point just past the end.
	lines := 2
	for _, sep := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
		lines += bytes.Count(data, []byte(sep))
	}
	if !utf8.Valid(data) {
		lines = math.MaxInt // yaml.v3 decodes UTF-16 too; lines then count decoded text
	}
	for _, e := range list {
		if e.Source != "fuzz.yaml" || e.Msg == "" || e.Line < 0 || e.Line > lines {
			t.Fatalf("malformed error %+v (file has %d lines)", e, lines)
		}
	}
}

func checkAccepted(t *testing.T, c *Config) {
	for _, s := range c.SLOs {
		if s.LatencyBudget <= 0 || s.LatencyBudget > MaxLatencyBudget ||
			s.Importance < MinImportance || s.Importance > MaxImportance ||
			!(s.Target > 0 && s.Target < 1) || s.Line < 1 {
			t.Fatalf("accepted an SLO outside the limits: %+v", s)
		}
		p, err := compilePattern(s.Cgroup)
		if err != nil {
			t.Fatalf("accepted a bad cgroup %q: %v", s.Cgroup, err)
		}
		// An exact entry always matches its own path, whatever globs precede it.
		if p.isLiteral {
			if m, ok := c.Match(p.literal); !ok || m != s {
				t.Fatalf("Match(%q) = %+v %v, want %+v", p.literal, m, ok, s)
			}
		}
	}
}
