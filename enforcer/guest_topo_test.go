package enforcer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// The TestGuestTopo* tests check the findings of issue 11 (starvation,
// isolation, lifecycle) one by one, each against a stated bound. TestVM
// runs them on 2 vCPUs (those that need more CPUs skip there),
// TestVMTopology on 8 vCPUs in two sockets (two last-level caches).
// TestGuestManyCgroups runs only in TestVM: 20,000 mkdirs and rmdirs
// take minutes on 8 emulated vCPUs.

// needCPUs skips a test that needs more CPUs than this guest has; it runs
// in TestVMTopology's boot.
func needCPUs(t *testing.T, n int) int {
	t.Helper()
	if c := runtime.NumCPU(); c < n {
		t.Skipf("needs %d CPUs, the guest has %d (runs under TestVMTopology)", n, c)
	}
	t.Logf("CPU time runs %.3fx CLOCK_MONOTONIC in this boot; CPU shares are corrected for it", cpuClockRate(t))
	return runtime.NumCPU()
}

// sloFor gives cg an SLO in the attached scheduler's maps.
func sloFor(t *testing.T, e *Enforcer, entries map[uint64]slomaps.Entry) slomaps.Maps {
	t.Helper()
	m, ok := e.Maps()
	if !ok {
		t.Fatal("scheduler not attached")
	}
	if err := m.SyncSLOs(entries); err != nil {
		t.Fatal(err)
	}
	return m
}

