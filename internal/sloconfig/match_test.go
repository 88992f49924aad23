package sloconfig

import (
	"fmt"
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
