package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/internal/shed"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// TestDocsMatchBinary keeps docs/shedding.md honest: every flag it
// mentions exists, every flag exists in it, and every scx_slo_shed_ metric
// it names is registered (and the other way round).
func TestDocsMatchBinary(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(exportertest.RepoRoot(), "docs", "shedding.md"))
	if err != nil {
		t.Fatal(err)
	}
	app := kingpin.New("scx-slo-shed", "")
	addFlags(app)
	flags := map[string]bool{}
	for _, f := range app.Model().Flags {
		if !f.Hidden {
			flags[f.Name] = true
		}
	}
	// Not flags of this binary: the exporter's --enforce and
	// --overload.pin-dir, and the placeholder in "--flag=false".
	notOurs := map[string]bool{"enforce": true, "overload.pin-dir": true, "flag": true, "no-flag": true}
	mentioned := map[string]bool{}
	for _, m := range regexp.MustCompile("`--([a-z][a-z0-9.-]*)").FindAllStringSubmatch(string(doc), -1) {
		name := m[1]
		mentioned[name] = true
		if notOurs[name] {
			continue
		}
		if !flags[name] && !flags[strings.TrimPrefix(name, "no-")] {
			t.Errorf("docs/shedding.md mentions --%s, which scx-slo-shed does not have", name)
		}
	}
	for name := range flags {
		switch name {
		case "help", "version", "web.systemd-socket", "log.level", "log.format":
			continue
		}
		if !mentioned[name] && !mentioned["no-"+name] {
			t.Errorf("flag --%s is not documented in docs/shedding.md", name)
		}
	}

	reg := prometheus.NewRegistry()
	if _, err := shed.New(shed.DefaultConfig(), []shed.Source{shed.NewPinnedSource(t.TempDir(), shed.Target{})}, reg, log.NewNopLogger()); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, f := range fams {
		registered[f.GetName()] = true
		if !strings.Contains(string(doc), "`"+f.GetName()) {
			t.Errorf("metric %s is not documented in docs/shedding.md", f.GetName())
		}
	}
	for _, m := range regexp.MustCompile(`scx_slo_shed_[a-z_]+[a-z]`).FindAllString(string(doc), -1) {
		if !registered[m] {
			t.Errorf("docs/shedding.md names %s, which is not registered", m)
		}
	}
}
