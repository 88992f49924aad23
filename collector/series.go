package collector

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Series sends one collector's metrics for one scrape. It never panics: a
// metric the client library rejects, or a second series with the same name
// and label values, is dropped and counted
// (scx_slo_scrape_dropped_series_total) instead of failing the scrape or
// killing the process. Label values pass through LabelValue first.
type Series struct {
	ch       chan<- prometheus.Metric
	seen     map[seriesKey]struct{}
	dropped  int
	firstErr error // why the first series was dropped, for the log
}

type seriesKey struct {
	desc   *prometheus.Desc
	labels string
}

// seenSets recycles the per-scrape de-duplication sets: a fresh one would
// regrow to every series of the node on each scrape.
var seenSets = sync.Pool{New: func() any { return make(map[seriesKey]struct{}) }}

func newSeries(ch chan<- prometheus.Metric) *Series {
	return &Series{ch: ch, seen: seenSets.Get().(map[seriesKey]struct{})}
}

// done returns the series' resources; the Series must not be used after.
func (s *Series) done() {
	clear(s.seen)
	seenSets.Put(s.seen)
	s.seen = nil
}

// Gauge sends a gauge.
func (s *Series) Gauge(d *prometheus.Desc, v float64, labels ...string) {
	labels = labelValues(labels)
	if s.first(d, labels) {
		m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
		s.send(m, err)
	}
}

// Counter sends a counter.
func (s *Series) Counter(d *prometheus.Desc, v float64, labels ...string) {
	labels = labelValues(labels)
	if s.first(d, labels) {
		m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, v, labels...)
		s.send(m, err)
	}
}

// Histogram sends a classic histogram (buckets are cumulative counts by
// upper bound).
func (s *Series) Histogram(d *prometheus.Desc, count uint64, sum float64, buckets map[float64]uint64, labels ...string) {
	labels = labelValues(labels)
	if s.first(d, labels) {
		m, err := prometheus.NewConstHistogram(d, count, sum, buckets, labels...)
		s.send(m, err)
	}
}

// first reports whether d with these label values was not sent yet in
// this scrape; a repeat is dropped.
func (s *Series) first(d *prometheus.Desc, labels []string) bool {
	k := seriesKey{desc: d}
	if len(labels) == 1 {
		k.labels = labels[0] // the common case, without an allocation
	} else {
		// LabelValue output is valid UTF-8, which never holds the byte 0xff.
		k.labels = strings.Join(labels, "\xff")
	}
	if _, dup := s.seen[k]; dup {
		s.drop(fmt.Errorf("%s: a second series with label values %q", d, labels))
		return false
	}
	s.seen[k] = struct{}{}
	return true
}

func (s *Series) send(m prometheus.Metric, err error) {
	if err != nil {
		s.drop(err)
		return
	}
	s.ch <- m
}

func (s *Series) drop(err error) {
	s.dropped++
	if s.firstErr == nil {
		s.firstErr = err
	}
}

// LabelValue makes s a valid Prometheus label value: every byte that is
// not part of a valid UTF-8 sequence becomes \xNN (two lower-case hex
// digits). Everything else is kept as it is, backslashes and control
// characters included, so the common case (and systemd's own \x2d
// escapes in unit names) reads the same as the cgroup's path.
func LabelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// labelValues escapes v, copying it only when a value changes.
func labelValues(v []string) []string {
	out := v
	for i, s := range v {
		if e := LabelValue(s); e != s {
			if &out[0] == &v[0] {
				out = append([]string(nil), v...)
			}
			out[i] = e
		}
	}
	return out
}
