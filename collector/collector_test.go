package collector

import (
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"/system.slice/a.service":        "/system.slice/a.service",
		`/system.slice/foo\x2dbar.scope`: `/system.slice/foo\x2dbar.scope`, // systemd's escape stays
		"/bad\xff":                       `/bad\xff`,
		"/\xe2\x82":                      `/\xe2\x82`, // truncated rune: each byte
		"/ok\xe2\x82\xac\xc0":            `/ok€\xc0`,
		"/ctl\x01\t":                     "/ctl\x01\t",
		"\ufffd":                         "\ufffd", // a valid U+FFFD stays
	} {
		if got := LabelValue(in); got != want || !utf8.ValidString(got) {
			t.Errorf("LabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// misbehaving sends a series twice, one with the wrong label count, and
// then panics when told to.
type misbehaving struct {
	desc  *prometheus.Desc
	panic bool
}

func (m *misbehaving) Update(out *Series) error {
	out.Gauge(m.desc, 1, "a")
	out.Gauge(m.desc, 2, "a")      // the same series again: dropped
	out.Gauge(m.desc, 3, "b", "c") // wrong label count: dropped
	out.Gauge(m.desc, 4, "b\xff")  // escaped, kept
	if m.panic {
		panic("boom")
	}
	return nil
}

// TestBadSeriesDroppedAndCounted: what the client library would reject
// costs the series (counted across scrapes), a panic costs the
// collector's success, never the process or the other collectors.
func TestBadSeriesDroppedAndCounted(t *testing.T) {
	bad := &misbehaving{desc: prometheus.NewDesc("scx_slo_test_value", "test", []string{"l"}, nil)}
	crash := &misbehaving{desc: prometheus.NewDesc("scx_slo_test_crash", "test", []string{"l"}, nil), panic: true}
	e := exporterOf(map[string]Collector{"bad": bad, "crash": crash})
	scrape(t, e)
	f := scrape(t, e)
	if got := values(f["scx_slo_test_value"]); len(got) != 2 || got["a"] != 1 || got[`b\xff`] != 4 {
		t.Errorf("series kept: %v", got)
	}
	if got := values(f["scx_slo_scrape_dropped_series_total"]); got["bad"] != 4 || got["crash"] != 4 {
		t.Errorf("dropped over two scrapes: %v, want 4 each", got)
	}
	if got := values(f["scx_slo_scrape_collector_success"]); got["bad"] != 1 || got["crash"] != 0 {
		t.Errorf("success: %v", got)
	}
}
