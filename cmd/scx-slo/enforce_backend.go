package main

import (
	"context"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/scx-slo/scx-slo/enforcer"
	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// newEnforcerBackend attaches the scheduler (or re-adopts a pinned one).
// onAttach runs after every attach so the SLO map is filled at once.
func newEnforcerBackend(ctx context.Context, f *enforceFlags, node *app, logger log.Logger, onAttach func(slomaps.Maps), guard *enforcer.Guard) (enforcerBackend, error) {
	e, err := enforcer.New(enforcer.Options{
		PinDir: f.pinDir, Partial: f.partial, KeepPinned: f.keepPinned,
		OnAttach: onAttach, Guard: guard, Logger: log.With(logger, "component", "enforcer"),
	})
	if err != nil {
		return nil, err
	}
	if err := e.Start(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// releasePinned detaches a scheduler left pinned by an earlier run, so that
// restarting with --enforce=false is the one-line rollback.
func releasePinned(f *enforceFlags, logger log.Logger) {
	if err := enforcer.Detach(f.pinDir); err != nil {
		level.Warn(logger).Log("msg", "removing a pinned scheduler", "pin_dir", f.pinDir, "err", err)
	}
}
