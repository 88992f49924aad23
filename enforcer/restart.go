package enforcer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// After the kernel ejects the scheduler, re-attach only when that is safe:
//
//   - the exit code carries SCX_ECODE_ACT_RESTART (the kernel itself says
//     a restart is appropriate, e.g. after a hotplug it could not handle);
//   - an error other than a stall, fewer than ejectionLimit times within
//     ejectionWindow (a scheduler that keeps failing is not retried
//     forever, however far apart the failures are);
//   - a watchdog stall, fewer than stallLimit times (a stall means a task
//     waited timeout_ms: the next one hurts a workload as much).
//
// Never after SysRq-S (the operator's emergency kill) or an unregistration
// from outside (`scx-slo detach`). Giving up after SysRq-S or repeated
// failures is persisted in the pin directory, so a restarted exporter
// observes only until `scx-slo detach` clears the mark.
const (
	ecodeActRestart = 1 << 48 // SCX_ECODE_ACT_RESTART in ops.exit's exit_code
	ejectionLimit   = 3
	ejectionWindow  = 30 * time.Minute
	stallLimit      = 2
)

// restartPolicy remembers this process's ejections.
type restartPolicy struct {
	ejections []time.Time
	stalls    int
}

// decide says whether to re-attach after info, and whether to stay away
// for good (persisted).
func (r *restartPolicy) decide(info ExitInfo, now time.Time) (reattach, forGood bool, why string) {
	if info.Code&ecodeActRestart != 0 {
		return true, false, "the kernel asked for a restart (SCX_ECODE_ACT_RESTART)"
	}
	switch info.Kind {
	case "unreg", "unreg_bpf", "unreg_kern":
		return false, false, "detached from outside (scx-slo detach?)"
	case "sysrq":
		return false, true, "disabled by SysRq-S, the operator's emergency stop"
	case "error_stall":
		r.stalls++
		if r.stalls >= stallLimit {
			return false, true, fmt.Sprintf("the watchdog found stalled tasks %d times", r.stalls)
		}
		return true, false, "the watchdog found a stalled task; retrying once"
	}
	kept := r.ejections[:0]
	for _, t := range r.ejections {
		if now.Sub(t) < ejectionWindow {
			kept = append(kept, t)
		}
	}
	r.ejections = append(kept, now)
	if len(r.ejections) >= ejectionLimit {
		return false, true, fmt.Sprintf("ejected %d times within %s", len(r.ejections), ejectionWindow)
	}
	return true, false, "ejected by the kernel; re-attaching with backoff"
}

// pinDetached is a directory in the pin directory that marks "detached
// for good"; its one subdirectory is named after the exit kind that
// caused it, so `ls` shows why.
const pinDetached = "detached"

// ErrDetachedForGood is returned by Start when an earlier exporter gave
// up on the scheduler on this boot.
var ErrDetachedForGood = errors.New("the scheduler was detached for good earlier on this boot")

func markDetached(pinDir, kind string) error {
	return os.MkdirAll(filepath.Join(pinDir, pinDetached, kind), 0o700)
}

// detachedMark reports the exit kind that detached the scheduler for
// good, if a mark is present.
func detachedMark(pinDir string) (kind string, ok bool) {
	entries, err := os.ReadDir(filepath.Join(pinDir, pinDetached))
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		return e.Name(), true
	}
	return "unknown", true
}

func clearDetached(pinDir string) error {
	return os.RemoveAll(filepath.Join(pinDir, pinDetached))
}
