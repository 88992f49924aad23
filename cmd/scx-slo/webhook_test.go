package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// Bad attainment flags of `scx-slo webhook` are refused before anything
// starts (the certificate files are not even read), naming the flag and
// the value.
func TestWebhookAgentFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		arg, want string
	}{
		{"--policy-status.agent-selector=app in (", `--policy-status.agent-selector="app in ("`},
		{"--policy-status.agent-port=", "--policy-status.agent-port is empty"},
		{"--policy-status.agent-timeout=0s", "--policy-status.agent-timeout=0s: must be greater than 0"},
		{"--policy-status.attainment-interval=-1s", "--policy-status.attainment-interval=-1s: must be greater than 0"},
	} {
		out, err := exec.Command(exportertest.Binary(t), "webhook", "--tls.cert-file=/nonexistent/tls.crt", "--tls.key-file=/nonexistent/tls.key", tc.arg).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: %v, want an error naming %s:\n%s", tc.arg, err, tc.want, out)
		}
	}
}
