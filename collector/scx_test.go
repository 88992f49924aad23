package collector

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/go-kit/log"

	"github.com/scx-slo/scx-slo/internal/scxcap"
)

// TestScxScrape reads a sysfs laid out as a sched_ext kernel's (written to
// a temp dir: the reader takes paths) and checks what is exported,
// including a scheduler name that is not valid UTF-8.
func TestScxScrape(t *testing.T) {
	dir := t.TempDir()
	sx := filepath.Join(dir, "kernel/sched_ext")
	for name, body := range map[string]string{
		"state":       "enabled\n",
		"enable_seq":  "3\n",
		"nr_rejected": "1\n",
		"root/ops":    "edf\xff\n",
		"root/events": "SCX_EV_SELECT_CPU_FALLBACK 5\nSCX_EV_DISPATCH_KEEP_LAST: 2\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(sx, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sx, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := newScxCollector(Sources{ScxPaths: scxcap.Paths{SchedExt: sx, BTF: filepath.Join(dir, "kernel/btf/vmlinux")}}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	f := scrape(t, exporterOf(map[string]Collector{"scx": c}))
	for name, want := range map[string]map[string]float64{
		"scx_slo_scx_supported":             {"": 1},
		"scx_slo_scx_state":                 {"enabled": 1, "disabled": 0, "enabling": 0, "disabling": 0},
		"scx_slo_scx_ops_info":              {`edf\xff`: 1},
		"scx_slo_scx_enable_seq":            {"": 3},
		"scx_slo_scx_nr_rejected":           {"": 1},
		"scx_slo_scx_events_total":          {"select_cpu_fallback": 5, "dispatch_keep_last": 2},
		"scx_slo_btf_present":               {"": 0},
		"scx_slo_enforce_compatible":        {"": 0},
		"scx_slo_enforce_incompatible_info": {"no kernel BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)": 1},
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
	if len(values(f["scx_slo_kernel_info"])) != 1 {
		t.Errorf("kernel_info: %v", values(f["scx_slo_kernel_info"]))
	}
}