func waitHog(t *testing.T, p *proc) workload.HogReport {
	t.Helper()
	var r workload.HogReport
	if err := p.wait(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// exitRecord is what every issue-11 test reports about the scheduler's
// life: the watchdog (error_stall) must never fire.
func exitRecord(e *Enforcer) map[string]any {
	ex := e.LastExit()
	return map[string]any{"attached": e.Attached(), "exit_kind": ex.Kind, "exit_reason": ex.Reason,
		"stall_exits": counterValue(e.metrics.exits.WithLabelValues("error_stall"))}
}

// TestGuestTopoPinnedBehindSLO (issue 11, defect 3): a best-effort task
// pinned to CPU 0, like a per-CPU kthread, behind two SLO hogs pinned to
// CPU 0, while best-effort hogs pinned to every other CPU keep starting
// best-effort work. A machine-wide best-effort bound is refreshed by
// those other CPUs, so CPU 0 would never serve its own; per CPU, the
// pinned task waits at most be_bound (40 ms) while SLO work runs on its
// CPU. The hogs record their gaps, so stretches in which nothing ran on
// CPU 0 (the emulator did not run the vCPU) are told apart from waits
// behind SLO work. The pinned hogs must also not starve unpinned
// best-effort work (this test's process) to rescue().
func TestGuestTopoPinnedBehindSLO(t *testing.T) {
	inGuest(t)
	n := needCPUs(t, 2)
	e := attached(t)
	slo, be := newCgroup(t, "pinslo"), newCgroup(t, "pinbe")
	sloFor(t, e, map[uint64]slomaps.Entry{slo.id: slomaps.NewEntry(uint64(5*time.Millisecond), 0.99, 1000, 0)})
	ctl := newHogCtl(t)
	// Best-effort first: a pinned task starting behind SLO hogs would
	// need rescue for every step of the Go runtime's start.
	pinned := startOn(t, "gaphog", be, "0", ctl.params())
	var others, sloHogs []*proc
	for c := 1; c < n; c++ {
		others = append(others, startOn(t, "gaphog", be, strconv.Itoa(c), ctl.params()))
	}
	ctl.waitReady(t, n)
	for i := 0; i < 2; i++ {
		sloHogs = append(sloHogs, startOn(t, "gaphog", slo, "0", ctl.params()))
	}
	ctl.waitReady(t, n+2)
	ctl.open(t)
	time.Sleep(5 * time.Second) // the measuring window: long, so one emulator stall weighs less
	ctl.close(t)
	// SLO hogs first: until they are gone the pinned one may not run to
	// see the close (today that takes a rescue).
	var sloShare float64
	var sloReports []GapHogReport
	for _, p := range sloHogs {
		r := waitGapHog(t, p)
		sloShare += r.Share(t)
		sloReports = append(sloReports, r)
	}
	var otherGap int64
	var otherReports []GapHogReport
	for _, p := range others {
		r := waitGapHog(t, p)
		otherGap = max(otherGap, r.MaxGapNs)
		otherReports = append(otherReports, r)
	}
	pr := waitGapHog(t, pinned)
	busy, busyWall := busyGap(pr, sloReports)
	// How much of the pinned task's longest gap no hog on any CPU ran:
	// the emulator (or the host) ran no vCPU.
	g := maxGap(pr)
	t.Logf("pinned task's longest gap %s: no hog on CPU 0 ran for %s of it, no hog on any CPU for %s",
		time.Duration(g[1]-g[0]), time.Duration(stalledIn(g, sloReports)), time.Duration(stalledIn(g, append(otherReports, sloReports...))))
	t.Logf("pinned best-effort task on CPU 0 (allowed CPUs %d): %.3f of CPU 0, max gap %s, longest wait while CPU 0 ran SLO work %s (in a gap of %s), %d voluntary and %d involuntary switches; SLO hogs on CPU 0: %.3f of it; best-effort hogs alone on CPUs 1..%d: max gap %s",
		pr.CPUsAllowed, pr.Share(t), time.Duration(pr.MaxGapNs), time.Duration(busy), time.Duration(busyWall), pr.Nvcsw, pr.Nivcsw, sloShare, n-1, time.Duration(otherGap))
	nGaps := len(pr.Gaps)
	pr.Gaps = nil
	writeResult(t, "topo_pinned_behind_slo", map[string]any{"cpus": n, "pinned": pr, "gaps": nGaps, "busy_gap_ns": busy, "busy_gap_wall_ns": busyWall,
		"other_max_gap_ns": otherGap, "slo_share": sloShare, "scheduler": exitRecord(e)})
	if pr.CPUsAllowed != 1 {
		t.Fatalf("the pinned task may run on %d CPUs, want 1 (taskset)", pr.CPUsAllowed)
	}
	// The design: best-effort work waiting on a CPU gets it within
	// be_bound (40 ms) of SLO work, plus the SLO slice running when the
	// bound passes (5 ms) and a tick (4 ms) to notice: 49 ms per wait.
	// One gap of the pinned Go process can hold two waits back to back
	// (the spinning goroutine handed between two of its threads, both
	// pinned: ~20 voluntary switches per window), so 98 ms. The rest is
	// the emulator: single-threaded TCG leaves a vCPU unrun for up to
	// ~0.8 s on a busy host; stretches where no hog on CPU 0 progressed
	// are left out, but a vCPU run in short bursts still counts as SLO
	// work running. Measured (host load 10-22): 5-11 ms; with
	// stress-ng --cpu 1 on the host: 88.7 ms; on a CI host 120.2 ms (a
	// gap of 989 ms, 868 ms of it with CPU 0 unrun). Before the protected
	// run became a 5 ms window rather than one task: 18-220 ms; before
	// per-CPU bounds the task starved for seconds (the next check).
	if bound := 200 * time.Millisecond; busy > int64(bound) {
		t.Errorf("pinned best-effort task waited %s while SLO work ran on its CPU (in a gap of %s), want under %s (two waits of be_bound 40 ms + an SLO slice + a tick, and the emulator's bursts)",
			time.Duration(busy), time.Duration(busyWall), bound)
	}
	// Wall clock, less the stretches of the longest gap in which no hog on
	// any CPU progressed (the host ran no vCPU: with stress-ng --cpu 1 on
	// the host, 514 ms of a 1.06 s gap). The hogs alone on CPUs 1..n-1
	// measure the rest of the emulator's noise in the same window. The
	// old scheduler left the pinned task 1.9-3.7 s.
	netGap := pr.MaxGapNs - stalledIn(g, append(otherReports, sloReports...))
	if bound := max(time.Second, time.Duration(otherGap)*3/2+200*time.Millisecond); netGap > int64(bound) {
		t.Errorf("pinned best-effort task behind SLO work on its CPU went %s without running (%s of it while some vCPU ran), want under %s (1 s, or 1.5 times the unloaded CPUs' own longest gap + 200 ms)", time.Duration(pr.MaxGapNs), time.Duration(netGap), bound)
	}
	// Unpinned best-effort work (this test's own process) must not be
	// left to rescue() behind the pinned hogs on CPUs 1..n-1.
	if st, err := e.Stats(); err == nil && st["rescue"] > 100 {
		t.Errorf("%d best-effort tasks waited 500 ms for rescue, want ≤ 100 (unpinned work behind pinned hogs)", st["rescue"])
	}
}

// TestGuestTopoThrottledShare (issue 11, defect 2): a cgroup with one
// spinning task against 3n spinners in a cgroup of cpu.weight 1000. Per
// task the weights come out equal (the rival cgroup's weight is shared
// by its 3n tasks), so by weight the lone task could have n/(3n+1) CPUs;
// cpu.max caps it at half that, so the cap binds. Today a throttled task
// is parked with virtual time = wall-clock now and keeps it; the rivals'
// virtual time grows by about n*100/1000 per second, less than the wall
// clock (on a node with days of uptime, hopelessly less), so the
// throttled task queues behind all best-effort work and runs only when
// rescued. (With fewer rivals than 3n, BE_DSQ sometimes holds only the
// throttled task, its wall-clock vtime becomes be_vnow and the defect
// hides.) Then the cap is lifted: the formerly throttled task must get
// its share at once. Bounds: half the expected share in each phase.
func TestGuestTopoThrottledShare(t *testing.T) {
	inGuest(t)
	n := needCPUs(t, 2)
	e := attached(t)
	limited, rival := newCgroup(t, "limited"), newCgroup(t, "rival")
	rival.set(t, "cpu.weight", "1000")
	fair := float64(n) / float64(3*n+1) // n CPUs shared by 3n+1 equal tasks
	capCPU := min(0.5, fair/2)          // a cap that binds
	limited.set(t, "cpu.max", fmt.Sprintf("%d 100000", int(capCPU*100000)))
	rivals, lone := startSpinners(t, rival, 3*n), startSpinners(t, limited, 1)
	rivals.run(t)
	lone.run(t)
	waitBusy(t, rival, 0.8*float64(n))
	time.Sleep(500 * time.Millisecond) // the cap is hit at once; let it act a few periods
	// Shares over the time that really passed: this process is
	// best-effort among the hogs and may sleep well past its deadline.
	u0, t0 := usageUsec(t, limited), time.Now()
	time.Sleep(2 * time.Second)
	u1, t1 := usageUsec(t, limited), time.Now()
	limited.set(t, "cpu.max", "max")
	time.Sleep(200 * time.Millisecond)
	u2, t2 := usageUsec(t, limited), time.Now()
	time.Sleep(1500 * time.Millisecond)
	u3, t3 := usageUsec(t, limited), time.Now()
	lone.stop()
	rivals.stop()
	st, _ := e.Stats()
	capped := cpuShare(t, u1-u0, t1.Sub(t0))
	freed := cpuShare(t, u3-u2, t3.Sub(t2))
	wantCapped, wantFreed := capCPU, fair
	t.Logf("cpu.max %.2f CPU against %d rival spinners (fair share %.2f): %.2f CPU while capped (expected %.2f), %.2f CPU after the cap was lifted (expected %.2f); throttled %d, unthrottled %d, rescued %d",
		capCPU, 3*n, fair, capped, wantCapped, freed, wantFreed, st["throttle"], st["unthrottle"], st["rescue"])
	writeResult(t, "topo_throttled_share", map[string]any{"cpus": n, "capped_cpu": capped, "freed_cpu": freed, "expected_capped": wantCapped,
		"expected_freed": wantFreed, "cpu_clock_rate": cpuClockRate(t), "stats": st, "scheduler": exitRecord(e)})
	if capped < wantCapped/2 {
		t.Errorf("cpu.max-limited cgroup got %.2f CPU while capped at %.2f, want ≥ %.2f (half its cap)", capped, capCPU, wantCapped/2)
	}
	if freed < wantFreed/2 {
		t.Errorf("after its cap was lifted the formerly throttled task got %.2f CPU, want ≥ %.2f (half its fair share)", freed, wantFreed/2)
	}
}

// TestGuestTopoLoneTask (issue 11, defect 1): a task alone on its CPU
// that calls sched_yield (its slice ends with nothing else runnable)
// must keep running there. Today SCX_OPS_ENQ_LAST sends it through
// ops.enqueue, which queues it in the shared queue and kicks only other
// idle CPUs (this CPU's idle bit is still clear): pinned, it waits for
// whatever next interrupts its idle CPU; unpinned, another CPU picks it
// up. Bounds: pinned, at most 25% of yields take over 100 us (EEVDF
// in the same boot: p50 3-4 us); unpinned, at most 10% of yields move
// it to another CPU (EEVDF: none).
func TestGuestTopoLoneTask(t *testing.T) {
	inGuest(t)
	n := needCPUs(t, 2)
	cg := newCgroup(t, "lone")
	eePinned, eeFree := yieldRun(t, cg, n-1)
	e := attached(t)
	pinned, free := yieldRun(t, cg, n-1)
	t.Logf("EEVDF:   pinned to CPU %d: yield p50 %s p99 %s max %s, %d over %s; unpinned: p50 %s p99 %s, %d of %d yields moved CPU",
		n-1, time.Duration(eePinned.P50Ns), time.Duration(eePinned.P99Ns), time.Duration(eePinned.MaxNs), eePinned.Slow, slowYield,
		time.Duration(eeFree.P50Ns), time.Duration(eeFree.P99Ns), eeFree.Migrations, eeFree.N)
	t.Logf("scx_slo: pinned to CPU %d: yield p50 %s p99 %s max %s, %d over %s; unpinned: p50 %s p99 %s, %d of %d yields moved CPU",
		n-1, time.Duration(pinned.P50Ns), time.Duration(pinned.P99Ns), time.Duration(pinned.MaxNs), pinned.Slow, slowYield,
		time.Duration(free.P50Ns), time.Duration(free.P99Ns), free.Migrations, free.N)
	writeResult(t, "topo_lone_task", map[string]any{"cpus": n, "pinned": pinned, "unpinned": free,
		"eevdf_pinned": eePinned, "eevdf_unpinned": eeFree, "scheduler": exitRecord(e)})
	// Emulation noise moves both counts from run to run (scx_slo 29-355 of
	// 2000 with EEVDF at 1-59 in the same boots; 219 with EEVDF at 1 in a
	// CI run): a yield that finds a task in the domain's shared queue runs
	// that task first, and under TCG the idle CPU kicked for it wakes late.
	// The old scheduler left 1376-1664 slow, so a quarter still separates
	// the two. Bound: 25%, or eight times EEVDF's count.
	if bound := max(pinned.N/4, 8*eePinned.Slow); pinned.Slow > bound {
		t.Errorf("%d of %d sched_yields of a lone pinned task took over %s (EEVDF: %d), want ≤ %d (25%%, or 8 times EEVDF's): its CPU idled while it waited",
			pinned.Slow, pinned.N, slowYield, eePinned.Slow, bound)
	}
	if free.Migrations > free.N/10 {
		t.Errorf("a lone task moved CPU on %d of %d yields, want ≤ 10%%", free.Migrations, free.N)
	}
}

// yieldRun runs the yielder pinned to cpu, then unpinned, 2,000 yields each.
func yieldRun(t *testing.T, cg *cgroup, cpu int) (pinned, free YieldReport) {
	t.Helper()
	params := map[string]string{"YIELDS": "2000"}
	if err := startOn(t, "yielder", cg, strconv.Itoa(cpu), params).wait(&pinned); err != nil {
		t.Fatal(err)
	}
	if err := start(t, "yielder", cg, params).wait(&free); err != nil {
		t.Fatal(err)
	}
	return pinned, free
}

// TestGuestTopoCpusetVictims (issue 11, defect 4): an SLO cgroup whose
// tasks may only run on CPU 0 (a hog and a 2 ms probe, like a pod under
// the static CPU manager) while best-effort hogs run on every other CPU.
// Its tasks wake and requeue on CPU 0, which runs an SLO deadline, so
// today's victim search picks a CPU running best-effort work, claims it
// and kicks it with SCX_KICK_PREEMPT, though the task cannot run there.
// A kick for a preemption whose victim is not the enqueuing CPU
// (kick_preempt - preempt_local in the scheduler's stats) is such a kick
// here: bound 0.
func TestGuestTopoCpusetVictims(t *testing.T) {
	inGuest(t)
	n := needCPUs(t, 2)
	e := attached(t)
	pod, be := newCgroup(t, "cpusetpod"), newCgroup(t, "cpusetbe")
	sloFor(t, e, map[uint64]slomaps.Entry{pod.id: slomaps.NewEntry(uint64(time.Millisecond), 0.99, 100, 0)})
	run := map[string]string{"RUN_FOR": "3s"}
	var others []*proc
	for c := 1; c < n; c++ {
		others = append(others, startOn(t, "hog", be, strconv.Itoa(c), run))
	}
	time.Sleep(300 * time.Millisecond) // best-effort hogs on their CPUs
	before, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"kick_preempt", "preempt_local"} {
		if _, ok := before[k]; !ok {
			t.Fatalf("scheduler stats have no %q (renamed? this test counts remote preemption kicks with it): %v", k, before)
		}
	}
	// Confine the pod with cpuset, as the static CPU manager does, so
	// every task of it (launcher included) is allowed on CPU 0 only from
	// its first wakeup.
	if err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpuset"), 0o644); err != nil {
		t.Fatalf("enabling the cpuset controller: %v", err)
	}
	pod.set(t, "cpuset.cpus", "0")
	hog := start(t, "hog", pod, map[string]string{"RUN_FOR": "2s"})
	probe := start(t, "probe", pod, map[string]string{"RUN_FOR": "2s", "PROBE_PERIOD": "2ms", "PROBE_WORK": "100us"})
	var rep workload.ProbeReport
	if err := probe.wait(&rep); err != nil {
		t.Fatal(err)
	}
	waitHog(t, hog)
	after, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	waitHogs(t, [][]*proc{others})
	kicks := after["kick_preempt"] - before["kick_preempt"]
	local := after["preempt_local"] - before["preempt_local"]
	remote := kicks - local
	t.Logf("SLO tasks confined to CPU 0: %d preemption kicks, %d of CPU 0 itself, %d of CPUs they cannot use", kicks, local, remote)
	writeResult(t, "topo_cpuset_victims", map[string]any{"cpus": n, "kick_preempt": kicks, "preempt_local": local, "remote": remote,
		"probe": workload.Summarize(rep.LatenessNs, time.Millisecond), "scheduler": exitRecord(e)})
	if remote != 0 {
		t.Errorf("SLO tasks allowed only on CPU 0 claimed and kicked other CPUs %d times, want 0", remote)
	}
}

