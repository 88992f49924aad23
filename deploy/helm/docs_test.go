package helmchart

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
)

var setFlag = regexp.MustCompile(`--set ([^\s\\]+)`)

// The walk-through's `helm install` renders, and every value it sets is a
// key of values.yaml (Helm would silently ignore a misspelt one).
func TestInstallWalkthroughRenders(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Install with Helm\n")
	if !ok {
		t.Fatal(`docs/kubernetes.md has no "## Install with Helm" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), ChartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var defaults map[string]any
	if err := yaml.Unmarshal(raw, &defaults); err != nil {
		t.Fatal(err)
	}
	values := map[string]any{}
	sets := setFlag.FindAllStringSubmatch(section, -1)
	if len(sets) == 0 {
		t.Fatal("the walk-through sets no values")
	}
	for _, m := range sets {
		if err := strvals.ParseInto(m[1], values); err != nil {
			t.Fatalf("--set %s: %v", m[1], err)
		}
		key, _, _ := strings.Cut(m[1], "=")
		var node any = defaults
		for _, part := range strings.Split(key, ".") {
			mm, ok := node.(map[string]any)
			if !ok {
				t.Errorf("--set %s: %s is not a key of values.yaml", m[1], key)
				break
			}
			if node, ok = mm[part]; !ok {
				t.Errorf("--set %s: %s is not a key of values.yaml", m[1], key)
				break
			}
		}
	}
	objs := mustRender(t, values)
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", &ds)
	// The walk-through waits on daemonset/scx-slo (release scx-slo).
	if ds.Name != "scx-slo" {
		t.Errorf("DaemonSet named %q, the walk-through says scx-slo", ds.Name)
	}
	if got := ds.Spec.Template.Spec.Containers[0].Image; got != "registry.example.com/scx-slo:v0.1.0" {
		t.Errorf("image %q, want the walk-through's", got)
	}
	want := map[string]bool{"ServiceMonitor": false, "PrometheusRule": false}
	for _, o := range objs {
		if _, ok := want[o.GetKind()]; ok {
			want[o.GetKind()] = true
		}
		if o.GetKind() == "ConfigMap" && strings.HasSuffix(o.GetName(), "-dashboards") && o.GetNamespace() != "monitoring" {
			t.Errorf("dashboards ConfigMap in %q, the walk-through says monitoring", o.GetNamespace())
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("the walk-through's install renders no %s", k)
		}
	}
}
