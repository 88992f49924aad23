package labbench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// FidelityAccel is the accelerator of the fidelity mode: multi-threaded
// TCG, one host thread per vCPU, so an interrupt sent to another vCPU
// does not wait for the emulator to switch vCPUs.
const FidelityAccel = "tcg,thread=multi"

// PlanCell is one cell the guest is told to run (Config.Plan).
type PlanCell struct {
	Rep       int    `json:"rep"`
	Workload  string `json:"workload"`
	Load      int    `json:"load"`
	Scheduler string `json:"scheduler"`
}

// textPatchOops is how the guest's console shows the known
// multi-threaded TCG failure: a vCPU runs stale translated code holding
// the int3 the kernel placed while patching its text, after the patch
// is done, and the kernel dies on the unclaimed breakpoint: "Oops: int3:
// 0000 [#1] ..." (before 6.10 without "Oops: ").
const textPatchOops = "int3: 0000 [#"

// FidelityRetries is how many times a cell's boot is retried after
// dying with the text-patching oops.
const FidelityRetries = 3

// RunFidelity runs the matrix of o.Config (plan order) with each cell
// in its own boot, retrying a boot that died with the text-patching oops
// before its cell was done up to FidelityRetries times; Cell.Boots records the boots a cell took.
// The caller sets the accelerator (FidelityAccel through
// SCX_SLO_LAB_ACCEL). Ping-pong pairs are not run. A cell that fails
// otherwise keeps its error and the run goes on.
func RunFidelity(ctx context.Context, o RunOptions) (*Results, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Config.Mode != "" {
		return nil, fmt.Errorf("labbench: Mode = %q: the fidelity mode runs the load matrix only", o.Config.Mode)
	}
	all := &Results{Config: o.Config, Fidelity: true}
	for i, spec := range plan(o.Config) {
		if err := ctx.Err(); err != nil {
			return all, err
		}
		cfg := o.Config
		cfg.PipeReps, cfg.Plan = 0, []PlanCell{{spec.rep, spec.workload, spec.load, spec.sched}}
		for boot := 1; ; boot++ {
			one := o
			one.Config, one.Timeout = cfg, fidelityCellTime(cfg)
			oops := &oopsWatch{out: o.Console}
			one.Console = oops
			r, err := Run(ctx, one)
			if r != nil && all.Host == nil {
				// The first boot's: the run's date and the host's load at its start.
				all.Kernel, all.VCPUs, all.Host, all.Peers = r.Kernel, r.VCPUs, r.Host, r.Peers
			}
			c, again := judgeBoot(r, err, oops.seen(), boot, spec)
			if again {
				fmt.Fprintf(console(o.Console), "labbench: fidelity cell %d: boot %d died with the text-patching oops; booting again\n", i, boot)
				continue
			}
			c.Index, c.Boots = i, boot
			all.Cells = append(all.Cells, c)
			break
		}
	}
	return all, nil
}

// judgeBoot turns one fidelity boot into its cell, or says to boot
// again: only when the text-patching oops killed the guest before it
// echoed the cell, and retries are left.
func judgeBoot(r *Results, err error, oops bool, boot int, spec cellSpec) (c Cell, again bool) {
	switch {
	case r != nil && len(r.Cells) == 1:
		// The cell was echoed whole: an oops after it (at power-off)
		// does not touch its figures.
		c = r.Cells[0]
		if err != nil && c.Err == "" && !oops {
			c.Err = err.Error()
		}
		return c, false
	case err != nil && oops && boot <= FidelityRetries:
		return Cell{}, true
	}
	c = Cell{Rep: spec.rep, Workload: spec.workload, Load: spec.load, Scheduler: spec.sched}
	switch {
	case oops:
		c.Err = fmt.Sprintf("%d boots died with the text-patching oops: %v", boot, err)
	case err != nil:
		c.Err = err.Error()
	case r == nil:
		c.Err = "the guest returned no results"
	default:
		c.Err = fmt.Sprintf("the guest returned %d cells, want 1", len(r.Cells))
	}
	return c, false
}

func console(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// oopsWatch passes the console through and notes the text-patching oops.
type oopsWatch struct {
	out  io.Writer
	mu   sync.Mutex
	tail string // the end of what came so far, for a marker split across writes
	hit  bool
}

func (o *oopsWatch) Write(p []byte) (int, error) {
	o.mu.Lock()
	s := o.tail + string(p)
	if strings.Contains(s, textPatchOops) {
		o.hit = true
	}
	o.tail = s[max(0, len(s)-len(textPatchOops)):]
	o.mu.Unlock()
	if o.out != nil {
		return o.out.Write(p)
	}
	return len(p), nil
}

func (o *oopsWatch) seen() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hit
}

// fidelitySection says how many boots the cells took.
func fidelitySection(r *Results) string {
	if !r.Fidelity {
		return ""
	}
	var b strings.Builder
	boots, retried := 0, []string{}
	for _, c := range r.Cells {
		boots += c.Boots
		if c.Boots > 1 {
			retried = append(retried, fmt.Sprintf("%s %d%% %s rep %d: %d boots", c.Workload, c.Load, c.Scheduler, c.Rep, c.Boots))
		}
	}
	fmt.Fprintf(&b, "## Fidelity mode\n\n")
	fmt.Fprintf(&b, "Each cell ran in its own boot under `%s` (one host thread per vCPU); a boot that died with the text-patching oops (`%s` on the console, the kernel dying on a stale breakpoint) was retried up to %d times. %d cells took %d boots", FidelityAccel, textPatchOops, FidelityRetries, len(r.Cells), boots)
	if len(retried) == 0 {
		fmt.Fprintf(&b, "; none needed a retry.\n\n")
	} else {
		fmt.Fprintf(&b, "; retried: %s.\n\n", strings.Join(retried, "; "))
	}
	return b.String()
}

// fidelityCellTime bounds one fidelity boot: boot, the cell, power-off.
func fidelityCellTime(cfg Config) time.Duration { return 3*time.Minute + 4*cfg.Cell }