// TestGuestTopoHotplug (issue 11, defect 6): taking the last CPU offline
// and back online while attached (and hogs run everywhere) leaves the
// scheduler attached: the same enable_seq, no exit. Today there is no
// ops.cpu_online/cpu_offline, so the kernel ejects the scheduler at the
// first hotplug event.
func TestGuestTopoHotplug(t *testing.T) {
	inGuest(t)
	n := needCPUs(t, 2)
	e := attached(t)
	cg := newCgroup(t, "hotplug")
	hogs := startHogs(t, 2*n, 3*time.Second, cg)
	seq := enableSeq(t)
	cpu := n - 1
	online := fmt.Sprintf("/sys/devices/system/cpu/cpu%d/online", cpu)
	setOnline := func(v string) {
		if err := os.WriteFile(online, []byte(v), 0o644); err != nil {
			t.Fatalf("writing %s to %s: %v", v, online, err)
		}
	}
	t.Cleanup(func() { os.WriteFile(online, []byte("1"), 0o644) })
	time.Sleep(300 * time.Millisecond) // hogs running
	began := time.Now()
	setOnline("0")
	offAt := time.Since(began)
	stateOff := schedExt(t, "state")
	setOnline("1")
	onAt := time.Since(began)
	time.Sleep(500 * time.Millisecond) // an ejection is asynchronous (disable work)
	waitHogs(t, hogs)
	state, seqAfter := schedExt(t, "state"), enableSeq(t)
	t.Logf("CPU %d offline after %s (state %q), online after %s; state now %q, enable_seq %d -> %d, exit %+v",
		cpu, offAt, stateOff, onAt, state, seq, seqAfter, e.LastExit())
	writeResult(t, "topo_hotplug", map[string]any{"cpus": n, "cpu": cpu, "state": state, "enable_seq": []uint64{seq, seqAfter}, "scheduler": exitRecord(e)})
	if state != "enabled" || !e.Attached() || seqAfter != seq {
		t.Errorf("after CPU %d went offline and online: state %q, attached %v, enable_seq %d -> %d, exit %+v; want the scheduler attached throughout",
			cpu, state, e.Attached(), seq, seqAfter, e.LastExit())
	}
}

