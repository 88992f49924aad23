package main

import (
	"fmt"
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// spellBools lets boolean flags take =true/=false, as the exporter's do:
// kingpin only knows --flag and --no-flag, but `--dry-run=false` is what
// people write in manifests.
func spellBools(app *kingpin.Application, args []string) ([]string, error) {
	isBool := map[string]bool{}
	for _, f := range app.Model().Flags {
		isBool[f.Name] = f.IsBoolFlag()
	}
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if strings.HasPrefix(a, "--") && hasVal && isBool[name] {
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
