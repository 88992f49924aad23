package labbench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WakeBreakdown splits the probe's wakeups (issue 11, "The 1 ms probe")
// from the kernel's tracepoints: sched_waking (on the waking CPU, when
// the timer fires), sched_wakeup (the task is on its run queue: after
// the IPI when the target CPU is another one) and the switch to it.
type WakeBreakdown struct {
	N           int     `json:"n"`
	WakingP50Ns int64   `json:"waking_to_wakeup_p50_ns"`
	WakingP90Ns int64   `json:"waking_to_wakeup_p90_ns"`
	WakingP99Ns int64   `json:"waking_to_wakeup_p99_ns"`
	RunP50Ns    int64   `json:"wakeup_to_run_p50_ns"`
	RunP90Ns    int64   `json:"wakeup_to_run_p90_ns"`
	RunP99Ns    int64   `json:"wakeup_to_run_p99_ns"`
	Remote      float64 `json:"remote"`              // fraction woken onto another CPU than the waking one
	RemoteP90Ns int64   `json:"remote_total_p90_ns"` // waking to run, remote wakeups
	LocalP90Ns  int64   `json:"local_total_p90_ns"`  // waking to run, local wakeups
	Lost        bool    `json:"lost,omitempty"`      // the trace buffer overran
}

const tracefs = "/sys/kernel/tracing"

// wakeTrace records every sched_waking, sched_wakeup and sched_switch
// event in the ftrace buffer; stop keeps those of the threads given.
type wakeTrace struct{}

func traceWrite(file, v string) error {
	return os.WriteFile(filepath.Join(tracefs, file), []byte(v), 0o644)
}

func startWakeTrace() (*wakeTrace, error) {
	err := errors.Join(traceWrite("tracing_on", "0"), traceWrite("trace", ""), traceWrite("buffer_size_kb", "8192"),
		traceWrite("events/sched/sched_waking/enable", "1"), traceWrite("events/sched/sched_wakeup/enable", "1"),
		traceWrite("events/sched/sched_switch/enable", "1"), traceWrite("tracing_on", "1"))
	if err != nil {
		return nil, fmt.Errorf("tracefs: %w", err)
	}
	return &wakeTrace{}, nil
}

// runTracingThreads runs cmd and collects the thread ids of its process
// while it runs (every 20 ms: a Go process starts its threads in its
// first milliseconds, the probe's sleeping one before its first sleep).
func runTracingThreads(cmd *exec.Cmd) (out []byte, tids map[string]bool, err error) {
	var buf strings.Builder
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tids = map[string]bool{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", cmd.Process.Pid))
		for _, t := range tasks {
			tids[t.Name()] = true
		}
		select {
		case err := <-done:
			return []byte(buf.String()), tids, err
		case <-tick.C:
		}
	}
}

// traceLine: "<task>-<pid> [cpu] flags secs.usecs: event: fields".
var traceLine = regexp.MustCompile(`\[(\d+)\]\s+\S+\s+(\d+)\.(\d+): (sched_\w+): (.*)$`)

func field(fields, name string) string {
	for _, f := range strings.Fields(fields) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

// stop ends tracing and pairs, per thread, each waking with the next
// wakeup and the switch-in after it; it reports the thread that woke
// most often (the probe's).
func (w *wakeTrace) stop(tids map[string]bool) (*WakeBreakdown, error) {
	defer func() {
		for _, e := range []string{"sched_waking", "sched_wakeup", "sched_switch"} {
			traceWrite("events/sched/"+e+"/enable", "0")
		}
		traceWrite("trace", "")
	}()
	if err := traceWrite("tracing_on", "0"); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(tracefs, "trace"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	type pending struct {
		wakingAt, wakeupAt int64
		wakingCPU          int
		remote             bool
	}
	type series struct {
		waking, run, remoteTot, localTot []int64
	}
	open := map[string]*pending{}
	byTid := map[string]*series{}
	out := &WakeBreakdown{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "LOST") {
			out.Lost = true
		}
		m := traceLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		cpu, _ := strconv.Atoi(m[1])
		secs, _ := strconv.ParseInt(m[2], 10, 64)
		frac, _ := strconv.ParseInt((m[3] + "000000000")[:9], 10, 64)
		at := secs*1e9 + frac
		switch m[4] {
		case "sched_waking":
			if !tids[field(m[5], "pid")] {
				continue
			}
			target, _ := strconv.Atoi(field(m[5], "target_cpu"))
			open[field(m[5], "pid")] = &pending{wakingAt: at, wakingCPU: cpu, remote: target != cpu}
		case "sched_wakeup":
			if p := open[field(m[5], "pid")]; p != nil && p.wakeupAt == 0 {
				p.wakeupAt = at
			}
		case "sched_switch":
			pid := m[5][strings.Index(m[5], "==>"):]
			p := open[field(pid, "next_pid")]
			if p == nil || p.wakeupAt == 0 {
				continue
			}
			tid := field(pid, "next_pid")
			delete(open, tid)
			sr := byTid[tid]
			if sr == nil {
				sr = &series{}
				byTid[tid] = sr
			}
			sr.waking = append(sr.waking, p.wakeupAt-p.wakingAt)
			sr.run = append(sr.run, at-p.wakeupAt)
			if p.remote {
				sr.remoteTot = append(sr.remoteTot, at-p.wakingAt)
			} else {
				sr.localTot = append(sr.localTot, at-p.wakingAt)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	// The probe's own thread wakes every period; the Go runtime's other
	// threads far less often.
	var sr series
	for _, v := range byTid {
		if len(v.waking) > len(sr.waking) {
			sr = *v
		}
	}
	waking, run, remoteTot, localTot := sr.waking, sr.run, sr.remoteTot, sr.localTot
	out.N = len(waking)
	if out.N == 0 {
		return out, fmt.Errorf("no complete wakeup in the trace")
	}
	out.WakingP50Ns, out.WakingP90Ns, out.WakingP99Ns = percentile(waking, 50), percentile(waking, 90), percentile(waking, 99)
	out.RunP50Ns, out.RunP90Ns, out.RunP99Ns = percentile(run, 50), percentile(run, 90), percentile(run, 99)
	out.Remote = float64(len(remoteTot)) / float64(out.N)
	out.RemoteP90Ns, out.LocalP90Ns = percentile(remoteTot, 90), percentile(localTot, 90)
	return out, nil
}

// percentile is the p-th percentile of v (0 when empty).
func percentile(v []int64, p int) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
