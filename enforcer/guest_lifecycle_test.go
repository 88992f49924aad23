package enforcer

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestGuestErrorKnob: scx_bpf_error ejects the scheduler, the kernel falls
// back to the default scheduler without losing tasks, the exit reason
// reaches userspace and metrics, and the enforcer re-attaches.
func TestGuestErrorKnob(t *testing.T) {
	inGuest(t)
	e := startEnforcer(t, Options{Logger: testLogger(t), MaxReattach: 2, Backoff: 300 * time.Millisecond, Poll: 50 * time.Millisecond})
	defer e.Stop()
	waitState(t, "enabled", 5*time.Second)
	batch := newCgroup(t, "errknob")
	hog := start(t, "hog", batch, map[string]string{"RUN_FOR": "3s"})

	if err := e.setErrorKnob(7); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the enforcer to notice the ejection", 5*time.Second, func() bool {
		return counterValue(e.metrics.exits.WithLabelValues("error_bpf")) == 1
	})
	ex := e.LastExit()
	t.Logf("exit record: %+v", ex)
	if ex.Kind != "error_bpf" || !strings.Contains(ex.Msg, "scx-slo test error knob 7") {
		t.Errorf("exit record %+v: want kind error_bpf and our message", ex)
	}
	waitFor(t, "re-attach after backoff", 10*time.Second, func() bool {
		return e.Attached() && schedExt(t, "state") == "enabled"
	})
	if got := counterValue(e.metrics.attempts.WithLabelValues("ok")); got != 2 {
		t.Errorf("attach attempts ok = %v, want 2 (first attach + re-attach)", got)
	}
	var r workload.HogReport
	if err := hog.wait(&r); err != nil || r.Chunks == 0 {
		t.Errorf("hog across the ejection: %+v, %v", r, err)
	}
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func enableSeq(t *testing.T) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(schedExt(t, "enable_seq"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startLoader runs this binary as a bare loader process and waits until
// it reports the scheduler attached.
func startLoader(t *testing.T, keep bool) *exec.Cmd {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self)
	mode := "nokeep"
	if keep {
		mode = "keep"
	}
	cmd.Env = append(os.Environ(), loaderEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "attached" {
		cmd.Process.Kill()
		t.Fatalf("loader said %q, %v", line, err)
	}
	return cmd
}

// TestGuestKillPinnedReadopt: SIGKILL of an unpinned loader detaches;
// SIGKILL of a pinned one leaves the scheduler enabled; a new enforcer
// re-adopts it without a new enable_seq; Detach removes it.
func TestGuestKillPinnedReadopt(t *testing.T) {
	inGuest(t)
	batch := newCgroup(t, "killtest")
	hog := start(t, "hog", batch, map[string]string{"RUN_FOR": "4s"})

	l := startLoader(t, false)
	waitState(t, "enabled", 5*time.Second)
	l.Process.Signal(syscall.SIGKILL)
	l.Wait()
	waitState(t, "disabled", 5*time.Second)

	l = startLoader(t, true)
	waitState(t, "enabled", 5*time.Second)
	seq := enableSeq(t)
	l.Process.Signal(syscall.SIGKILL)
	l.Wait()
	time.Sleep(300 * time.Millisecond)
	if s := schedExt(t, "state"); s != "enabled" {
		t.Fatalf("pinned scheduler after its loader was SIGKILLed: state %q, want enabled", s)
	}

	e := startEnforcer(t, Options{Logger: testLogger(t), KeepPinned: true, Backoff: 200 * time.Millisecond, Poll: 50 * time.Millisecond})
	if got := enableSeq(t); got != seq {
		t.Errorf("enable_seq %d after re-adoption, want unchanged %d", got, seq)
	}
	if got := counterValue(e.metrics.attempts.WithLabelValues("ok")); got != 0 {
		t.Errorf("re-adoption counted %v attach attempts, want 0", got)
	}
	if m, ok := e.Maps(); !ok || m.SLOs == nil {
		t.Error("re-adopted enforcer has no maps")
	}
	e.Stop() // KeepPinned: stays attached
	if s := schedExt(t, "state"); s != "enabled" {
		t.Errorf("after Stop with KeepPinned: state %q, want enabled", s)
	}

	// `scx-slo detach` while an enforcer watches: it must not re-attach.
	e = startEnforcer(t, Options{Logger: testLogger(t), KeepPinned: true, Backoff: 200 * time.Millisecond, Poll: 50 * time.Millisecond})
	defer e.Stop()
	if err := Detach(DefaultPinDir); err != nil {
		t.Fatal(err)
	}
	waitState(t, "disabled", 5*time.Second)
	waitFor(t, "the enforcer to see the detach", 3*time.Second, func() bool { return !e.Attached() })
	time.Sleep(time.Second) // several backoffs
	if s := schedExt(t, "state"); s != "disabled" || e.Attached() {
		t.Errorf("after Detach: state %q, attached %v; want it to stay detached", s, e.Attached())
	}
	if k := e.LastExit().Kind; k != "unreg" {
		t.Errorf("exit kind after Detach %q, want unreg", k)
	}
	if _, err := os.Stat(DefaultPinDir); !os.IsNotExist(err) {
		t.Errorf("pin directory left behind: %v", err)
	}
	var r workload.HogReport
	if err := hog.wait(&r); err != nil || r.Chunks == 0 {
		t.Errorf("hog across attach/kill/detach: %+v, %v", r, err)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
