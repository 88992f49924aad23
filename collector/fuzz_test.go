package collector

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/slosync"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// FuzzCgroupNames makes a real cgroup for each name the kernel accepts,
// under an SLO glob, walks it with the real syncer, gives it recorded
// wakeups, and scrapes the runqueue and slo collectors over real HTTP
// with the Prometheus text parser: every scrape must parse, the cgroup
// must appear exactly once per family under a valid label that reads back
// as its name, and nothing may be dropped. Run it longer with
// go test -fuzz FuzzCgroupNames ./collector (as root).
func FuzzCgroupNames(f *testing.F) {
	exportertest.RequireRoot(f)
	for _, seed := range []string{
		"plain", "bad\xff\xfe", "half\xe2\x82", "ctl\x01\x1b[31m\t", strings.Repeat("L", 255),
		`foo\x2dbar.scope`, "\ufffd", "sp ace", `quo"te`, "emoji😀\xc0",
	} {
		f.Add(seed)
	}
	cg := exportertest.NewCgroups(f, "auto")
	parent := cg.H.Dir(cg.Parent)
	// The hierarchy seen from the per-test parent: the fuzzed cgroup is
	// "/<name>", and the walk stays small.
	sub := cgroupfs.Hierarchy{Root: parent, V2: cg.H.V2, ID: cg.H.ID}
	cfg, err := sloconfig.Parse([]byte("slos:\n  - cgroup: /*\n    latencyBudget: 1ms\n"), "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	syncer := slosync.New(slosync.Options{Hierarchy: sub, Config: func() *sloconfig.Config { return cfg },
		Targets: func() []slomaps.Maps { return nil }})
	r := &readings{}
	src := Sources{Tracer: r, Cgroups: syncer, Deadlines: r.deadlineMaps, Config: r}
	rq, err := newRunqueueCollector(RunqueueConfig{MaxSeries: 10}, src, log.NewNopLogger())
	if err != nil {
		f.Fatal(err)
	}
	slo, err := newSLOCollector(src, log.NewNopLogger())
	if err != nil {
		f.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(exporterOf(map[string]Collector{"runqueue": rq, "slo": slo}))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	f.Cleanup(srv.Close)

	f.Fuzz(func(t *testing.T, name string) {
		if strings.Contains(name, "/") {
			t.Skip("a path, not a name")
		}
		dir := parent + "/" + name
		if err := syscall.Mkdir(dir, 0o755); err != nil {
			// '/', '\n', "", ".", "..", NAME_MAX, or taken: the kernel's
			// call, not the exporter's.
			t.Skipf("mkdir %q: %v", name, err)
		}
		defer syscall.Rmdir(dir)
		id, err := cgroupfs.ID(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := syncer.Sync(); err != nil {
			t.Fatal(err)
		}
		r.stats = map[uint64]*slomaps.Stats{id: waits(3, 12)}
		r.stats[id].Deadlines = 3
		r.preempts = map[runqueue.PreemptKey]uint64{{Victim: id, By: id}: 1}

		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape: %s\n%s", resp.Status, body)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("scrape of %q does not parse: %v", name, err)
		}
		for _, fam := range []string{"scx_slo_runqueue_latency_seconds", "scx_slo_runqueue_preemptions_total", "scx_slo_budget_seconds", "scx_slo_deadlines_total"} {
			var labels []string
			for _, m := range fams[fam].GetMetric() {
				for _, l := range m.Label {
					if l.GetName() == "cgroup" {
						labels = append(labels, l.GetValue())
					}
				}
			}
			if len(labels) != 1 {
				t.Fatalf("%s: want one series for %q, got %q", fam, name, labels)
			}
			if !utf8.ValidString(labels[0]) {
				t.Errorf("%s: label %q is not valid UTF-8", fam, labels[0])
			}
			switch {
			case utf8.ValidString(name):
				if labels[0] != "/"+name {
					t.Errorf("%s: valid name %q labelled %q", fam, name, labels[0])
				}
			case !strings.Contains(name, `\x`): // else the read-back is ambiguous, by design
				if got := unescape(labels[0]); got != "/"+name {
					t.Errorf("%s: label %q reads back as %q, want %q", fam, labels[0], got, "/"+name)
				}
			}
		}
		for _, m := range fams["scx_slo_scrape_dropped_series_total"].GetMetric() {
			if m.Counter.GetValue() != 0 {
				t.Errorf("dropped series for %q: %v", name, m)
			}
		}
	})
}

// unescape reverses LabelValue as docs/metrics.md describes it, for names
// holding no "\x" of their own: \xNN is the byte NN.
func unescape(label string) string {
	var b strings.Builder
	for i := 0; i < len(label); i++ {
		if strings.HasPrefix(label[i:], `\x`) && i+4 <= len(label) {
			if v, err := strconv.ParseUint(label[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(label[i])
	}
	return b.String()
}
