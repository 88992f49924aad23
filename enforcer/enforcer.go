package enforcer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/scx-slo/scx-slo/bpf/scheduler"
	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// DefaultPinDir is where the scheduler is pinned unless Options say otherwise.
const DefaultPinDir = "/sys/fs/bpf/scx-slo"

// Options configure an Enforcer. The zero value is usable.
type Options struct {
	PinDir  string // default DefaultPinDir
	Partial bool   // SCX_OPS_SWITCH_PARTIAL: only SCHED_EXT-policy tasks
	// KeepPinned pins the link and maps so the scheduler outlives this
	// process (SIGTERM, SIGKILL, upgrade); the next Start re-adopts it.
	// Without it nothing is pinned and the scheduler goes with us.
	KeepPinned bool
	// MaxReattach bounds consecutive re-attach attempts after the kernel
	// ejects the scheduler; 0 means the default (5), negative means never.
	MaxReattach int
	// Backoff is the first re-attach delay, doubled per failure (default 1 s).
	Backoff time.Duration
	// Poll is how often the kernel's sched_ext state is checked (default 200 ms).
	Poll time.Duration
	// SchedExtDir is /sys/kernel/sched_ext unless a test says otherwise.
	SchedExtDir string
	// OnChange is the one notification of who judges deadlines: it runs
	// after every successful attach or adoption (attached true, with the
	// scheduler's maps, e.g. to fill their slos map at once) and after
	// every detach, ejection or guard trip (attached false, zero Maps). It
	// runs on the goroutine that saw the change, outside the enforcer's
	// lock; keep it short.
	OnChange func(m slomaps.Maps, attached bool)
	// Shared, if its SLOs and Overload are set (e.g. the observe-mode
	// tracer's maps), makes the scheduler use those two maps instead of
	// its own: one slos map to keep in sync, and one overload array whose
	// pinned mmap stays valid for readers whichever side judges
	// deadlines. cgroup_stats is never shared (both would count every
	// wait). Not applied when re-adopting a pinned scheduler, which keeps
	// the maps it was loaded with.
	Shared slomaps.Maps
	// Guard, if set, measures SLO attainment in observe mode before the
	// first attach and detaches the scheduler for good when attainment
	// falls below that baseline for a sustained window.
	Guard  *Guard
	Logger log.Logger
}

// Enforcer keeps the scx-slo scheduler attached.
type Enforcer struct {
	opts    Options
	spec    *ebpf.CollectionSpec
	metrics *metrics

	restart restartPolicy // touched by the watcher goroutine only

	mu       sync.Mutex
	cur      *instance // nil while not attached
	lastExit ExitInfo  // recorded at the last ejection

	// baseline is the observe-mode attainment the guard holds the
	// scheduler to; set by Start before the watcher runs.
	baseline   float64
	guardArmed bool

	cancel context.CancelFunc
	done   chan struct{}
}

// New checks the options and reads the scheduler object; nothing is
// loaded until Start.
func New(opts Options) (*Enforcer, error) {
	if opts.PinDir == "" {
		opts.PinDir = DefaultPinDir
	}
	if !filepath.IsAbs(opts.PinDir) {
		return nil, fmt.Errorf("enforcer: PinDir %q must be an absolute path", opts.PinDir)
	}
	if opts.MaxReattach == 0 {
		opts.MaxReattach = 5
	}
	if opts.Backoff < 0 {
		return nil, fmt.Errorf("enforcer: Backoff %s must not be negative", opts.Backoff)
	}
	if opts.Backoff == 0 {
		opts.Backoff = time.Second
	}
	if opts.Poll < 0 {
		return nil, fmt.Errorf("enforcer: Poll %s must not be negative", opts.Poll)
	}
	if opts.Poll == 0 {
		opts.Poll = 200 * time.Millisecond
	}
	if opts.SchedExtDir == "" {
		opts.SchedExtDir = "/sys/kernel/sched_ext"
	}
	if opts.Logger == nil {
		opts.Logger = log.NewNopLogger()
	}
	if opts.Guard != nil {
		g := *opts.Guard
		if err := g.validate(); err != nil {
			return nil, err
		}
		opts.Guard = &g
	}
	spec, err := loadSpec(opts.Partial)
	if err != nil {
		return nil, err
	}
	return &Enforcer{opts: opts, spec: spec, metrics: newMetrics()}, nil
}

