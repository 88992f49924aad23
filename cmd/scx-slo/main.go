// Command scx-slo is a Prometheus exporter for per-cgroup CPU run-queue
// latency against latency SLOs; with --enforce it also loads the scx-slo
// sched_ext scheduler. Each subcommand lives in its own file and registers
// itself with the kingpin application through an Action.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
)

func main() {
	app := kingpin.New("scx-slo", "Per-cgroup run-queue latency SLOs: a Prometheus exporter and a sched_ext EDF scheduler.")
	app.Version(version.Print("scx-slo"))
	app.HelpFlag.Short('h')
	for _, register := range commands {
		register(app)
	}
	args, err := boolFlagValues(app, os.Args[1:])
	if err == nil {
		_, err = app.Parse(args)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "scx-slo: %v\n", err)
		os.Exit(2)
	}
}

// commands holds one register function per subcommand file (serve.go,
// status.go, lab.go, ...), appended from their init functions.
var commands []func(*kingpin.Application)

// boolFlagValues rewrites --flag=true/false to --flag/--no-flag for
// boolean flags: kingpin's booleans take no value, but `--enforce=false`
// is the spelling SREs reach for (and the documented rollback).
func boolFlagValues(app *kingpin.Application, args []string) ([]string, error) {
	bools := map[string]bool{}
	var walk func(cmds []*kingpin.CmdModel)
	add := func(flags []*kingpin.FlagModel) {
		for _, f := range flags {
			if f.IsBoolFlag() {
				bools[f.Name] = true
			}
		}
	}
	walk = func(cmds []*kingpin.CmdModel) {
		for _, c := range cmds {
			add(c.Flags)
			walk(c.Commands)
		}
	}
	m := app.Model()
	add(m.Flags)
	walk(m.Commands)
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if ok && strings.HasPrefix(a, "--") && bools[name] {
			switch val {
			case "true":
				a = "--" + name
			case "false":
				a = "--no-" + name
			default:
				return nil, fmt.Errorf("--%s=%q: a boolean flag takes true or false", name, val)
			}
		}
		out = append(out, a)
	}
	return out, nil
}