// TestGuestTopoRTStrand (issue 11, defect 6, cpu_release): a SCHED_FIFO
// task on CPU 1 spins 30 ms of every 40 ms; a best-effort probe allowed
// on CPUs 1 and 2 (2 idle) wakes at the same period 2 ms earlier and
// spins 5 ms, starting on CPU 1. The RT task preempts it, and the kernel
// leaves it in CPU 1's local queue; without ops.cpu_release nobody moves
// it, so it waits out the RT burst there, period after period, while CPU
// 2 idles. With cpu_release it is re-enqueued, runs on CPU 2 and stays
// there. Under single-threaded TCG a halted vCPU's timer can wait for the
// spinning one to yield the emulator, so completion times are noisy even
// under EEVDF (measured first, same boot); the bounds: at most a sixth
// of periods end on CPU 1 (EEVDF: 1-6%; scx-slo 5-13% in quiet CI runs;
// the scheduler without re-enqueueing 25-63%), and the median completion
// time is at most twice EEVDF's plus 10 ms.
func TestGuestTopoRTStrand(t *testing.T) {
	inGuest(t)
	n := needCPUs(t, 3)
	cg := newCgroup(t, "rtstrand")
	ee, _ := rtStrandRun(t, cg)
	t.Logf("EEVDF for comparison: probe done after p50 %s p90 %s max %s; %d of %d periods ended on CPU 1",
		time.Duration(ee.P50Ns), time.Duration(ee.P90Ns), time.Duration(ee.MaxNs), ee.OnFirst, ee.N)
	e := attached(t)
	rep, bursts := rtStrandRun(t, cg)
	t.Logf("scx_slo: probe (5 ms of work per 40 ms, CPUs 1-2) beside a FIFO task spinning 30 ms per 40 ms on CPU 1: done after p50 %s p90 %s max %s; %d of %d periods ended on CPU 1; RT bursts %d",
		time.Duration(rep.P50Ns), time.Duration(rep.P90Ns), time.Duration(rep.MaxNs), rep.OnFirst, rep.N, bursts)
	writeResult(t, "topo_rt_strand", map[string]any{"cpus": n, "probe": rep, "eevdf": ee, "rt_bursts": bursts, "scheduler": exitRecord(e)})
	if rep.N < 10 {
		t.Fatalf("probe ran only %d periods", rep.N)
	}
	if rep.OnFirst > rep.N/6 {
		t.Errorf("%d of %d probe periods ended on CPU 1, want ≤ a sixth (EEVDF: %d of %d): it was left in CPU 1's local queue behind the RT task while CPU 2 was free",
			rep.OnFirst, rep.N, ee.OnFirst, ee.N)
	}
	if limit := 2*ee.P50Ns + int64(10*time.Millisecond); rep.P50Ns > limit {
		t.Errorf("probe finished 5 ms of work %s after its slot (median), want ≤ %s (twice EEVDF's %s plus 10 ms)",
			time.Duration(rep.P50Ns), time.Duration(limit), time.Duration(ee.P50Ns))
	}
}

