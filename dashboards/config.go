package dashboards

import (
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/common/model"
)

// Config holds what can be tuned when generating the dashboards.
type Config struct {
	// UIDPrefix starts every dashboard's Grafana UID, e.g. "scx-slo" gives
	// "scx-slo-node" and "scx-slo-cgroup".
	UIDPrefix string
	// Tags are set on every dashboard; the first also links the dashboards
	// to each other.
	Tags []string
	// Refresh is the default auto-refresh interval.
	Refresh string
	// BurnRates are drawn as threshold lines on the burn-rate panel; keep
	// them in line with the alert rules' factors.
	BurnRates []float64
}

// DefaultConfig returns the configuration the committed JSON is generated
// from.
func DefaultConfig() Config {
	return Config{
		UIDPrefix: "scx-slo",
		Tags:      []string{"scx-slo"},
		Refresh:   "30s",
		BurnRates: []float64{1, 3, 6, 14.4},
	}
}

// Grafana UIDs are at most 40 characters of this alphabet; the longest
// suffix added is "-cgroup".
var uidPrefix = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,33}$`)

// Validate reports the first setting that can't produce a dashboard Grafana
// accepts.
func (c Config) Validate() error {
	if !uidPrefix.MatchString(c.UIDPrefix) {
		return fmt.Errorf("uid prefix %q: want 1-33 characters of a-z, A-Z, 0-9, _ and -", c.UIDPrefix)
	}
	if len(c.Tags) == 0 {
		return fmt.Errorf("tags: need at least one, to link the dashboards")
	}
	for _, t := range c.Tags {
		if t == "" {
			return fmt.Errorf("tags %q: empty tag", c.Tags)
		}
	}
	if d, err := model.ParseDuration(c.Refresh); err != nil || time.Duration(d) < time.Second {
		return fmt.Errorf("refresh %q: want a duration of at least 1s such as 30s or 1m", c.Refresh)
	}
	prev := 0.0
	for _, r := range c.BurnRates {
		if !(r > prev) {
			return fmt.Errorf("burn rates %v: want positive, increasing values; %v is not", c.BurnRates, r)
		}
		prev = r
	}
	return nil
}
