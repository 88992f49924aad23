// Command gen writes the scx-slo Grafana dashboards as JSON. `go generate
// ./dashboards/...` runs it with the defaults.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/scx-slo/scx-slo/dashboards"
)

func main() {
	def := dashboards.DefaultConfig()
	cfg := def
	app := kingpin.New("gen", "Write the scx-slo Grafana dashboards.")
	out := app.Flag("out", "Directory to write the dashboard JSON into.").Default(".").String()
	app.Flag("uid-prefix", "Prefix of the dashboards' Grafana UIDs.").Default(def.UIDPrefix).StringVar(&cfg.UIDPrefix)
	tags := app.Flag("tag", "Dashboard tag; repeat for more (default: scx-slo). The first links the dashboards.").Strings()
	app.Flag("refresh", "Default auto-refresh interval.").Default(def.Refresh).StringVar(&cfg.Refresh)
	burn := app.Flag("burn-rates", "Comma-separated burn-rate factors drawn on the burn-rate panel.").Default(joinFloats(def.BurnRates)).String()
	kingpin.MustParse(app.Parse(os.Args[1:]))

	if len(*tags) > 0 {
		cfg.Tags = *tags
	}
	cfg.BurnRates = nil
	for _, s := range strings.Split(*burn, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			fail(fmt.Errorf("burn rates %q: %q is not a number", *burn, s))
		}
		cfg.BurnRates = append(cfg.BurnRates, f)
	}
	files, err := dashboards.Render(cfg)
	if err != nil {
		fail(err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(*out, n), files[n], 0o644); err != nil {
			fail(err)
		}
	}
}

func joinFloats(fs []float64) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "gen: %v\n", err)
	os.Exit(1)
}