// rtStrandRun runs the RT spinner on CPU 1 and the stall probe on CPUs
// 1-2 for 3 s; it returns the probe's report and the RT burst count.
func rtStrandRun(t *testing.T, cg *cgroup) (StallReport, int) {
	t.Helper()
	rt := start(t, "rtspin", cg, map[string]string{"RUN_FOR": "3500ms", "RT_PERIOD": "40ms", "RT_BURST": "30ms", "RT_OFFSET": "2ms", "RT_CPU": "1"})
	var rep StallReport
	if err := start(t, "stallprobe", cg, map[string]string{"RUN_FOR": "3s", "PROBE_PERIOD": "40ms", "PROBE_WORK": "5ms", "PROBE_CPUS": "1,2"}).wait(&rep); err != nil {
		t.Fatal(err)
	}
	var rr map[string]int
	if err := rt.wait(&rr); err != nil {
		t.Fatal(err)
	}
	return rep, rr["bursts"]
}

// TestGuestManyCgroups (issue 11, defect 6): 20,000 cgroups created
// while the scheduler runs all succeed. The old scheduler kept per-cgroup
// state in a hash of 16,384 entries and cgroup_init failed mkdir with
// ENOMEM once it was full; it is cgroup local storage now.
func TestGuestManyCgroups(t *testing.T) {
	inGuest(t)
	e := startEnforcer(t, Options{Logger: testLogger(t), MaxReattach: -1})
	defer e.Stop()
	const n = 20000
	var made []string
	// Removal runs with the scheduler detached (faster), and must finish
	// before the next test: a full cgroup table would fail its attach.
	removeAll := func() time.Duration {
		began := time.Now()
		for i := len(made) - 1; i >= 0; i-- {
			os.Remove(made[i])
		}
		made = nil
		return time.Since(began)
	}
	defer removeAll()
	began := time.Now()
	var failed error
	failedAt := -1
	for i := 0; i < n; i++ {
		p := filepath.Join("/sys/fs/cgroup", fmt.Sprintf("many%05d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			failed, failedAt = err, i
			break
		}
		made = append(made, p)
	}
	took := time.Since(began)
	created := len(made)
	rec := exitRecord(e)
	e.Stop()
	rmTook := removeAll()
	t.Logf("created %d of %d cgroups in %s (removed in %s, scheduler detached); first failure at %d: %v; scheduler %v",
		created, n, took, rmTook, failedAt, failed, rec)
	writeResult(t, "many_cgroups", map[string]any{"cpus": runtime.NumCPU(), "created": created, "failed_at": failedAt,
		"error": fmt.Sprint(failed), "mkdir_ns": took, "rmdir_ns": rmTook, "scheduler": rec})
	if failed != nil {
		t.Errorf("mkdir of cgroup %d of %d failed: %v; want all to succeed", failedAt+1, n, failed)
	}
	if rec["attached"] != true {
		t.Errorf("scheduler ejected while creating cgroups: %v", rec)
	}
}

// Overload test load: 20 spinners per CPU with 5 ms slices queue ~100 ms
// of SLO work per CPU against a 60 ms budget, so the queue says
// "overloaded" from the start while the first over-budget wait completes
// only ~60 ms later: wide enough for a poller on 8 emulated vCPUs, which
// gets one reading per ~25 ms.
const (
	overloadBudget = 60 * time.Millisecond
	overloadPerCPU = 20
)

// TestGuestTopoOverload (issue 11, defect 7): an SLO cgroup with 20
// spinning processes per CPU (all-SLO overload, waits miss its 60 ms
// budget) beside one best-effort hog pinned to each CPU.
//
//   - Best-effort progress per CPU: the old scheduler gave best-effort
//     work one slice per 40 ms for the whole machine, shared by all CPUs
//     (1.6% of each of 8). Bounds: the pinned hogs get ≥ 6% of their
//     CPUs on average (the design gives one 5 ms slice per 45 ms on each
//     CPU, 11%), and every one of them gets ≥ 0.5% of its CPU: none is
//     starved through the window. Not ≥ 6% on every CPU: under
//     single-threaded TCG a task is charged the time its vCPU sat
//     descheduled, so one share is a lottery over a few emulator stalls,
//     and the SLO cgroup, charged those stalls, is judged over its
//     reserve in bursts (over_reserve) that fill the domain's
//     best-effort queue with its tasks, older than the pinned hogs. In
//     CI one hog of eight got 0.012 with a 3.0 s gap while the others
//     got 0.18-0.46 (mean 0.24).
//   - Overload signal: today the bit is set only from completed waits, so
//     it can never be seen set while the cgroup has no miss recorded. A
//     poller reads the bit, then the miss count, every 100 us from the
//     moment the load starts; bound: at least one reading has the bit
//     set and no miss yet.
//
// While the load runs this test process is SCHED_FIFO (see realtime), so
// its polling and its measuring window are not starved by the overload.
func TestGuestTopoOverload(t *testing.T) {
	inGuest(t)
	n := needCPUs(t, 2)
	e := attached(t)
	slo, be := newCgroup(t, "allslo"), newCgroup(t, "allslobe")
	const slot = 7
	// Before the SLO: their start records no waits, so the poller below
	// sees the cgroup's first miss only after the load runs.
	load := startSpinners(t, slo, overloadPerCPU*n)
	m := sloFor(t, e, map[uint64]slomaps.Entry{slo.id: slomaps.NewEntry(uint64(overloadBudget), 0.99, 1000, slot)})
	ctl := newHogCtl(t)
	var pinned []*proc
	for c := 0; c < n; c++ {
		pinned = append(pinned, startOn(t, "gaphog", be, strconv.Itoa(c), ctl.params()))
	}
	ctl.waitReady(t, n)
	normal := realtime(t)
	sig := make(chan bitVsMiss, 1)
	go func() { sig <- pollBitVsMiss(m, slo.id, slot, 20*time.Second) }()
	load.run(t)
	bv := <-sig
	// The load runs: 60% of 8 CPUs in one reading (the whole machine's
	// 60% on the default 8 vCPUs). Not 80%: after every emulator stall
	// longer than be_bound the best-effort bound has passed, so the
	// pinned hogs take the first dispatch and are charged the next
	// stall: at host load 13 they got 0.17-0.47 of their CPUs, and at
	// load 18 the SLO cgroup never showed 6.4 of 8 in 30 s. Not 60% of
	// more than 8: single-threaded TCG runs busy vCPUs in turn (qemu
	// kicks the running one every 100 ms), so the stalls grow with n,
	// up to (n-1) x 100 ms, and so does what the pinned hogs are
	// charged: on 16 vCPUs they got 0.18-0.50 of their CPUs (mean 0.34)
	// and the SLO cgroup showed 2.5-9.1 CPUs (median 6.9) in 23
	// readings, never 9.6. 4.8 CPUs still says its spinners run on
	// most of them.
	waitBusy(t, slo, 0.6*float64(min(n, 8)))
	ctl.open(t)
	// The measuring window: long, so one emulator stall weighs less;
	// 5 s on 8 vCPUs, longer on more, so that each vCPU still gets as
	// many turns of the emulator ((n-1) x 100 ms apart) in it.
	time.Sleep(5 * time.Second * time.Duration(max(n, 8)) / 8)
	ctl.close(t)
	attachedThroughout := e.Attached()
	load.stop() // so the starved hogs get to see the close
	normal()
	var shares []float64
	minShare, meanShare := 1.0, 0.0
	for c, p := range pinned {
		r := waitGapHog(t, p)
		shares = append(shares, r.Share(t))
		minShare = min(minShare, r.Share(t))
		meanShare += r.Share(t) / float64(n)
		t.Logf("CPU %d: pinned best-effort hog used %.3f of it, max gap %s, window %s, %d chunks, %d voluntary and %d involuntary switches",
			c, r.Share(t), time.Duration(r.MaxGapNs), time.Duration(r.WindowNs), r.Chunks, r.Nvcsw, r.Nivcsw)
	}
	st, _ := e.Stats()
	t.Logf("overload bit: %s", bv)
	writeResult(t, "topo_overload", map[string]any{"cpus": n, "be_shares": shares, "min_share": minShare, "mean_share": meanShare,
		"signal": bv, "stats": st, "scheduler": exitRecord(e)})
	switch {
	case !attachedThroughout:
		t.Errorf("the scheduler was ejected during the overload (%+v): best-effort shares %v were measured under the fallback scheduler", e.LastExit(), shares)
	case meanShare < 0.06:
		// One 5 ms slice per 45 ms (11%) per CPU by design; the old
		// scheduler's one slice per 40 ms per machine is 1.6% of each CPU.
		t.Errorf("under all-SLO overload best-effort hogs pinned to %d CPUs got %.3f of them on average (%.3f), want ≥ 0.06", n, meanShare, shares)
	case minShare < 0.005:
		t.Errorf("under all-SLO overload a best-effort hog pinned to its CPU got %.3f of it (least of %d CPUs: %.3f), want ≥ 0.005: starved", minShare, n, shares)
	}
	if bv.Err != "" {
		t.Fatalf("polling the overload bit: %s", bv.Err)
	}
	// The poller may see bit and first miss in the same reading: under
	// single-threaded TCG with 8 vCPUs its readings come every few hundred
	// ms. The scheduler's own count says whether the bit was raised from
	// the queue (a waiting head past its budget) while still clear, i.e.
	// before the miss-rate estimate had judged the cgroup overloaded.
	if !bv.BitBeforeMiss && st["early_overload"] == 0 {
		t.Errorf("the overload bit was never set from the queue before misses were judged (early_overload 0; poller: %s)", bv)
	}
}

// waitBusy waits until cg uses at least cpus CPUs (over 200 ms or more:
// with n busy vCPUs under single-threaded TCG this process's vCPU may
// wait (n-1) x 100 ms for its turn, and readings on 16 vCPUs spanned
// 0.6-1.8 s). It waits 30 s on up to 8 vCPUs and proportionally longer
// on more, so that it gets about as many readings.
func waitBusy(t *testing.T, cg *cgroup, cpus float64) {
	t.Helper()
	within := 30 * time.Second * time.Duration(max(runtime.NumCPU(), 8)) / 8
	var seen []string // CPUs/span of each reading, logged if it times out
	defer func() {
		if t.Failed() {
			t.Logf("%s used (CPUs/over): %s", cg.path, strings.Join(seen, " "))
		}
	}()
	waitFor(t, fmt.Sprintf("%s to use %.1f CPUs", cg.path, cpus), within, func() bool {
		u0, t0 := usageUsec(t, cg), time.Now()
		time.Sleep(200 * time.Millisecond)
		sh := cpuShare(t, usageUsec(t, cg)-u0, time.Since(t0))
		seen = append(seen, fmt.Sprintf("%.2f/%s", sh, time.Since(t0).Round(time.Millisecond)))
		return sh >= cpus
	})
}

// bitVsMiss is what the overload poller saw.
type bitVsMiss struct {
	BitBeforeMiss bool   `json:"bit_before_miss"` // a reading with the bit set and no miss recorded
	BitAfterNs    int64  `json:"bit_after_ns"`    // first reading with the bit set, -1 if none
	MissAfterNs   int64  `json:"miss_after_ns"`   // first reading with a miss, -1 if none
	MissesAtBit   uint64 `json:"misses_at_bit"`
	Polls         int    `json:"polls"`
	Err           string `json:"err,omitempty"`
}

func (b bitVsMiss) String() string {
	return fmt.Sprintf("bit first seen after %s with %d misses recorded, first miss seen after %s, %d polls",
		time.Duration(b.BitAfterNs), b.MissesAtBit, time.Duration(b.MissAfterNs), b.Polls)
}

// pollBitVsMiss polls, as a SCHED_FIFO thread, the overload bit and then
// the cgroup's miss count until both have been seen or within passes.
func pollBitVsMiss(m slomaps.Maps, id uint64, slot uint32, within time.Duration) (b bitVsMiss) {
	runtime.LockOSThread() // the thread exits with the goroutine: its policy goes with it
	b.BitAfterNs, b.MissAfterNs = -1, -1
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 40}, 0); err != nil {
		b.Err = "SCHED_FIFO: " + err.Error()
		return b
	}
	began := workload.MonotonicNs()
	for workload.MonotonicNs()-began < int64(within) && (b.BitAfterNs < 0 || b.MissAfterNs < 0) {
		b.Polls++
		on, err := m.Overloaded(slot)
		if err != nil {
			b.Err = err.Error()
			return b
		}
		st, _, err := m.StatsOf(id)
		if err != nil {
			b.Err = err.Error()
			return b
		}
		misses := st.Misses
		now := workload.MonotonicNs() - began
		if on && b.BitAfterNs < 0 {
			b.BitAfterNs, b.MissesAtBit = now, misses
			b.BitBeforeMiss = misses == 0
		}
		if misses > 0 && b.MissAfterNs < 0 {
			b.MissAfterNs = now
		}
		rawSleep(100 * time.Microsecond)
	}
	return b
}

