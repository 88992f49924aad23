package main

import (
	"context"
	"errors"

	"github.com/go-kit/log"

	"github.com/scx-slo/scx-slo/collector"
)

// newEnforcerBackend loads the scheduler. The enforcer package plugs in here.
func newEnforcerBackend(ctx context.Context, f *enforceFlags, node *collector.Node, logger log.Logger) (enforcerBackend, error) {
	return nil, errors.New("the scheduler loader is not built into this binary yet")
}

// releasePinned detaches a scheduler left pinned by an earlier run, so that
// --enforce=false is the one-line rollback.
func releasePinned(f *enforceFlags, logger log.Logger) error { return nil }
