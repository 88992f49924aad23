package alerts

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// BurnWindow is one multi-window burn-rate condition (Google SRE workbook,
// "Alerting on SLOs"): the alert fires while the error ratio over both Long
// and Short exceeds Factor times the error budget. Long catches a
// significant burn, Short makes the alert resolve soon after the burn stops.
type BurnWindow struct {
	Long     model.Duration
	Short    model.Duration
	Factor   float64
	Severity string
}

// Config holds what can be tuned when generating the rule file.
type Config struct {
	// JobSelector selects the exporter's own scrape target for the
	// exporter-down alert, as label matchers: `job="scx-slo"`.
	JobSelector string
	// Selector is added to every selector of every rule (empty: none), to
	// scope the rules to some targets: `cluster="prod"`.
	Selector string
	// BurnWindows are the burn-rate conditions; each becomes one alert.
	BurnWindows []BurnWindow
	// TicketSeverity is the severity label of every alert other than the
	// burn-rate ones (those carry their window's severity).
	TicketSeverity string
	// How long a condition must hold before its alert fires.
	OverloadFor     model.Duration
	NotAttachedFor  model.Duration
	IncompatibleFor model.Duration
	ExporterDownFor model.Duration
	CollectorFor    model.Duration
	ReloadFor       model.Duration
	DroppedFor      model.Duration
	SlotsFor        model.Duration
	// EventWindow is how far back an ejection or guard detach keeps its
	// alert firing.
	EventWindow model.Duration
	// RunbookBaseURL is the address of docs/runbook.md; each alert links to
	// its section as RunbookBaseURL#<lower-case alert name>.
	RunbookBaseURL string
}

// DefaultConfig returns the configuration the committed rule file is
// generated from.
func DefaultConfig() Config {
	d := func(s string) model.Duration {
		v, err := model.ParseDuration(s)
		if err != nil {
			panic(err) // constant input; a typo here is a programming error
		}
		return v
	}
	return Config{
		JobSelector: `job="scx-slo"`,
		BurnWindows: []BurnWindow{
			{Long: d("1h"), Short: d("5m"), Factor: 14.4, Severity: "page"},
			{Long: d("6h"), Short: d("30m"), Factor: 6, Severity: "page"},
			{Long: d("1d"), Short: d("2h"), Factor: 3, Severity: "ticket"},
			{Long: d("3d"), Short: d("6h"), Factor: 1, Severity: "ticket"},
		},
		TicketSeverity:  "ticket",
		OverloadFor:     d("15m"),
		NotAttachedFor:  d("10m"),
		IncompatibleFor: d("5m"),
		ExporterDownFor: d("5m"),
		CollectorFor:    d("10m"),
		ReloadFor:       d("5m"),
		DroppedFor:      d("15m"),
		SlotsFor:        d("5m"),
		EventWindow:     d("15m"),
		RunbookBaseURL:  "https://github.com/scx-slo/scx-slo/blob/main/docs/runbook.md",
	}
}

// ParseBurnWindow parses the generator's flag form LONG:SHORT:FACTOR:SEVERITY,
// e.g. "1h:5m:14.4:page".
func ParseBurnWindow(s string) (BurnWindow, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 4 {
		return BurnWindow{}, fmt.Errorf("burn window %q: want LONG:SHORT:FACTOR:SEVERITY, e.g. 1h:5m:14.4:page", s)
	}
	long, err := model.ParseDuration(parts[0])
	if err != nil {
		return BurnWindow{}, fmt.Errorf("burn window %q: long window %q: %w", s, parts[0], err)
	}
	short, err := model.ParseDuration(parts[1])
	if err != nil {
		return BurnWindow{}, fmt.Errorf("burn window %q: short window %q: %w", s, parts[1], err)
	}
	factor, err := strconv.ParseFloat(parts[2], 64)
	if err != nil {
		return BurnWindow{}, fmt.Errorf("burn window %q: factor %q is not a number", s, parts[2])
	}
	w := BurnWindow{Long: long, Short: short, Factor: factor, Severity: parts[3]}
	return w, w.validate()
}

func (w BurnWindow) validate() error {
	name := fmt.Sprintf("burn window %s/%s", w.Long, w.Short)
	switch {
	case w.Short <= 0:
		return fmt.Errorf("%s: short window %s must be positive", name, w.Short)
	case w.Long <= w.Short:
		return fmt.Errorf("%s: long window %s must be longer than short window %s", name, w.Long, w.Short)
	case !(w.Factor > 0):
		return fmt.Errorf("%s: factor %v must be positive", name, w.Factor)
	case w.Severity == "":
		return fmt.Errorf("%s: severity must not be empty", name)
	}
	return nil
}

// Validate reports the first setting that can't produce a working rule file.
func (c Config) Validate() error {
	if _, err := parseMatchers("job selector", c.JobSelector); err != nil {
		return err
	}
	if strings.TrimSpace(c.JobSelector) == "" {
		return fmt.Errorf("job selector %q: must not be empty, or the exporter-down alert would match every target", c.JobSelector)
	}
	if _, err := parseMatchers("selector", c.Selector); err != nil {
		return err
	}
	if len(c.BurnWindows) == 0 {
		return fmt.Errorf("burn windows: need at least one")
	}
	for _, w := range c.BurnWindows {
		if err := w.validate(); err != nil {
			return err
		}
	}
	if c.TicketSeverity == "" {
		return fmt.Errorf("ticket severity %q: must not be empty", c.TicketSeverity)
	}
	for _, f := range []struct {
		name string
		v    model.Duration
	}{
		{"overload for", c.OverloadFor},
		{"not attached for", c.NotAttachedFor},
		{"incompatible for", c.IncompatibleFor},
		{"exporter down for", c.ExporterDownFor},
		{"collector failing for", c.CollectorFor},
		{"config reload for", c.ReloadFor},
		{"dropped events for", c.DroppedFor},
		{"slots exhausted for", c.SlotsFor},
		{"event window", c.EventWindow},
	} {
		if time.Duration(f.v) <= 0 {
			return fmt.Errorf("%s %s: must be positive", f.name, f.v)
		}
	}
	u, err := url.Parse(c.RunbookBaseURL)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("runbook base URL %q: want an absolute URL without #fragment", c.RunbookBaseURL)
	}
	return nil
}
