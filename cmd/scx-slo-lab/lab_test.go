package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
)

// runLab runs the real binary's "lab run" and returns its exit status and
// combined output.
func runLab(t *testing.T, args ...string) (int, string) {
	t.Helper()
	labtest.Kernel(t) // skips when the lab cannot run; fetches the kernel once
	labBin := exportertest.BuildPackage(t, "./cmd/scx-slo-lab")
	cmd := exec.CommandContext(t.Context(), labBin, append([]string{"--scx-slo=" + exportertest.Binary(t), "run"}, args...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("scx-slo-lab run: %v\n%s", err, out)
	return 0, ""
}

func TestLabRunPassesExitStatusAndFiles(t *testing.T) {
	in := filepath.Join(t.TempDir(), "note.txt")
	if err := os.WriteFile(in, []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	code, log := runLab(t, "--no-exporter", "--copy", in, "--copy", in+":/srv/again.txt", "--out", out,
		"--", "sh", "-c", "cat /root/note.txt /srv/again.txt > /out/copied; exit 3")
	if code != 3 {
		t.Fatalf("exit status %d, want the command's 3\n%s", code, log)
	}
	got, err := os.ReadFile(filepath.Join(out, "copied"))
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if string(got) != "from the host\nfrom the host\n" {
		t.Errorf("copied = %q, want the host file twice", got)
	}
	if !strings.Contains(log, "[guest] ") {
		t.Errorf("no prefixed guest console in the output:\n%s", log)
	}
}

// The default: scx-slo starts in the guest with --enforce and the command
// runs only once the scheduler is enabled.
func TestLabRunEnforces(t *testing.T) {
	out := t.TempDir()
	code, log := runLab(t, "--out", out, "--",
		"sh", "-c", "cat /sys/kernel/sched_ext/state /sys/kernel/sched_ext/root/ops > /out/scx; wget -qO /out/metrics $SCX_SLO_METRICS_URL")
	if code != 0 {
		t.Fatalf("exit status %d\n%s", code, log)
	}
	scx, _ := os.ReadFile(filepath.Join(out, "scx"))
	if got := strings.Fields(string(scx)); len(got) != 2 || got[0] != "enabled" || got[1] != "scx_slo" {
		t.Errorf("sched_ext state and ops = %q, want enabled scx_slo\n%s", got, log)
	}
	metrics, _ := os.ReadFile(filepath.Join(out, "metrics"))
	if !strings.Contains(string(metrics), "scx_slo_enforcer_attached 1") {
		t.Errorf("guest metrics lack scx_slo_enforcer_attached 1:\n%.2000s", metrics)
	}
	if _, err := os.Stat(filepath.Join(out, "scx-slo.log")); err != nil {
		t.Errorf("the exporter's log did not come back: %v", err)
	}
}

func TestParseLabCopy(t *testing.T) {
	dir := t.TempDir()
	exe, data := filepath.Join(dir, "tool"), filepath.Join(dir, "data.yaml")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(data, nil, 0o644)
	for in, want := range map[string]string{
		exe:              "/usr/local/bin/tool",
		data:             "/root/data.yaml",
		data + ":/etc/x": "/etc/x",
	} {
		c, err := parseLabCopy(in)
		if err != nil || c.Guest != want {
			t.Errorf("parseLabCopy(%q) = %+v, %v; want guest %s", in, c, err, want)
		}
	}
	if _, err := parseLabCopy(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "--copy") {
		t.Errorf("missing host file: error %v, want one naming --copy", err)
	}
}

// A topology that does not split evenly is refused before anything boots,
// naming the flag and its value.
func TestLabRunRejectsBadSockets(t *testing.T) {
	for _, tc := range []struct{ cpus, sockets int }{{8, 3}, {2, 4}, {4, 0}} {
		err := labRun(&labFlags{cpus: tc.cpus, sockets: tc.sockets, memoryMB: 2048, readyTimeout: 1}, false)
		want := "--sockets=" + strconv.Itoa(tc.sockets)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--cpus=%d --sockets=%d: error %v, want one naming %s", tc.cpus, tc.sockets, err, want)
		}
	}
}
