package sloconfig

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	c, err := Parse([]byte(`slos:
  - cgroup: /kubepods.slice/*/*
    latencyBudget: 1ms
  - cgroup: /kubepods.slice/pod-a/ctr
    latencyBudget: 2ms
  - cgroup: /kubepods.slice/**
    latencyBudget: 3ms
  - cgroup: /
    latencyBudget: 4ms
  - cgroup: /batch/**/worker-?
    latencyBudget: 5ms
  - cgroup: /ls
    latencyBudget: 6ms
  - cgroup: /lit/\*
    latencyBudget: 7ms
  - cgroup: /lit/*
    latencyBudget: 8ms
  - cgroup: /svc/[a-c]*.service
    latencyBudget: 9ms
`), "slo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		budget time.Duration // 0: no match
	}{
		{"/kubepods.slice/pod-a/ctr", 2 * time.Millisecond}, // exact wins over an earlier glob
		{"/kubepods.slice/pod-b/ctr", 1 * time.Millisecond}, // first glob in file order
		{"/kubepods.slice/pod-b", 3 * time.Millisecond},     // * is one element; ** any depth
		{"/kubepods.slice/a/b/c", 3 * time.Millisecond},     //
		{"/kubepods.slice", 3 * time.Millisecond},           // ** also matches zero elements
		{"/", 4 * time.Millisecond},                         // root only by "/"
		{"", 4 * time.Millisecond},                          // empty is the root
		{"/batch/worker-1", 5 * time.Millisecond},           // ** zero elements in the middle
		{"/batch/x/y/worker-2", 5 * time.Millisecond},       //
		{"/batch/x/worker-10", 0},                           // ? is one character
		{"/batch/x/worker-1/sub", 0},                        // pattern must consume the whole path
		{"/ls", 6 * time.Millisecond},                       //
		{"/ls/", 6 * time.Millisecond},                      // trailing slash ignored
		{"ls", 6 * time.Millisecond},                        // missing leading slash tolerated
		{"/ls/child", 0},                                    // an exact entry does not cover children
		{"/l", 0},                                           //
		{"/lit/*", 7 * time.Millisecond},                    // escaped star is a literal
		{"/lit/x", 8 * time.Millisecond},                    //
		{"/svc/b-1.service", 9 * time.Millisecond},          // character class
		{"/svc/d-1.service", 0},                             //
		{"/other", 0},                                       //
	}
	for _, tc := range tests {
		s, ok := c.Match(tc.path)
		if ok != (tc.budget != 0) || s.LatencyBudget != tc.budget {
			t.Errorf("Match(%q) = %v %v, want budget %v", tc.path, s.LatencyBudget, ok, tc.budget)
		}
	}
	if s, _ := c.Match("/ls"); s.Line != 12 || s.Cgroup != "/ls" || s.IsGlob() {
		t.Errorf("Match returned %+v", s)
	}
	if s, _ := c.Match("/lit/x"); !s.IsGlob() {
		t.Errorf("/lit/* should be a glob")
	}
	if s, _ := c.Match("/lit/*"); s.IsGlob() {
		t.Errorf(`/lit/\* should be literal`)
	}
}

// A Config built by hand (not by Parse) still matches.
func TestMatchHandBuilt(t *testing.T) {
	c := &Config{SLOs: []SLO{
		{Cgroup: "/a/*", LatencyBudget: time.Millisecond},
		{Cgroup: "/a/b", LatencyBudget: 2 * time.Millisecond},
	}}
	if s, ok := c.Match("/a/b"); !ok || s.LatencyBudget != 2*time.Millisecond {
		t.Errorf("got %+v %v", s, ok)
	}
	if _, ok := (&Config{}).Match("/a"); ok {
		t.Errorf("empty config matched")
	}
}

func TestMatchElemsManyStars(t *testing.T) {
	// Backtracking over many ** must stay fast and correct.
	pat := []string{"**", "a", "**", "a", "**", "a", "**", "a", "**", "b"}
	name := make([]string, 200)
	for i := range name {
		name[i] = "a"
	}
	if matchElems(pat, name) {
		t.Errorf("matched a path without b")
	}
	name[199] = "b"
	if !matchElems(pat, name) {
		t.Errorf("did not match")
	}
}

// matchLinear is the matcher before the index: every glob, in file order,
// against the path. It is the reference the index must agree with and the
// baseline of its benchmark.
func matchLinear(c *Config, cgroupPath string) (SLO, bool) {
	norm := "/" + strings.Trim(cgroupPath, "/")
	if i, ok := c.m.exact[norm]; ok {
		return c.SLOs[i], true
	}
	name := splitPath(norm)
	for _, g := range c.m.globs {
		if matchElems(g.elems, name) {
			return c.SLOs[g.slo], true
		}
	}
	return SLO{}, false
}

