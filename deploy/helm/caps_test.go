package helmchart

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// Capabilities are what the chart gives the agent (templates/_helpers.tpl)
// in every mode. Observe mode is measured on this host by
// TestObserveCapabilities, enforce mode in the sched_ext guest by
// TestEnforceCapabilities.
var Capabilities = []corev1.Capability{"BPF", "PERFMON"}

func TestMain(m *testing.M) {
	workload.Main()
	os.Exit(m.Run())
}

// capsAgent is the real scx-slo running as root with only the given
// capabilities, as in the chart's container: the bounding set limits
// what root gets at exec, nothing is inheritable, no new privileges.
type capsAgent struct {
	cmd  *exec.Cmd
	addr string
	log  *exportertest.SyncBuffer
	done chan error
}

func startWithCaps(t *testing.T, caps []corev1.Capability, args ...string) *capsAgent {
	t.Helper()
	return startAgent(t, nil, caps, args...)
}

// noTracefs runs a command in a mount namespace of its own without
// tracefs (nor debugfs, where it is also reachable), as in a pod that
// mounts no tracefs from the host; exit 99 if one is still there.
var noTracefs = []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
	`for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug; do umount -l "$m" 2>/dev/null; done
	grep -qE ' (tracefs|debugfs) ' /proc/self/mounts && exit 99
	exec "$@"`, "sh"}

// startAgent starts the agent as startWithCaps does, behind the wrapper
// command wrap (none if nil).
func startAgent(t *testing.T, wrap []string, caps []corev1.Capability, args ...string) *capsAgent {
	t.Helper()
	setpriv := needs.Command(t, "setpriv", "util-linux")
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(string(c))
	}
	a := &capsAgent{addr: exportertest.FreeAddr(t), log: &exportertest.SyncBuffer{}, done: make(chan error, 1)}
	argv := append([]string{setpriv, "--no-new-privs", "--inh-caps=-all", "--bounding-set=" + set, "--",
		exportertest.Binary(t), "--web.listen-address=" + a.addr}, args...)
	if wrap != nil {
		needs.Command(t, wrap[0], "util-linux")
		argv = append(append([]string{}, wrap...), argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.cmd = cmd
	go func() { a.done <- cmd.Wait() }()
	t.Cleanup(func() { a.stop(t) })
	return a
}

// wait returns the agent's exit error, waiting at most d; ok is false
// while it runs.
func (a *capsAgent) wait(d time.Duration) (err error, ok bool) {
	select {
	case err := <-a.done:
		a.done <- err
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// scrape returns the agent's metrics, or an error while it does not answer.
func (a *capsAgent) scrape() (exportertest.Families, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + a.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// Observe mode with exactly Capabilities judges a real workload's
// wakeups against its SLO and publishes the overload pins; without any one
// of them the agent cannot load its tracer and exits saying so.
func TestObserveCapabilities(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real agent (root, BPF); skipped with -short")
	}
	pins := needs.BPFFSDir(t, "scx-slo-chart-caps")
	cg := exportertest.NewCgroups(t, "auto")
	probe := cg.Make(t, "probe")
	cg.StartWorkload(t, probe, "probe", 1)
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	if err := os.WriteFile(cfg, []byte("slos:\n  - cgroup: "+probe+"\n    latencyBudget: 50ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--slo.config-file=" + cfg, "--overload.pin-dir=" + pins, "--enforce.pin-dir=" + pins + "-enforce"}

	a := startWithCaps(t, Capabilities, args...)
	judged := waitJudged(t, a, probe)
	for _, pin := range []string{"slos", "overload", "heartbeat"} {
		if _, err := os.Stat(filepath.Join(pins, pin)); err != nil {
			t.Errorf("with %v the overload pins are not published: %v\n%s", Capabilities, err, a.log.String())
		}
	}
	if strings.Contains(a.log.String(), "level=warn") || strings.Contains(a.log.String(), "level=error") {
		t.Errorf("agent with %v warned:\n%s", Capabilities, a.log.String())
	}
	t.Logf("with %v: %v wakeups of %s judged", Capabilities, judged, probe)

	// The chart mounts no tracefs by default (hostPaths.tracefs): the
	// tracer attaches tp_btf programs, found through BTF, not tracefs.
	t.Run("without tracefs", func(t *testing.T) {
		a.stop(t)
		os.RemoveAll(pins + "-notracefs")
		t.Cleanup(func() { os.RemoveAll(pins + "-notracefs") })
		b := startAgent(t, noTracefs, Capabilities, append(args[:1:1], "--overload.pin-dir="+pins+"-notracefs", "--enforce.pin-dir="+pins+"-enforce")...)
		t.Logf("without tracefs: %v wakeups of %s judged", waitJudged(t, b, probe), probe)
	})

	for i, drop := range Capabilities {
		fewer := append(append([]corev1.Capability{}, Capabilities[:i]...), Capabilities[i+1:]...)
		t.Run("without "+string(drop), func(t *testing.T) {
			a := startWithCaps(t, fewer, append(args[:1:1], "--overload.pin-dir="+pins+"-"+string(drop), "--enforce.pin-dir="+pins+"-enforce")...)
			t.Cleanup(func() { os.RemoveAll(pins + "-" + string(drop)) })
			err, exited := a.wait(30 * time.Second)
			switch {
			case !exited:
				t.Errorf("agent with %v still runs after 30 s; %s looks unneeded\n%s", fewer, drop, a.log.String())
			case err == nil || !strings.Contains(a.log.String(), "operation not permitted"):
				t.Errorf("agent with %v exited with %v; want a permission error\n%s", fewer, err, a.log.String())
			default:
				t.Logf("without %s: %v", drop, lastLine(a.log.String()))
			}
		})
	}
}

// waitJudged waits up to 30 s for the agent to judge a wakeup of cgroup
// against its SLO and returns the count; it fails the test if the agent
// exits or judges none.
func waitJudged(t *testing.T, a *capsAgent, cgroup string) float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var judged float64
	for time.Now().Before(deadline) && judged == 0 {
		if err, exited := a.wait(200 * time.Millisecond); exited {
			t.Fatalf("agent exited: %v\n%s", err, a.log.String())
		}
		if fams, err := a.scrape(); err == nil {
			judged, _ = fams.Value("scx_slo_deadlines_total", map[string]string{"cgroup": cgroup})
		}
	}
	if judged == 0 {
		t.Fatalf("agent judged no wakeup of %s within 30 s\n%s", cgroup, a.log.String())
	}
	return judged
}

// stop ends the agent (SIGINT, then SIGKILL after 10 s).
func (a *capsAgent) stop(t *testing.T) {
	t.Helper()
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(os.Interrupt)
	if _, ok := a.wait(10 * time.Second); !ok {
		_ = a.cmd.Process.Kill()
		a.wait(10 * time.Second)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
