package helmchart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
)

// capNumbers are the kernel's numbers of the capabilities the chart may add.
var capNumbers = map[corev1.Capability]int{"BPF": unix.CAP_BPF, "PERFMON": unix.CAP_PERFMON}

// TestEnforceCapabilities boots the sched_ext kernel and, in one guest,
// runs the real agent with --enforce as root under capexec (the chart's
// container: drop ALL, add Capabilities, no new privileges): first once
// without each of Capabilities, where it must exit with a permission
// error and leave sched_ext off, then with exactly Capabilities, where
// the scx-slo scheduler must attach, the overload pins must appear in
// bpffs, a scrape must show the scheduler, and an interrupt must detach
// it again.
func TestEnforceCapabilities(t *testing.T) {
	k := labtest.Kernel(t) // skips (or fails with SCX_SLO_LAB_REQUIRED=1) without a lab
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "slo.yaml")
	if err := os.WriteFile(cfg, []byte("slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var want uint64
	for _, c := range Capabilities {
		n, ok := capNumbers[c]
		if !ok {
			t.Fatalf("capability %s of the chart has no number in capNumbers", c)
		}
		want |= 1 << n
	}

	// agent is the command line of one agent run keeping caps, with its
	// own pin directories; its log goes to /out/<name>.log.
	agent := func(name string, caps []corev1.Capability) string {
		keep := make([]string, len(caps))
		for i, c := range caps {
			keep[i] = strings.ToLower(string(c))
		}
		return fmt.Sprintf("/usr/local/bin/capexec -keep '%s' -- /usr/local/bin/scx-slo --enforce"+
			" --slo.config-file=/etc/scx-slo/slo.yaml --web.listen-address=127.0.0.1:9817"+
			" --overload.pin-dir=/sys/fs/bpf/caps-%[2]s --enforce.pin-dir=/sys/fs/bpf/caps-%[2]s-enforce >/out/%[2]s.log 2>&1",
			strings.Join(keep, ","), name)
	}
	var script strings.Builder
	script.WriteString("mkdir -p /sys/fs/cgroup/ls\n")
	// Without one capability the agent must give up by itself; timeout
	// only bounds a run that does not (exit status 124 or 143).
	var without []string
	for i, drop := range Capabilities {
		fewer := append(append([]corev1.Capability{}, Capabilities[:i]...), Capabilities[i+1:]...)
		name := "without-" + string(drop)
		without = append(without, name)
		fmt.Fprintf(&script, "timeout 120 %s\necho $? > /out/%[2]s.rc\ncat /sys/kernel/sched_ext/state > /out/%[2]s.state\n", agent(name, fewer), name)
	}
	// With the chart's set: wait (bounded, polling) for the scheduler,
	// give /ls a little work, scrape, then interrupt and wait for the exit.
	script.WriteString(agent("chart", Capabilities) + ` &
pid=$!
i=0
until [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] || [ $i -ge 1500 ] || ! kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i+1)); done
cat /sys/kernel/sched_ext/state > /out/chart.state
cat /sys/kernel/sched_ext/root/ops > /out/chart.ops 2>&1
cat /proc/$pid/status > /out/chart.status
ls /sys/fs/bpf/caps-chart > /out/chart.pins 2>&1
sh -c 'echo $$ > /sys/fs/cgroup/ls/cgroup.procs; for i in $(seq 1 200); do sleep 0.01; done'
for i in $(seq 1 300); do
  wget -qO /out/chart.metrics http://127.0.0.1:9817/metrics && break
  sleep 0.2
done
kill -INT $pid
wait $pid
echo $? > /out/chart.rc
cat /sys/kernel/sched_ext/state > /out/chart-after.state
`)
	var console bytes.Buffer
	res, err := lab.Run(ctx, lab.Options{
		Kernel: k, Command: []string{script.String()}, Console: &console,
		Files: []lab.Copy{
			{Host: exportertest.Binary(t), Guest: "/usr/local/bin/scx-slo"},
			{Host: exportertest.BuildPackage(t, "./internal/testbed/capexec"), Guest: "/usr/local/bin/capexec"},
			{Host: cfg, Guest: "/etc/scx-slo/slo.yaml"},
		},
		OutDir: filepath.Join(dir, "out"),
	})
	if err != nil {
		t.Fatalf("lab run: %v\n%s", err, console.String())
	}
	raw := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(res.OutDir, name))
		return string(b)
	}
	read := func(name string) string { return strings.TrimSpace(raw(name)) }
	if res.ExitCode != 0 {
		t.Fatalf("guest script exited %d\n%s", res.ExitCode, console.String())
	}

	for _, name := range without {
		log := read(name + ".log")
		rc, _ := strconv.Atoi(read(name + ".rc"))
		switch {
		case rc == 124 || rc == 143:
			t.Errorf("%s: the agent still ran after 120 s; the capability looks unneeded\n%s", name, log)
		case rc == 0 || !strings.Contains(log, "operation not permitted"):
			t.Errorf("%s: the agent exited with status %d; want a permission error\n%s", name, rc, log)
		default:
			t.Logf("%s: exit status %d: %s", name, rc, lastLine(log))
		}
		if st := read(name + ".state"); st != "disabled" {
			t.Errorf("%s: sched_ext state %q after the run, want disabled", name, st)
		}
	}

	log := read("chart.log")
	// The agent's own credentials, read while it ran: what the chart's
	// container would hold, nothing more.
	status := read("chart.status")
	for field, v := range map[string]uint64{"CapBnd": want, "CapPrm": want, "CapEff": want, "CapInh": 0, "CapAmb": 0, "NoNewPrivs": 1} {
		got, ok := statusField(status, field)
		if !ok || got != v {
			t.Errorf("agent's %s = %#x (found %v), want %#x\n%s", field, got, ok, v, status)
		}
	}
	if st := read("chart.state"); st != "enabled" {
		t.Fatalf("with %v sched_ext state is %q, want enabled\n%s", Capabilities, st, log)
	}
	if ops := read("chart.ops"); !strings.HasPrefix(ops, "scx_slo") {
		t.Errorf("with %v root/ops = %q, want the scx-slo scheduler\n%s", Capabilities, ops, log)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(raw("chart.metrics")))
	if err != nil {
		t.Fatalf("parsing the guest scrape: %v\n%s", err, log)
	}
	f := exportertest.Families(fams)
	for _, m := range []struct {
		name   string
		labels map[string]string
	}{
		{"scx_slo_mode", map[string]string{"mode": "enforce"}},
		{"scx_slo_scx_state", map[string]string{"state": "enabled"}},
		{"scx_slo_enforcer_attached", nil},
	} {
		if v, _ := f.Value(m.name, m.labels); v != 1 {
			t.Errorf("with %v %s%v = %v, want 1\n%s", Capabilities, m.name, m.labels, v, log)
		}
	}
	for _, pin := range []string{"slos", "overload", "heartbeat"} {
		if !slices.Contains(strings.Fields(read("chart.pins")), pin) {
			t.Errorf("with %v the overload pin %s is missing from bpffs: %q\n%s", Capabilities, pin, read("chart.pins"), log)
		}
	}
	if strings.Contains(log, "not permitted") || strings.Contains(log, "level=error") {
		t.Errorf("agent with %v logged an error:\n%s", Capabilities, log)
	}
	if rc := read("chart.rc"); rc != "0" {
		t.Errorf("agent with %v exited with status %s on SIGINT\n%s", Capabilities, rc, log)
	}
	if st := read("chart-after.state"); st != "disabled" {
		t.Errorf("with %v the scheduler did not detach on exit: state %q\n%s", Capabilities, st, log)
	}
	t.Logf("with %v: scheduler %q attached and detached; guest boot %v, total %v",
		Capabilities, read("chart.ops"), res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond))
}

// statusField is a /proc/<pid>/status field read as hexadecimal (the
// capability sets) or decimal (NoNewPrivs, 0 or 1: the same either way).
func statusField(status, field string) (uint64, bool) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}
