package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// TestHostileCgroupNames makes real cgroups whose names are not valid
// UTF-8, are as long as the kernel allows, or hold control characters,
// with a task in each and an SLO glob over them, and scrapes the real
// binary: it must stay up, every scrape must parse, each cgroup must be
// reported under its escaped name (docs/metrics.md, "Label values"), and
// two cgroups that escape to the same label must cost one series, dropped
// and counted, not the scrape.
func TestHostileCgroupNames(t *testing.T) {
	exportertest.RequireRoot(t)
	cg := exportertest.NewCgroups(t, "auto")
	long := strings.Repeat("L", 255) // NAME_MAX
	names := map[string]string{      // cgroup name -> its label's last element
		"bad\xff\xfename":    `bad\xff\xfename`,
		long:                 long,
		"ctl\x01\x1b[31m\tx": "ctl\x01\x1b[31m\tx", // valid UTF-8: kept as is
		"half\xe2\x82":       `half\xe2\x82`,       // a truncated multi-byte rune
	}
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: "+cg.Parent+"/*\n    latencyBudget: 5ms\n")
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--slo.resync-interval=200ms")
	for name := range names {
		p := cg.Make(t, name)
		cg.StartWorkload(t, p, "probe", 1)
	}
	// Valid UTF-8 that reads like an escape: collides with "bad\xff\xfe...".
	cg.StartWorkload(t, cg.Make(t, `bad\xff\xfename`), "probe", 1)

	want := func(f exportertest.Families) []string {
		var missing []string
		for _, label := range names {
			l := map[string]string{"cgroup": cg.Parent + "/" + label}
			if v, _ := f.Value("scx_slo_runqueue_latency_seconds", l); v < 1 {
				missing = append(missing, "latency of "+label)
			}
			if _, ok := f.Value("scx_slo_budget_seconds", l); !ok {
				missing = append(missing, "budget of "+label)
			}
		}
		for _, c := range []string{"runqueue", "slo"} {
			if v, _ := f.Value("scx_slo_scrape_dropped_series_total", map[string]string{"collector": c}); v < 1 {
				missing = append(missing, "a dropped "+c+" series (the colliding label)")
			}
		}
		return missing
	}
	var missing []string
	ok := exportertest.Eventually(context.Background(), 20*time.Second, func() bool {
		missing = want(e.Scrape(t)) // Scrape fails the test on a bad scrape
		return len(missing) == 0
	})
	if !ok {
		t.Errorf("after 20s the scrape lacks %v\n%s", missing, e.Log())
	}
	f := e.Scrape(t)
	for _, c := range []string{"runqueue", "slo", "scx"} {
		if v, _ := f.Value("scx_slo_scrape_collector_success", map[string]string{"collector": c}); v != 1 {
			t.Errorf("collector %s did not succeed: %v", c, v)
		}
	}
	// The other pages show the same names (JSON, HTML, text table).
	for _, path := range []string{"/status", "/overload", "/"} {
		if resp, body, err := e.Get(path); err != nil || resp.StatusCode != 200 {
			t.Errorf("GET %s: %v %v\n%.300s", path, err, resp, body)
		}
	}
	if err, exited := e.Wait(0); exited {
		t.Fatalf("exporter exited: %v\n%s", err, e.Log())
	}
}