// Start re-adopts a pinned scheduler that is still enabled, or measures
// the guard's observe-mode baseline (Guard.BaselineFor, if a Guard is
// set) and then attaches; afterwards it keeps watching the scheduler
// until Stop or ctx ends. It returns the first attach's error (ctx's if it
// ends during the baseline); the exporter then keeps observing.
func (e *Enforcer) Start(ctx context.Context) error {
	if e.done != nil {
		return errors.New("enforcer: already started")
	}
	if kind, ok := detachedMark(e.opts.PinDir); ok {
		return fmt.Errorf("%w (exit kind %s; mark in %s): not attaching; `scx-slo detach` clears the mark", ErrDetachedForGood, kind, filepath.Join(e.opts.PinDir, pinDetached))
	}
	if !e.adoptPinned() {
		if g := e.opts.Guard; g != nil {
			level.Info(e.opts.Logger).Log("msg", "measuring observe-mode SLO attainment before attaching", "for", g.BaselineFor)
			att, ok, err := g.measureBaseline(ctx)
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				level.Warn(e.opts.Logger).Log("msg", "no observe-mode baseline; the attainment guard is off", "err", err)
			case ok:
				level.Info(e.opts.Logger).Log("msg", "observe-mode baseline", "attainment", att)
				e.baseline, e.guardArmed = att, true
			default:
				level.Info(e.opts.Logger).Log("msg", "too few judged wakeups for a baseline; the attainment guard is off", "min", g.MinJudged)
			}
		}
		if err := e.attach(); err != nil {
			return err
		}
	} else if e.opts.Guard != nil {
		level.Info(e.opts.Logger).Log("msg", "re-adopted scheduler: no observe-mode baseline to hold it to; the attainment guard is off")
	}
	ctx, e.cancel = context.WithCancel(ctx)
	e.done = make(chan struct{})
	go e.watch(ctx)
	return nil
}

// Run is Start, then blocks until ctx ends and stops.
func (e *Enforcer) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	e.Stop()
	return nil
}

// Stop ends the watcher and detaches, unless KeepPinned (then the
// scheduler stays attached through its pins).
func (e *Enforcer) Stop() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
	}
	// No OnChange: the owner is the one stopping us, and with KeepPinned
	// the scheduler is still attached, only no longer ours.
	e.mu.Lock()
	cur := e.cur
	e.cur = nil
	e.mu.Unlock()
	if cur == nil {
		return
	}
	cur.close()
	if e.opts.KeepPinned {
		level.Info(e.opts.Logger).Log("msg", "leaving the scheduler attached (pinned)", "pin_dir", e.opts.PinDir)
		return
	}
	if err := unpin(e.opts.PinDir); err != nil {
		level.Warn(e.opts.Logger).Log("msg", "removing pins", "err", err)
	}
	level.Info(e.opts.Logger).Log("msg", "scheduler detached")
}

// Attached reports whether the scheduler is attached right now.
func (e *Enforcer) Attached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cur != nil
}

// Maps returns the shared slo maps of the attached scheduler.
func (e *Enforcer) Maps() (slomaps.Maps, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == nil {
		return slomaps.Maps{}, false
	}
	return e.cur.slomaps(), true
}

// Stats returns the scheduler's event counters summed over CPUs.
func (e *Enforcer) Stats() (map[string]uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == nil {
		return nil, errors.New("enforcer: not attached")
	}
	out := make(map[string]uint64, len(scheduler.StatNames))
	for i, name := range scheduler.StatNames {
		var per []uint64
		if err := e.cur.maps.Stats.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("reading stat %s: %w", name, err)
		}
		for _, v := range per {
			out[name] += v
		}
	}
	return out, nil
}

// LastExit returns what ops.exit recorded at the last ejection (zero
// value if the kernel never ejected the scheduler).
func (e *Enforcer) LastExit() ExitInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastExit
}

