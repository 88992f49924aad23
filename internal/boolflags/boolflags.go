// Package boolflags lets kingpin's boolean flags take an explicit value.
// kingpin's booleans accept only --flag and --no-flag, but --flag=false is
// the spelling SREs reach for (and `--enforce=false` is scx-slo's
// documented rollback), so both binaries rewrite it before parsing.
package boolflags

import (
	"fmt"
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// Rewrite turns --flag=true / --flag=false into --flag / --no-flag for
// every boolean flag of app (any command); other arguments pass through,
// and nothing after "--" is touched.
func Rewrite(app *kingpin.Application, args []string) ([]string, error) {
	bools := map[string]bool{}
	add := func(flags []*kingpin.FlagModel) {
		for _, f := range flags {
			if f.IsBoolFlag() {
				bools[f.Name] = true
			}
		}
	}
	var walk func(cmds []*kingpin.CmdModel)
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
