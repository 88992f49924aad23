package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scx-slo/scx-slo/enforcer"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/overload"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
)

// guestExporter is where the lifecycle tests put the real binary in the guest.
const guestExporter = "/usr/local/bin/scx-slo"

// TestEnforceLifecycleInVM runs the real exporter with --enforce in the
// sched_ext guest, with the default pin directories, through the moments
// of its life an operator cares about: start-up (served at once, SIGHUP
// safe during the guard baseline) and upgrade (--enforce.keep-pinned:
// SIGTERM or SIGKILL, then a new process re-adopts the scheduler).
func TestEnforceLifecycleInVM(t *testing.T) {
	if !labtest.InGuest() {
		labtest.RunTest(t, lab.Options{
			Files:   []lab.Copy{{Host: exportertest.Binary(t), Guest: guestExporter}},
			Env:     map[string]string{exportertest.BinaryEnv: guestExporter},
			Timeout: 8 * time.Minute,
		})
		return
	}
	t.Run("ServesDuringGuardBaseline", guestServesDuringGuardBaseline)
	t.Run("KeepPinnedReadopt", guestKeepPinnedReadopt)
}

// TestEnforceChaosInVM: SIGKILL of the exporter at random moments never
// leaves the node stuck (guestChaosKill).
func TestEnforceChaosInVM(t *testing.T) {
	if !labtest.InGuest() {
		labtest.RunTest(t, lab.Options{
			Files:   []lab.Copy{{Host: exportertest.Binary(t), Guest: guestExporter}},
			Env:     map[string]string{exportertest.BinaryEnv: guestExporter},
			Timeout: 6 * time.Minute,
		})
		return
	}
	guestChaosKill(t)
}

// guestServesDuringGuardBaseline: with a long guard baseline the exporter
// answers on /metrics before it attaches, and a SIGHUP in that window
// reloads the config instead of killing the process.
func guestServesDuringGuardBaseline(t *testing.T) {
	cg := guestCgroup(t, "baseline")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: "+cg.path+"\n    latencyBudget: 2ms\n")
	e := exportertest.StartNoWait(t, "--enforce", "--enforce.guard-baseline=10m", "--slo.config-file="+cfg)
	var loaded float64
	waitExporter(t, e, "a scrape during the guard baseline", time.Minute, func() bool {
		var ok bool
		loaded, ok = scrapeValue(e, "scx_slo_config_last_reload_success_timestamp_seconds", nil)
		return ok && loaded > 0
	})
	if s := schedExtFile(t, "state"); s != "disabled" {
		t.Fatalf("sched_ext state %q during a 10 minute guard baseline, want disabled", s)
	}
	if v, _ := scrapeValue(e, "scx_slo_enforcer_requested", nil); v != 1 {
		t.Errorf("scx_slo_enforcer_requested = %v during the baseline, want 1", v)
	}
	// The reload timestamp has a nanosecond resolution: a forced reload
	// after the first load moves it.
	if err := e.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitExporter(t, e, "the SIGHUP reload", 30*time.Second, func() bool {
		v, ok := scrapeValue(e, "scx_slo_config_last_reload_success_timestamp_seconds", nil)
		return ok && v > loaded
	})
	if !strings.Contains(e.Log(), "trigger=signal") {
		t.Errorf("no signal-triggered reload in the log:\n%s", e.Log())
	}
	stopExporter(t, e, syscall.SIGTERM)
	if s := schedExtFile(t, "state"); s != "disabled" {
		t.Errorf("sched_ext state %q after stopping during the baseline, want disabled", s)
	}
}