// adoptPinned takes over a pinned scheduler that is still enabled and
// reports whether it did; unusable pins are removed, and a scheduler they
// kept alive is given time to go before we attach.
func (e *Enforcer) adoptPinned() bool {
	in, err := adopt(e.opts.PinDir)
	switch {
	case err == nil:
		if e.enabled(in) {
			level.Info(e.opts.Logger).Log("msg", "re-adopted the pinned scheduler", "pin_dir", e.opts.PinDir)
			e.setCurrent(in)
			return true
		}
		level.Warn(e.opts.Logger).Log("msg", "pinned scheduler is no longer enabled; replacing it", "pin_dir", e.opts.PinDir)
		in.close()
		unpin(e.opts.PinDir)
	case errors.Is(err, os.ErrNotExist):
		// No link pinned; maps pinned by a process killed before it pinned
		// the link would make our own pinning fail.
		unpin(e.opts.PinDir)
	default:
		level.Warn(e.opts.Logger).Log("msg", "ignoring unusable pins", "pin_dir", e.opts.PinDir, "err", err)
		unpin(e.opts.PinDir)
	}
	e.waitSchedExtIdle()
	return false
}

// schedExtSettle bounds how long attaching waits for a scheduler that is
// going away (its last link reference just dropped) to be gone.
const schedExtSettle = 5 * time.Second

// waitSchedExtIdle waits, boundedly, while sched_ext is disabling or still
// runs a scheduler of ours nobody holds any more; attaching then would
// fail with EBUSY.
func (e *Enforcer) waitSchedExtIdle() {
	deadline := time.Now().Add(schedExtSettle)
	for time.Now().Before(deadline) {
		state := readTrim(filepath.Join(e.opts.SchedExtDir, "state"))
		ops := readTrim(filepath.Join(e.opts.SchedExtDir, "root", "ops"))
		if state != "disabling" && !(state == "enabled" && ops == scheduler.OpsName) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *Enforcer) attach() error {
	in, err := attach(e.spec, e.opts.Shared)
	if err != nil {
		e.metrics.attempts.WithLabelValues("error").Inc()
		if ops := readTrim(filepath.Join(e.opts.SchedExtDir, "root", "ops")); ops != "" && ops != scheduler.OpsName {
			return fmt.Errorf("another sched_ext scheduler (%q) is loaded: %w", ops, err)
		}
		return err
	}
	if e.opts.KeepPinned {
		if err := in.pin(e.opts.PinDir); err != nil {
			in.close()
			unpin(e.opts.PinDir)
			e.metrics.attempts.WithLabelValues("error").Inc()
			return err
		}
	}
	e.metrics.attempts.WithLabelValues("ok").Inc()
	level.Info(e.opts.Logger).Log("msg", "scheduler attached", "partial", e.opts.Partial, "pinned", e.opts.KeepPinned)
	e.setCurrent(in)
	return nil
}

// setCurrent makes in (nil: none) the attached instance, returns the one
// it replaces and tells OnChange when attachment changed.
func (e *Enforcer) setCurrent(in *instance) (prev *instance) {
	e.mu.Lock()
	prev, e.cur = e.cur, in
	e.mu.Unlock()
	if e.opts.OnChange == nil || (prev == nil && in == nil) {
		return prev
	}
	if in != nil {
		e.opts.OnChange(in.slomaps(), true)
	} else {
		e.opts.OnChange(slomaps.Maps{}, false)
	}
	return prev
}

// enabled: the kernel runs a scheduler named like ours and ours has not
// recorded an exit.
func (e *Enforcer) enabled(in *instance) bool {
	state := readTrim(filepath.Join(e.opts.SchedExtDir, "state"))
	ops := readTrim(filepath.Join(e.opts.SchedExtDir, "root", "ops"))
	if state != "enabled" || ops != scheduler.OpsName {
		return false
	}
	info, err := readExit(in.maps.Exit)
	return err == nil && info.Count == 0
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// stableAfter is how long a scheduler must stay up to reset the backoff.
const stableAfter = time.Minute

func (e *Enforcer) watch(ctx context.Context) {
	defer close(e.done)
	tick := time.NewTicker(e.opts.Poll)
	defer tick.Stop()
	failures := 0
	since := time.Now()
	var retryAt time.Time
	var guardC <-chan time.Time
	if e.guardArmed {
		gt := time.NewTicker(e.opts.Guard.Window)
		defer gt.Stop()
		guardC = gt.C
	}
	var gs guardState
	stayDetached := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-guardC:
			if !stayDetached && e.checkGuard(&gs) {
				stayDetached = true
			}
			continue
		case <-tick.C:
		}
		if stayDetached {
			continue // the guard detached us for good
		}
		e.mu.Lock()
		cur := e.cur
		e.mu.Unlock()
		if cur != nil {
			if e.enabled(cur) {
				if failures > 0 && time.Since(since) > stableAfter {
					failures = 0
				}
				continue
			}
			// ops.exit runs at the end of disabling: wait for it.
			if readTrim(filepath.Join(e.opts.SchedExtDir, "state")) == "disabling" {
				continue
			}
			if !e.ejected(cur) {
				stayDetached = true // detached on purpose from outside: respect it
				continue
			}
			retryAt = time.Now().Add(e.opts.Backoff << min(failures, 10))
			failures++
			continue
		}
		if e.opts.MaxReattach < 0 || failures > e.opts.MaxReattach || time.Now().Before(retryAt) {
			continue
		}
		if err := e.attach(); err != nil {
			level.Error(e.opts.Logger).Log("msg", "re-attaching the scheduler", "attempt", failures, "err", err)
			retryAt = time.Now().Add(e.opts.Backoff << min(failures, 10))
			failures++
			if failures > e.opts.MaxReattach {
				level.Error(e.opts.Logger).Log("msg", "giving up re-attaching; observing only", "attempts", failures)
			}
			continue
		}
		since = time.Now()
	}
}

