package collector

import (
	"testing"

	"github.com/go-kit/log"
)

func TestSLOScrape(t *testing.T) {
	stats := nodeStats(map[uint64]uint64{5: 100, 6: 7})
	stats[5].Deadlines, stats[5].Misses = 100, 3
	r := &readings{stats: stats, overload: map[uint32]bool{1: true}}
	// c1 has slot 0 and wakeups; user.slice (slot 1) has none yet.
	c, err := newSLOCollector(Sources{Cgroups: newTable(nodePaths, 5, 7), Deadlines: r.deadlineMaps, Config: r}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	f := scrape(t, exporterOf(map[string]Collector{"slo": c}))
	for name, want := range map[string]map[string]float64{
		"scx_slo_budget_seconds":                               {"/kubepods/pod1/c1": 0.002, "/user.slice": 0.002},
		"scx_slo_importance":                                   {"/kubepods/pod1/c1": 10, "/user.slice": 10},
		"scx_slo_target_ratio":                                 {"/kubepods/pod1/c1": 0.99, "/user.slice": 0.99},
		"scx_slo_deadlines_total":                              {"/kubepods/pod1/c1": 100, "/user.slice": 0},
		"scx_slo_deadline_misses_total":                        {"/kubepods/pod1/c1": 3, "/user.slice": 0},
		"scx_slo_overloaded":                                   {"/kubepods/pod1/c1": 0, "/user.slice": 1},
		"scx_slo_config_last_reload_successful":                {"": 1},
		"scx_slo_config_last_reload_success_timestamp_seconds": {"": 1700000000},
	} {
		got := values(f[name])
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s{%s} = %v, want %v", name, k, got[k], v)
			}
		}
	}
}

// TestSLONoMaps: with no program loaded the collector fails (success 0)
// but still reports the config's state.
func TestSLONoMaps(t *testing.T) {
	r := &readings{}
	c, err := newSLOCollector(Sources{Cgroups: newTable(nodePaths, 5), Config: r,
		Deadlines: func() (DeadlineMaps, bool) { return nil, false }}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	f := scrape(t, exporterOf(map[string]Collector{"slo": c}))
	if got := values(f["scx_slo_scrape_collector_success"]); got["slo"] != 0 {
		t.Errorf("success %v, want 0", got)
	}
	if got := values(f["scx_slo_config_last_reload_successful"]); got[""] != 1 {
		t.Errorf("reload state missing: %v", got)
	}
	if _, err := newSLOCollector(Sources{Cgroups: newTable(nil)}, log.NewNopLogger()); err == nil {
		t.Errorf("no config: no error")
	}
}