// guestKeepPinnedReadopt is the documented upgrade path with default flags:
// each exporter leaves the scheduler attached when it ends (SIGTERM, then
// SIGKILL), the next one re-adopts it without a new enable_seq, writes its
// own SLO config into the scheduler's slos map and publishes that map for
// readers on the node.
func guestKeepPinnedReadopt(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	args := []string{"--enforce", "--enforce.keep-pinned", "--slo.config-file=" + cfg}
	t.Cleanup(func() {
		if err := enforcer.Detach(enforcer.DefaultPinDir); err != nil {
			t.Errorf("detaching the pinned scheduler at the end: %v", err)
		}
	})

	first := guestCgroup(t, "readopt-0")
	writeSLO(t, cfg, "slos:\n  - cgroup: "+first.path+"\n    latencyBudget: 2ms\n")
	e := exportertest.StartNoWait(t, args...)
	waitAttached(t, e)
	seq := schedExtFile(t, "enable_seq")
	waitSLOEntry(t, e, first, 2*time.Millisecond)
	last := first

	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		stopExporter(t, e, sig)
		if s := schedExtFile(t, "state"); s != "enabled" {
			t.Fatalf("after %v of a --enforce.keep-pinned exporter: sched_ext state %q, want enabled", sig, s)
		}
		// The next process brings a different config: only it can have
		// written the new entry.
		cg := guestCgroup(t, fmt.Sprintf("readopt-%d", i+1))
		budget := time.Duration(3+i) * time.Millisecond
		writeSLO(t, cfg, "slos:\n  - cgroup: "+cg.path+"\n    latencyBudget: "+budget.String()+"\n")
		e = exportertest.StartNoWait(t, args...)
		waitAttached(t, e)
		if got := schedExtFile(t, "enable_seq"); got != seq {
			t.Errorf("after %v: enable_seq %s, want %s (re-adopted, not re-attached)\n%s", sig, got, seq, e.Log())
		}
		if !strings.Contains(e.Log(), "re-adopted the pinned scheduler") {
			t.Errorf("after %v: the new exporter did not log a re-adoption:\n%s", sig, e.Log())
		}
		waitSLOEntry(t, e, cg, budget)
		last = cg
	}

	// `scx-slo detach` under the running exporter: the enforcer reports
	// the detach, and the exporter publishes its tracer's maps again (the
	// re-adopted scheduler's are gone) with its config in them.
	adopted := pinnedMapID(t, filepath.Join(enforcer.DefaultPinDir, "slos"))
	if err := enforcer.Detach(enforcer.DefaultPinDir); err != nil {
		t.Fatal(err)
	}
	waitExporter(t, e, "observe mode after the detach", 30*time.Second, func() bool {
		v, ok := scrapeValue(e, "scx_slo_mode", map[string]string{"mode": "observe"})
		return ok && v == 1
	})
	waitExporter(t, e, "the tracer's maps published with the config", 30*time.Second, func() bool {
		pub, err := ebpf.LoadPinnedMap(filepath.Join(overload.DefaultDir, overload.SLOsPin), nil)
		if err != nil {
			return false
		}
		defer pub.Close()
		id, err := mapID(pub)
		var ent slomaps.Entry
		return err == nil && id != adopted && pub.Lookup(last.id, &ent) == nil
	})
	stopExporter(t, e, syscall.SIGTERM)
}

