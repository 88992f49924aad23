// Command gen writes the scx-slo Prometheus rule file. `go generate
// ./alerts/...` runs it with the defaults; flags tune thresholds and
// selectors for a site-specific file.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/scx-slo/scx-slo/alerts"
)

func main() {
	def := alerts.DefaultConfig()
	cfg := def
	app := kingpin.New("gen", "Write the scx-slo Prometheus recording and alerting rules.")
	out := app.Flag("out", "Directory to write "+alerts.FileName+" into.").Default(".").String()
	app.Flag("job-selector", "Label matchers selecting the exporter's scrape target for the exporter-down alert.").Default(def.JobSelector).StringVar(&cfg.JobSelector)
	app.Flag("selector", "Label matchers added to every selector of every rule (empty: none).").Default(def.Selector).StringVar(&cfg.Selector)
	windows := app.Flag("burn-window", "Burn-rate condition LONG:SHORT:FACTOR:SEVERITY; repeat for each (default: the SRE workbook's four).").Strings()
	app.Flag("ticket-severity", "severity label of all alerts but the burn-rate ones.").Default(def.TicketSeverity).StringVar(&cfg.TicketSeverity)
	dur := func(name, help string, v *model.Duration) {
		app.Flag(name, help).Default(v.String()).SetValue(durationValue{name, v})
	}
	dur("overload-for", "How long a cgroup stays overloaded before alerting.", &cfg.OverloadFor)
	dur("not-attached-for", "How long the scheduler may stay detached while requested.", &cfg.NotAttachedFor)
	dur("incompatible-for", "How long enforcement may be requested on an incompatible kernel.", &cfg.IncompatibleFor)
	dur("exporter-down-for", "How long the exporter may be unscrapable.", &cfg.ExporterDownFor)
	dur("collector-failing-for", "How long a collector may fail.", &cfg.CollectorFor)
	dur("reload-failed-for", "How long a rejected config reload may stand.", &cfg.ReloadFor)
	dur("dropped-events-for", "How long BPF event drops may last.", &cfg.DroppedFor)
	dur("slots-exhausted-for", "How long SLO cgroups may go without an overload slot.", &cfg.SlotsFor)
	dur("event-window", "How long an ejection or guard detach keeps its alert firing.", &cfg.EventWindow)
	app.Flag("runbook-url", "Address of docs/runbook.md; alerts link to its sections.").Default(def.RunbookBaseURL).StringVar(&cfg.RunbookBaseURL)
	kingpin.MustParse(app.Parse(os.Args[1:]))

	if len(*windows) > 0 {
		cfg.BurnWindows = nil
		for _, s := range *windows {
			w, err := alerts.ParseBurnWindow(s)
			if err != nil {
				fail(err)
			}
			cfg.BurnWindows = append(cfg.BurnWindows, w)
		}
	}
	data, err := alerts.Render(cfg)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(*out, alerts.FileName), data, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "gen: %v\n", err)
	os.Exit(1)
}

// durationValue lets kingpin parse Prometheus durations such as 1d.
type durationValue struct {
	flag string
	d    *model.Duration
}

func (v durationValue) Set(s string) error {
	d, err := model.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("--%s %q: %w", v.flag, s, err)
	}
	*v.d = d
	return nil
}

func (v durationValue) String() string { return v.d.String() }
