package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// TestSIGHUPDuringStartup sends SIGHUP as soon as the exporter has logged
// its first line, while it still loads the tracer and before it serves:
// the signal is handled from there on, never the default action (exit).
// With an SLO file it reloads the file; without one it says there is
// nothing to reload. Either way the exporter goes on to serve.
func TestSIGHUPDuringStartup(t *testing.T) {
	exportertest.RequireRoot(t)
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: /sighup-test\n    latencyBudget: 2ms\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"config", []string{"--slo.config-file=" + cfg}, "trigger=signal"},
		{"no config", nil, "SIGHUP: no --slo.config-file to reload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := exportertest.StartNoWait(t, append([]string{"--overload.pin-dir="}, tc.args...)...)
			waitExporter(t, e, "the first log line", 30*time.Second, func() bool { return strings.Contains(e.Log(), "starting scx-slo") })
			if err := e.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			e.WaitReady(t, "http")
			waitExporter(t, e, "the SIGHUP to be handled", 30*time.Second, func() bool { return strings.Contains(e.Log(), tc.want) })
			if _, ok := scrapeValue(e, "scx_slo_config_last_reload_successful", nil); !ok {
				t.Errorf("no scrape after the SIGHUP\n%s", e.Log())
			}
		})
	}
}
