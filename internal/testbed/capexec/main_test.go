package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// The program capexec starts holds exactly the kept capabilities in its
// bounding, permitted and effective sets, none inheritable or ambient,
// and no_new_privs, as the kernel reports them for it.
func TestKeepsOnlyTheGivenCapabilities(t *testing.T) {
	needs.Root(t)
	bin := exportertest.BuildPackage(t, "./internal/testbed/capexec")
	for _, tc := range []struct {
		keep string
		want uint64
	}{
		{"bpf,perfmon", 1<<unix.CAP_BPF | 1<<unix.CAP_PERFMON},
		{"CAP_BPF", 1 << unix.CAP_BPF},
		{"", 0},
	} {
		out, err := exec.Command(bin, "-keep", tc.keep, "--", "cat", "/proc/self/status").CombinedOutput()
		if err != nil {
			t.Fatalf("capexec -keep %q: %v\n%s", tc.keep, err, out)
		}
		got := map[string]uint64{}
		for _, line := range strings.Split(string(out), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs") {
				got[k], _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			}
		}
		want := map[string]uint64{"CapBnd": tc.want, "CapPrm": tc.want, "CapEff": tc.want, "CapInh": 0, "CapAmb": 0, "NoNewPrivs": 1}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("capexec -keep %q: %s = %#x, want %#x\n%s", tc.keep, k, got[k], v, out)
			}
		}
	}
}

// An unknown capability name is refused by name, before anything runs.
func TestRefusesUnknownCapability(t *testing.T) {
	bin := exportertest.BuildPackage(t, "./internal/testbed/capexec")
	out, err := exec.Command(bin, "-keep", "bpf,perfmonn", "--", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `-keep: unknown capability "perfmonn"`) {
		t.Errorf("capexec -keep bpf,perfmonn: err %v, output %q; want a refusal naming perfmonn", err, out)
	}
}
