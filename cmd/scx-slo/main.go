// Command scx-slo is a Prometheus exporter for per-cgroup CPU run-queue
// latency against latency SLOs; with --enforce it also loads the scx-slo
// sched_ext scheduler. Each subcommand lives in its own file and registers
// itself with the kingpin application through an Action.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"

	"github.com/scx-slo/scx-slo/internal/boolflags"
)

func main() {
	app := kingpin.New("scx-slo", "Per-cgroup run-queue latency SLOs: a Prometheus exporter and a sched_ext EDF scheduler.")
	app.Version(version.Print("scx-slo"))
	app.HelpFlag.Short('h')
	for _, register := range commands {
		register(app)
	}
	args, err := boolflags.Rewrite(app, os.Args[1:])
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