// globConfig builds a config of n entries from patterns in file order.
func globConfig(tb testing.TB, patterns []string) *Config {
	tb.Helper()
	var sb strings.Builder
	sb.WriteString("slos:\n")
	for i, p := range patterns {
		fmt.Fprintf(&sb, "  - cgroup: '%s'\n    latencyBudget: %dus\n", p, 1+i)
	}
	c, err := Parse([]byte(sb.String()), "globs.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// The index must pick exactly the entry the linear scan picks, over
// random globs built from literals, wildcards, classes, escapes and **.
func TestMatchIndexAgreesWithLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	elems := []string{"kubepods.slice", "pod12x", "pod123x", "ctr", "abc", "ab", "a", "x.slice", "batch", "wor[k]er", "abcabc", "a*c", "*"}
	globElems := []string{"*", "?", "**", "*pod1*", "pod1?x", "*.slice", "[a-c]*", "[]x]bc", "ab\\c", "a\\*c", "*abc*", "wor*er", "[^a]bc", "pod12[0-9]x", "*b*"}
	pick := func(n int, from ...[]string) []string {
		out := make([]string, n)
		for i := range out {
			set := from[rng.IntN(len(from))]
			out[i] = set[rng.IntN(len(set))]
		}
		return out
	}
	for round := range 200 {
		var patterns []string
		seen := map[string]bool{}
		for len(patterns) < 40 {
			p := "/" + strings.Join(pick(1+rng.IntN(4), elems, globElems), "/")
			if cp, err := compilePattern(p); err == nil && !seen[cp.key(p)] {
				seen[cp.key(p)] = true
				patterns = append(patterns, p)
			}
		}
		c := globConfig(t, patterns)
		for range 200 {
			path := "/" + strings.Join(pick(1+rng.IntN(5), elems, []string{"a*c", "wor[k]er", "xabcx", "pod120x", "]bc"}), "/")
			got, gotOK := c.Match(path)
			want, wantOK := matchLinear(c, path)
			if got != want || gotOK != wantOK {
				t.Fatalf("round %d: Match(%q) = %q %v, linear scan %q %v\npatterns: %q", round, path, got.Cgroup, gotOK, want.Cgroup, wantOK, patterns)
			}
		}
	}
}

// FuzzMatchIndex: for any pattern and path, the index agrees with the
// linear scan (a broad glob listed first keeps every bucket busy).
func FuzzMatchIndex(f *testing.F) {
	f.Add("/kubepods.slice/**/*pod12x*.slice/*", "/kubepods.slice/a/kubepods-pod12x.slice/ctr")
	f.Add(`/a\*c/[]x]yz`, "/a*c/]yz")
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if _, err := compilePattern(pattern); err != nil {
			return
		}
		for _, patterns := range [][]string{{pattern}, {pattern, "/**/*"}} {
			c := &Config{} // by hand: YAML would refuse invalid UTF-8
			for i, p := range patterns {
				c.SLOs = append(c.SLOs, SLO{Cgroup: p, LatencyBudget: time.Duration(i + 1)})
			}
			got, gotOK := c.Match(path)
			want, wantOK := matchLinear(c, path)
			if got != want || gotOK != wantOK {
				t.Fatalf("Match(%q) = %q %v, linear scan %q %v (patterns %q)", path, got.Cgroup, gotOK, want.Cgroup, wantOK, patterns)
			}
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	c, err := Parse([]byte(`slos:
  - {cgroup: /system.slice/*.service, latencyBudget: 5ms}
  - {cgroup: /kubepods.slice/kubepods-burstable.slice/**, latencyBudget: 3ms}
  - {cgroup: /kubepods.slice/**/crio-*.scope, latencyBudget: 2ms}
  - {cgroup: /ls, latencyBudget: 1ms}
`), "b.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c.Match("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crio-abc.scope")
	}
}

// BenchmarkMatchManyGlobs matches cgroup paths against 2,000 globs of the
// shape issue 10 found costly (all under one prefix, each naming one pod),
// through the index and through the linear scan it replaced. One op is one
// new cgroup. "index" runs lookups back to back (warm caches); "vs-linear"
// interleaves both, so each index lookup starts with caches the linear
// scan has just churned, as a lone new cgroup would; "speedup" is
// linear/index from that same run.
//
//	go test -run '^$' -bench MatchManyGlobs -benchtime 2000x ./internal/sloconfig
func BenchmarkMatchManyGlobs(b *testing.B) {
	const globs, cgroups = 2000, 10000
	patterns := make([]string, globs)
	for i := range patterns {
		patterns[i] = fmt.Sprintf("/kubepods.slice/**/*pod%dx*.slice/*", i)
	}
	c := globConfig(b, patterns)
	paths := make([]string, cgroups)
	for i := range paths {
		// Pods 0..3999: half are under an SLO, half match no glob.
		paths[i] = fmt.Sprintf("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%dx.slice/ctr%d", i%(2*globs), i)
	}
	// In random order, so that a short run samples early and late globs
	// alike (the linear scan stops at the first match).
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(paths), func(i, j int) { paths[i], paths[j] = paths[j], paths[i] })
	b.Run("index", func(b *testing.B) {
		i := 0
		for b.Loop() {
			c.Match(paths[i%len(paths)])
			i++
		}
	})
	// Interleaved, so both see the same machine.
	b.Run("vs-linear", func(b *testing.B) {
		var index, linear time.Duration
		n := 0
		for b.Loop() {
			p := paths[n%len(paths)]
			n++
			t0 := time.Now()
			c.Match(p)
			t1 := time.Now()
			matchLinear(c, p)
			linear += time.Since(t1)
			index += t1.Sub(t0)
		}
		b.ReportMetric(float64(index.Nanoseconds())/float64(n), "index-ns/cgroup")
		b.ReportMetric(float64(linear.Nanoseconds())/float64(n), "linear-ns/cgroup")
		b.ReportMetric(float64(linear)/float64(index), "speedup")
	})
}

// BenchmarkParse10k measures a config near the practical size limit.
func BenchmarkParse10k(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("slos:\n")
	for i := range 10000 {
		fmt.Fprintf(&sb, "  - cgroup: /kubepods.slice/pod%d/*\n    latencyBudget: %dus\n    importance: %d\n", i, 100+i, 1+i%1000)
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data, "big.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}