func pinnedMapID(t *testing.T, pin string) ebpf.MapID {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	id, err := mapID(m)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// guestCg is a cgroup made for a guest test.
type guestCg struct {
	path string // as the SLO config names it
	id   uint64
}

func guestCgroup(t *testing.T, name string) guestCg {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	id, err := cgroupfs.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return guestCg{path: "/" + name, id: id}
}

func schedExtFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/kernel/sched_ext", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// scrapeValue scrapes e once; ok is false when it does not answer yet or
// the series is absent.
func scrapeValue(e *exportertest.Exporter, name string, labels map[string]string) (float64, bool) {
	resp, body, err := e.Get("/metrics")
	if err != nil || resp.StatusCode != 200 {
		return 0, false
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return 0, false
	}
	return exportertest.Families(fams).Value(name, labels)
}

// waitExporter polls cond until it holds; it fails at once if the exporter
// exits, and after within with the exporter's log.
func waitExporter(t *testing.T, e *exportertest.Exporter, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if err, exited := e.Wait(0); exited {
			t.Fatalf("exporter exited (%v) while waiting for %s\n%s", err, what, e.Log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s\n%s", within, what, e.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitAttached waits until e reports the scheduler attached; it fails
// early when the exporter gave up on enforcing.
func waitAttached(t *testing.T, e *exportertest.Exporter) {
	t.Helper()
	waitExporter(t, e, "the scheduler attached", 90*time.Second, func() bool {
		if strings.Contains(e.Log(), "observing only") {
			t.Fatalf("the exporter fell back to observing:\n%s", e.Log())
		}
		v, _ := scrapeValue(e, "scx_slo_enforcer_attached", nil)
		return v == 1 && schedExtFile(t, "state") == "enabled"
	})
}

// waitSLOEntry waits until the scheduler's pinned slos map holds cg with
// budget and nothing else, and the map published for readers is that same
// map.
func waitSLOEntry(t *testing.T, e *exportertest.Exporter, cg guestCg, budget time.Duration) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		problem := checkSLOMaps(cg, budget)
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %s\n%s", problem, e.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkSLOMaps(cg guestCg, budget time.Duration) string {
	sched, err := ebpf.LoadPinnedMap(filepath.Join(enforcer.DefaultPinDir, "slos"), nil)
	if err != nil {
		return fmt.Sprintf("scheduler's slos pin: %v", err)
	}
	defer sched.Close()
	var ent slomaps.Entry
	if err := sched.Lookup(cg.id, &ent); err != nil {
		return fmt.Sprintf("scheduler's slos map has no entry for %s: %v", cg.path, err)
	}
	if ent.BudgetNs != uint64(budget) {
		return fmt.Sprintf("scheduler's slos map: %s budget %d ns, want %d", cg.path, ent.BudgetNs, budget)
	}
	var n int
	var id uint64
	it := sched.Iterate()
	for it.Next(&id, &ent) {
		n++
	}
	if n != 1 {
		return fmt.Sprintf("scheduler's slos map has %d entries, want only %s's", n, cg.path)
	}
	pub, err := ebpf.LoadPinnedMap(filepath.Join(overload.DefaultDir, overload.SLOsPin), nil)
	if err != nil {
		return fmt.Sprintf("published slos pin: %v", err)
	}
	defer pub.Close()
	a, errA := mapID(sched)
	b, errB := mapID(pub)
	if err := errors.Join(errA, errB); err != nil || a != b {
		return fmt.Sprintf("published slos map id %d, scheduler's %d (%v)", b, a, err)
	}
	return ""
}

func mapID(m *ebpf.Map) (ebpf.MapID, error) {
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("kernel reports no map id")
	}
	return id, nil
}

// stopExporter sends sig and waits for the process to end.
func stopExporter(t *testing.T, e *exportertest.Exporter, sig syscall.Signal) {
	t.Helper()
	if err := e.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Wait(30 * time.Second); !ok {
		t.Fatalf("exporter still running 30 s after %v\n%s", sig, e.Log())
	}
}

// guestChaosKill SIGKILLs a --enforce.keep-pinned exporter at random
// moments: while it attaches a fresh scheduler, while it re-adopts and
// re-publishes a pinned one, when idle, and right after a config reload.
// After each kill a task keeps making progress, the kernel runs either our
// scheduler (which the next exporter re-adopts without a new enable_seq)
// or the default one (which the next exporter replaces), and the last
// exporter ends up attached with the current config. It runs for a
// wall-clock budget (at least minKills kills however slow the guest);
// $SCX_SLO_CHAOS_SEED replays a run. The random sleeps pick the moment
// of each kill; they synchronise nothing.
func guestChaosKill(t *testing.T) {
	const budget, minKills, maxKills = 40 * time.Second, 3, 30
	seed := time.Now().UnixNano()
	if s := os.Getenv("SCX_SLO_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("SCX_SLO_CHAOS_SEED=%q: %v", s, err)
		}
	}
	rng := rand.New(rand.NewSource(seed))
	t.Logf("chaos seed %d (SCX_SLO_CHAOS_SEED replays it)", seed)

	cg := guestCgroup(t, "chaos")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	budgetMs := 2
	writeBudget := func() {
		writeSLO(t, cfg, fmt.Sprintf("slos:\n  - cgroup: %s\n    latencyBudget: %dms\n", cg.path, budgetMs))
	}
	writeBudget()
	progress := startTicker(t, cg)
	args := []string{"--enforce", "--enforce.keep-pinned", "--enforce.guard-baseline=0", "--slo.resync-interval=200ms", "--slo.config-file=" + cfg}
	t.Cleanup(func() { enforcer.Detach(enforcer.DefaultPinDir) })

	// A node-local reader of the published bits, as the sidecar holds
	// one: after each kill it must fail open (stale heartbeat, or no pins)
	// rather than serve a frozen bit, and it must follow the next exporter.
	reader := overload.OpenLazy(overload.DefaultDir)
	defer reader.Close()

	outcomes := map[string]int{}
	readerOutcomes := map[string]int{}
	began := time.Now()
	kills := 0
	for ; kills < maxKills && (kills < minKills || time.Since(began) < budget); kills++ {
		// Now and then start from the default scheduler, so that fresh
		// attaches get killed too, not only re-adoptions.
		if rng.Intn(3) == 0 {
			if err := enforcer.Detach(enforcer.DefaultPinDir); err != nil {
				t.Fatalf("kill %d: detach: %v", kills, err)
			}
			waitSchedState(t, "disabled")
		}
		pinned := schedExtFile(t, "state") == "enabled"
		seq := schedExtFile(t, "enable_seq")
		started := time.Now()
		e := exportertest.StartNoWait(t, args...)
		var moment string
		switch rng.Intn(3) {
		case 0: // attach or re-adoption and re-pin, which begin once it serves
			waitLog(t, e, "Listening on")
			moment = "attach"
			if pinned {
				moment = "re-adoption and re-pin"
			}
			time.Sleep(time.Duration(rng.Intn(2500)) * time.Millisecond)
		case 1:
			waitAttachedLog(t, e)
			checkReadopted(t, kills, e, pinned, seq)
			moment = "idle, attached"
			time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
		default:
			waitAttachedLog(t, e)
			checkReadopted(t, kills, e, pinned, seq)
			budgetMs = 1 + budgetMs%5
			writeBudget()
			if err := e.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			moment = "config reload"
			time.Sleep(time.Duration(rng.Intn(400)) * time.Millisecond)
		}
		stopExporter(t, e, syscall.SIGKILL)
		state := waitSchedSettled(t)
		if state == "enabled" {
			if ops := schedExtFile(t, "root/ops"); !strings.HasPrefix(ops, "scx_slo") {
				t.Fatalf("kill %d: sched_ext runs %q after the kill, want scx_slo or the default scheduler", kills, ops)
			}
		}
		progress.wantAdvance(t, fmt.Sprintf("kill %d (during %s, sched_ext %s)", kills, moment, state))
		readerOutcomes[readerFailsOpen(t, kills, reader, cg.id)]++
		left := map[string]string{"enabled": "scheduler left attached", "disabled": "default scheduler"}[state]
		outcomes["during "+moment+" -> "+left]++
		t.Logf("chaos: kill %d during %s, %s after start: %s", kills, moment, time.Since(started).Round(time.Millisecond), left)
	}

	// One last exporter: it must end up attached (re-adopting what the
	// last kill left) with the latest config.
	pinned := schedExtFile(t, "state") == "enabled"
	seq := schedExtFile(t, "enable_seq")
	e := exportertest.StartNoWait(t, args...)
	waitAttached(t, e)
	checkReadopted(t, kills, e, pinned, seq)
	waitSLOEntry(t, e, cg, time.Duration(budgetMs)*time.Millisecond)
	progress.wantAdvance(t, "the end")
	// The reader follows the live exporter again: an answer, not an error.
	waitExporter(t, e, "the overload reader to follow the last exporter", 10*time.Second, func() bool {
		_, err := reader.Overloaded(cg.id)
		return err == nil
	})
	stopExporter(t, e, syscall.SIGTERM)

	t.Logf("chaos: %d kills in %s, then a clean start re-adopted=%v", kills, time.Since(began).Round(time.Second), pinned)
	for o, n := range outcomes {
		t.Logf("chaos: %3d × killed %s", n, o)
	}
	for o, n := range readerOutcomes {
		t.Logf("chaos: %3d × reader after the kill: %s", n, o)
	}
}

// readerFailsOpen waits until the reader stops answering from the dead
// exporter's pins (stale heartbeat, or pins gone): within the staleness
// bound plus a recheck, as the sidecar would. It returns how it failed.
func readerFailsOpen(t *testing.T, kill int, r *overload.Reader, id uint64) string {
	t.Helper()
	bound := overload.StaleAfter + overload.PinRecheck + time.Second
	deadline := time.Now().Add(bound)
	for {
		_, err := r.Overloaded(id)
		switch {
		case errors.Is(err, overload.ErrStale):
			return "stale heartbeat (fails open)"
		case err != nil && !errors.Is(err, overload.ErrNoSLO):
			return "no pins (fails open)"
		}
		if time.Now().After(deadline) {
			t.Fatalf("kill %d: the overload reader still answers %v from the dead exporter's pins after %s", kill, err, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLog waits until the exporter's log contains line.
func waitLog(t *testing.T, e *exportertest.Exporter, line string) {
	t.Helper()
	waitExporter(t, e, "log line "+strconv.Quote(line), 90*time.Second, func() bool { return strings.Contains(e.Log(), line) })
}

// waitAttachedLog is waitAttached without scraping (scrapes are slow
// under TCG): the enforcer's log line and the kernel's state.
func waitAttachedLog(t *testing.T, e *exportertest.Exporter) {
	t.Helper()
	waitExporter(t, e, "the scheduler attached", 90*time.Second, func() bool {
		l := e.Log()
		if strings.Contains(l, "observing only") {
			t.Fatalf("the exporter fell back to observing:\n%s", l)
		}
		return (strings.Contains(l, "scheduler attached") || strings.Contains(l, "re-adopted the pinned scheduler")) &&
			schedExtFile(t, "state") == "enabled"
	})
}

// checkReadopted: when a scheduler was left attached before e started, e
// must have adopted that one (same enable_seq), not replaced it.
func checkReadopted(t *testing.T, kill int, e *exportertest.Exporter, pinned bool, seq string) {
	t.Helper()
	if !pinned {
		return
	}
	if got := schedExtFile(t, "enable_seq"); got != seq || !strings.Contains(e.Log(), "re-adopted the pinned scheduler") {
		t.Fatalf("after kill %d: a scheduler was left attached (enable_seq %s) but the new exporter did not re-adopt it (enable_seq now %s)\n%s", kill, seq, got, e.Log())
	}
}

// waitSchedSettled waits out sched_ext's transitional states and returns
// enabled or disabled.
func waitSchedSettled(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := schedExtFile(t, "state")
		if s == "enabled" || s == "disabled" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sched_ext state still %q 10 s after the kill", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitSchedState(t *testing.T, want string) {
	t.Helper()
	if s := waitSchedSettled(t); s != want {
		t.Fatalf("sched_ext state %q, want %q", s, want)
	}
}

// ticker is a shell loop in a cgroup that counts its wakeups into a file.
type ticker struct{ file string }

func startTicker(t *testing.T, cg guestCg) *ticker {
	t.Helper()
	tk := &ticker{file: filepath.Join(t.TempDir(), "ticks")}
	script := fmt.Sprintf(`echo $$ > /sys/fs/cgroup%s/cgroup.procs; i=0; while :; do i=$((i+1)); echo $i > %s; usleep 5000; done`, cg.path, tk.file)
	cmd := exec.Command("/bin/sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return tk
}

func (tk *ticker) count() int {
	b, _ := os.ReadFile(tk.file)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// wantAdvance fails unless the ticker makes progress within 5 s.
func (tk *ticker) wantAdvance(t *testing.T, when string) {
	t.Helper()
	from := tk.count()
	deadline := time.Now().Add(5 * time.Second)
	for tk.count() <= from {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the ticker task made no progress in 5 s (stuck at %d)", when, from)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