// realtime makes every thread of this test process SCHED_FIFO with
// reset-on-fork: under an all-SLO overload its polling and timing are not
// starved (nor slowed by runtime threads that are), while the processes
// and threads it starts stay ordinary. The returned func (also run at
// cleanup) makes them SCHED_OTHER again.
func realtime(t *testing.T) (normal func()) {
	t.Helper()
	set := func(attr unix.SchedAttr) error {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		attr.Size = unix.SizeofSchedAttr
		for _, d := range tasks {
			tid, _ := strconv.Atoi(d.Name())
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && err != unix.ESRCH {
				return fmt.Errorf("thread %d: %w", tid, err)
			}
		}
		return nil
	}
	if err := set(unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 20, Flags: unix.SCHED_FLAG_RESET_ON_FORK}); err != nil {
		t.Fatalf("making the test process SCHED_FIFO: %v", err)
	}
	normal = func() {
		if err := set(unix.SchedAttr{Policy: unix.SCHED_NORMAL}); err != nil {
			t.Errorf("making the test process SCHED_OTHER again: %v", err)
		}
	}
	t.Cleanup(normal)
	return normal
}

// rawSleep sleeps without telling the Go scheduler (no entersyscall):
// a normal syscall may hand this thread's P away, and getting one back
// needs the runtime's other threads, which the overload starves.
func rawSleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// spinners are busybox shell loops (cheap to start, one thread each,
// unlike a Go process).
type spinners struct {
	cmds []*exec.Cmd
}