// ejected records why the kernel disabled the scheduler and lets it go.
// It returns whether to re-attach (see restartPolicy); when the policy
// gives up for good it leaves a mark in the pin directory.
func (e *Enforcer) ejected(in *instance) (reattach bool) {
	info, err := readExit(in.maps.Exit)
	if err != nil || info.Count == 0 {
		info = ExitInfo{Kind: "unreg", Reason: "scheduler no longer enabled and no exit record"}
	}
	reattach, forGood, why := e.restart.decide(info, time.Now())
	e.mu.Lock()
	e.lastExit = info
	e.mu.Unlock()
	e.setCurrent(nil)
	e.metrics.exits.WithLabelValues(info.Kind).Inc()
	in.close()
	unpin(e.opts.PinDir)
	switch {
	case reattach:
		level.Error(e.opts.Logger).Log("msg", "the kernel disabled the scheduler", "kind", info.Kind, "code", info.Code, "reason", info.Reason, "message", info.Msg, "decision", why)
	case forGood:
		if err := markDetached(e.opts.PinDir, info.Kind); err != nil {
			level.Warn(e.opts.Logger).Log("msg", "could not persist the detach; a restarted exporter may attach again", "err", err)
		}
		level.Error(e.opts.Logger).Log("msg", "the scheduler is detached for good on this boot; observing only (scx-slo detach clears this)", "kind", info.Kind, "reason", info.Reason, "message", info.Msg, "why", why)
	default:
		level.Warn(e.opts.Logger).Log("msg", "the scheduler was detached from outside; staying detached, observing only", "kind", info.Kind, "reason", info.Reason, "why", why)
	}
	return reattach
}

// setErrorKnob sets the scheduler's test-only knob: a non-zero value makes
// the next tick call scx_bpf_error (for the error-path test).
func (e *Enforcer) setErrorKnob(v uint32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == nil {
		return errors.New("enforcer: not attached")
	}
	return e.cur.maps.Knob.Update(uint32(0), v, ebpf.UpdateAny)
}

// checkGuard closes one guard window; it detaches and returns true when
// the guard trips.
func (e *Enforcer) checkGuard(gs *guardState) bool {
	g := e.opts.Guard
	e.mu.Lock()
	cur := e.cur
	e.mu.Unlock()
	if cur == nil {
		*gs = guardState{}
		return false
	}
	baseline := e.baseline
	judged, missed, err := sloTotals(cur.slomaps())
	if err != nil {
		level.Warn(e.opts.Logger).Log("msg", "attainment guard: reading SLO stats", "err", err)
		return false
	}
	trip, att, counted := gs.observe(g, judged, missed, baseline)
	if counted {
		level.Debug(e.opts.Logger).Log("msg", "attainment guard window", "attainment", att, "baseline", baseline, "bad_windows", gs.bad)
	}
	if !trip {
		return false
	}
	level.Warn(e.opts.Logger).Log("msg", "SLO attainment with the scheduler is below the observe-mode baseline; detaching for good",
		"attainment", att, "baseline", baseline, "margin", g.Margin, "windows", gs.bad, "window", g.Window)
	e.metrics.guard.Inc()
	e.setCurrent(nil)
	cur.close()
	unpin(e.opts.PinDir)
	return true
}
