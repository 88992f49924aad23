package enforcer

import (
	"testing"
	"time"
)

func TestRestartPolicy(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	type step struct {
		info              ExitInfo
		at                time.Duration
		reattach, forGood bool
	}
	for name, steps := range map[string][]step{
		"restart code always re-attaches": {
			{ExitInfo{Kind: "unreg_kern", Code: ecodeActRestart | 1<<32}, 0, true, false},
			{ExitInfo{Kind: "error", Code: ecodeActRestart}, time.Second, true, false},
			{ExitInfo{Kind: "error", Code: ecodeActRestart}, 2 * time.Second, true, false},
			{ExitInfo{Kind: "error", Code: ecodeActRestart}, 3 * time.Second, true, false},
		},
		"sysrq stops for good":               {{ExitInfo{Kind: "sysrq"}, 0, false, true}},
		"detach from outside stays detached": {{ExitInfo{Kind: "unreg"}, 0, false, false}},
		"second stall stops for good": {
			{ExitInfo{Kind: "error_stall"}, 0, true, false},
			{ExitInfo{Kind: "error_stall"}, time.Hour, false, true},
		},
		"third error within the window stops": {
			{ExitInfo{Kind: "error_bpf"}, 0, true, false},
			{ExitInfo{Kind: "error_bpf"}, 10 * time.Minute, true, false},
			{ExitInfo{Kind: "error"}, 20 * time.Minute, false, true},
		},
		"errors spread out keep re-attaching": {
			{ExitInfo{Kind: "error_bpf"}, 0, true, false},
			{ExitInfo{Kind: "error_bpf"}, 20 * time.Minute, true, false},
			{ExitInfo{Kind: "error_bpf"}, 60 * time.Minute, true, false},
			{ExitInfo{Kind: "error_bpf"}, 100 * time.Minute, true, false},
		},
	} {
		var r restartPolicy
		for i, s := range steps {
			re, good, why := r.decide(s.info, t0.Add(s.at))
			if re != s.reattach || good != s.forGood || why == "" {
				t.Errorf("%s, step %d (%+v): reattach=%v forGood=%v (%q), want %v %v", name, i, s.info, re, good, why, s.reattach, s.forGood)
			}
		}
	}
}

func TestDetachedMark(t *testing.T) {
	dir := t.TempDir()
	if _, ok := detachedMark(dir); ok {
		t.Fatal("mark in an empty directory")
	}
	if err := markDetached(dir, "sysrq"); err != nil {
		t.Fatal(err)
	}
	if kind, ok := detachedMark(dir); !ok || kind != "sysrq" {
		t.Errorf("detachedMark = %q, %v; want sysrq", kind, ok)
	}
	// unpin keeps the directory while it holds the mark.
	if err := unpin(dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := detachedMark(dir); !ok {
		t.Error("unpin removed the mark")
	}
	if err := clearDetached(dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := detachedMark(dir); ok {
		t.Error("mark still there after clearDetached")
	}
}