// startSpinners starts n spinners in cg, each stopped (it sends itself
// SIGSTOP) before its loop, and waits until all are; run sets them
// spinning at once. Started one by one while the earlier ones already
// spin, each fork and exec would wait behind them: on 16 emulated vCPUs
// starting 320 took over 6 minutes. stop, also run at cleanup, kills them.
func startSpinners(t *testing.T, cg *cgroup, n int) *spinners {
	t.Helper()
	s := &spinners{}
	t.Cleanup(s.stop)
	for i := 0; i < n; i++ {
		cmd := exec.Command("sh", "-c", "kill -STOP $$; while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg.fd}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting a spinner in %s: %v", cg.path, err)
		}
		s.cmds = append(s.cmds, cmd)
	}
	waitFor(t, fmt.Sprintf("%d spinners in %s to stop before their loop", n, cg.path), time.Minute, func() bool {
		for _, c := range s.cmds {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
			// The state follows the command, which is in parentheses.
			if i := strings.LastIndexByte(string(b), ')'); err != nil || i < 0 || !strings.HasPrefix(string(b[i:]), ") T") {
				return false
			}
		}
		return true
	})
	return s
}

// run sets every spinner spinning.
func (s *spinners) run(t *testing.T) {
	t.Helper()
	for _, c := range s.cmds {
		if err := c.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatalf("SIGCONT to spinner %d: %v", c.Process.Pid, err)
		}
	}
}

