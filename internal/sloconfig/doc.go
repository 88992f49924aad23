// Package sloconfig reads the SLO config given by --slo.config-file, which
// both the exporter's slo collector and the enforcer use. The format,
// defaults and matching rules are described in docs/slo-config.md.
//
// Parsing is strict: an unknown field, a wrong type, a value out of range
// or a duplicate cgroup rejects the whole file. Parse and Load return an
// ErrorList naming file, line, field and value of every problem at once:
//
//	slo.yaml:4: slos[0].latencyBudget: "0ms": must be greater than 0
//
// An empty file is an error (it is more often a half-written file than a
// wish for no SLOs); "slos: []" configures no SLOs.
//
// Config.Match maps a concrete cgroup path to its SLO: an entry naming the
// exact path wins over globs, and among globs the first in file order wins.
//
// Watcher keeps the current config of a file. Typical use:
//
//	w, err := sloconfig.NewWatcher(path, logger, sloconfig.WithSIGHUP())
//	if err != nil { ... } // the initial load must succeed
//	go w.Run(ctx)
//	for cfg := range w.Subscribe() { apply(cfg) } // first value: the current config
//
// A reload that fails keeps the last good config; LastReload reports the
// outcome for the scx_slo_config_last_reload_* metrics.
package sloconfig
