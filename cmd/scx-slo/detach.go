package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/scx-slo/scx-slo/enforcer"
)

func init() { commands = append(commands, registerDetach) }

// detach is the one-command rollback: it removes a scheduler left pinned
// by `scx-slo --enforce --enforce.keep-pinned`, and the kernel falls back
// to its default scheduler at once.
func registerDetach(app *kingpin.Application) {
	cmd := app.Command("detach", "Detach a pinned scx-slo scheduler (the rollback). A running `--enforce` exporter must be stopped first, or it re-attaches.")
	pinDir := cmd.Flag("enforce.pin-dir", "bpffs directory of the pinned scheduler.").Default(enforcer.DefaultPinDir).String()
	cmd.Action(func(*kingpin.ParseContext) error {
		if err := enforcer.Detach(*pinDir); err != nil {
			return err
		}
		state := "unknown"
		if b, err := os.ReadFile("/sys/kernel/sched_ext/state"); err == nil {
			state = strings.TrimSpace(string(b))
		} else if os.IsNotExist(err) {
			state = "no sched_ext in this kernel"
		}
		fmt.Printf("detached; sched_ext state: %s\n", state)
		return nil
	})
}