// stop kills them all before it waits for any: each has to run to die,
// and one at a time under an overload on 16 vCPUs took minutes.
func (s *spinners) stop() {
	for _, c := range s.cmds {
		c.Process.Kill()
	}
	for _, c := range s.cmds {
		c.Wait()
	}
	s.cmds = nil
}

// TestGuestTopoSysRq (issue 11, defect 9): SysRq-S, the operator's
// emergency "back to the default scheduler", disables the scheduler
// (exit kind sysrq). The enforcer's re-attach policy is fixed
// separately; this test asserts the kernel side and records what the
// enforcer did within 3 s (today it re-attaches after its backoff).
func TestGuestTopoSysRq(t *testing.T) {
	inGuest(t)
	e := startEnforcer(t, Options{Logger: testLogger(t), Backoff: time.Second, Poll: 50 * time.Millisecond})
	defer e.Stop()
	waitState(t, "enabled", 5*time.Second)
	seq := enableSeq(t)
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("S"), 0o200); err != nil {
		t.Fatalf("SysRq-S: %v", err)
	}
	waitState(t, "disabled", 900*time.Millisecond) // before the enforcer's 1 s backoff
	waitFor(t, "the enforcer to record the exit", 2*time.Second, func() bool { return e.LastExit().Kind != "" })
	ex := e.LastExit()
	time.Sleep(3 * time.Second) // the enforcer's backoff and then some
	reattached, seqAfter := e.Attached(), enableSeq(t)
	t.Logf("SysRq-S: exit kind %q (%s); 3 s later the enforcer has attached=%v, enable_seq %d -> %d, attach attempts ok=%v",
		ex.Kind, ex.Reason, reattached, seq, seqAfter, counterValue(e.metrics.attempts.WithLabelValues("ok")))
	writeResult(t, "topo_sysrq", map[string]any{"exit_kind": ex.Kind, "exit_reason": ex.Reason, "enforcer_reattached": reattached, "enable_seq": []uint64{seq, seqAfter}})
	if ex.Kind != "sysrq" {
		t.Errorf("exit kind after SysRq-S %q, want sysrq", ex.Kind)
	}
	if strings.TrimSpace(ex.Reason) == "" {
		t.Error("no exit reason recorded")
	}
	if reattached || seqAfter != seq {
		t.Errorf("after SysRq-S the enforcer re-attached (attached=%v, enable_seq %d -> %d), want it to stay detached", reattached, seq, seqAfter)
	}
	// A restarted exporter must not attach either, until `scx-slo detach`.
	e.Stop()
	again, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Start(t.Context()); !errors.Is(err, ErrDetachedForGood) {
		again.Stop()
		t.Errorf("a new enforcer after SysRq-S: Start = %v, want ErrDetachedForGood", err)
	}
	if err := Detach(""); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if kind, ok := detachedMark(DefaultPinDir); ok {
		t.Errorf("Detach left the detached-for-good mark (%s)", kind)
	}
}

// TestGuestTopoLLCs: the topology boot really has two last-level caches
// (qemu reports an L3 per socket), so per-LLC code paths are exercised.
func TestGuestTopoLLCs(t *testing.T) {
	inGuest(t)
	n := needCPUs(t, 8)
	domains := map[string]bool{}
	for c := 0; c < n; c++ {
		dirs, _ := filepath.Glob(fmt.Sprintf("/sys/devices/system/cpu/cpu%d/cache/index*", c))
		best, shared := 0, ""
		for _, d := range dirs {
			lv, _ := os.ReadFile(filepath.Join(d, "level"))
			l, _ := strconv.Atoi(strings.TrimSpace(string(lv)))
			if l > best {
				s, _ := os.ReadFile(filepath.Join(d, "shared_cpu_list"))
				best, shared = l, strings.TrimSpace(string(s))
			}
		}
		domains[shared] = true
	}
	t.Logf("%d CPUs, last-level cache domains %v", n, domains)
	if len(domains) < 2 {
		t.Errorf("last-level cache domains %v, want at least 2 in the topology boot", domains)
	}
}
