package helmchart

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"gopkg.in/yaml.v3"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"

	"github.com/scx-slo/scx-slo/alerts"
	"github.com/scx-slo/scx-slo/deploy/helm/helmtest"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
)

// The release every test renders.
const (
	releaseName      = helmtest.ReleaseName
	releaseNamespace = helmtest.ReleaseNamespace
)

func repoRoot(testing.TB) string { return helmtest.RepoRoot() }

func loadChart(t testing.TB) *chartv2.Chart {
	t.Helper()
	return helmtest.LoadChart(t)
}

// render renders the chart as `helm install` would with values over the
// chart's defaults, and returns every object, NOTES.txt left out.
func render(t testing.TB, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	return helmtest.Render(t, loadChart(t), values, nil)
}

// renderChart renders ch; with cfg, Helm's lookup reads that API server.
func renderChart(t testing.TB, ch *chartv2.Chart, values map[string]any, cfg *rest.Config) ([]*unstructured.Unstructured, error) {
	t.Helper()
	return helmtest.Render(t, ch, values, cfg)
}

func mustRender(t testing.TB, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := render(t, values)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind())
	}
	slices.Sort(out)
	return out
}

func find(t testing.TB, objs []*unstructured.Unstructured, kind string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind {
			if err := kruntime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			return
		}
	}
	t.Fatalf("no %s rendered; got %v", kind, kinds(objs))
}

// everything turns on every optional part and changes most defaults.
func everything() map[string]any {
	return map[string]any{
		"fullnameOverride":  "agent",
		"mode":              map[string]any{"default": "enforce"},
		"hostNetwork":       true,
		"port":              9900,
		"logLevel":          "debug",
		"extraArgs":         []any{"--collector.runqueue.max-series=50"},
		"priorityClassName": "system-node-critical",
		"podAnnotations":    map[string]any{"example.com/team": "sre"},
		"hostPaths":         map[string]any{"tracefs": "/sys/kernel/tracing"},
		"sloConfig": map[string]any{"slos": []any{map[string]any{
			"cgroup": "/kubepods.slice/*/*/*.scope", "latencyBudget": "5ms",
		}}},
		"prometheus": map[string]any{
			"release":        "prom",
			"serviceMonitor": map[string]any{"enabled": true, "scrapeTimeout": "10s", "additionalLabels": map[string]any{"team": "sre"}},
			"podMonitor":     map[string]any{"enabled": true},
			"rule":           map[string]any{"enabled": true},
		},
		"grafanaDashboards": map[string]any{"enabled": true, "annotations": map[string]any{"grafana_folder": "scx-slo"}},
		"webhook":           map[string]any{"enabled": true, "excludeNamespaces": []any{"batch"}},
	}
}

func TestGeneratedFilesAreCurrent(t *testing.T) {
	root := repoRoot(t)
	want, err := Want(root)
	if err != nil {
		t.Fatal(err)
	}
	for rel, b := range want {
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s is stale: run `go generate ./deploy/helm/...` and commit the result", rel)
		}
	}
	have, _ := filepath.Glob(filepath.Join(root, ChartDir, "files", "dashboards", "*"))
	for _, p := range have {
		rel, _ := filepath.Rel(root, p)
		if _, ok := want[rel]; !ok {
			t.Errorf("%s is not a generated dashboard: run `go generate ./deploy/helm/...`", rel)
		}
	}
}

func TestChartVersionIsVERSION(t *testing.T) {
	v, err := os.ReadFile(filepath.Join(repoRoot(t), "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(v))
	md := loadChart(t).Metadata
	if md.Version != version || md.AppVersion != version {
		t.Errorf("Chart.yaml version %q, appVersion %q; VERSION says %q", md.Version, md.AppVersion, version)
	}
	if err := md.Validate(); err != nil {
		t.Errorf("Chart.yaml: %v", err)
	}
	var ds appsv1.DaemonSet
	find(t, mustRender(t, nil), "DaemonSet", &ds)
	if got := ds.Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(got, ":v"+version) {
		t.Errorf("default image %q, want tag v%s", got, version)
	}
}

func TestSetChartVersionRejectsNonSemVer(t *testing.T) {
	chart := []byte("apiVersion: v2\nname: x\nversion: 0.0.1\nappVersion: 0.0.1\n")
	got, err := SetChartVersion(chart, "1.2.3-rc.1")
	if err != nil || !bytes.Contains(got, []byte("\nversion: 1.2.3-rc.1\nappVersion: 1.2.3-rc.1\n")) {
		t.Errorf("SetChartVersion(1.2.3-rc.1) = %q, %v", got, err)
	}
	for _, bad := range []string{"1.2", "v1.2.3", "1.2.3+build", ""} {
		if _, err := SetChartVersion(chart, bad); err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("SetChartVersion(%q): error %v, want one naming the value", bad, err)
		}
	}
	if _, err := SetChartVersion([]byte("name: x\nversion: 1.0.0\n"), "1.0.0"); err == nil || !strings.Contains(err.Error(), "appVersion") {
		t.Errorf("Chart.yaml without appVersion: error %v, want one naming appVersion", err)
	}
}

func TestRenderDefaults(t *testing.T) {
	objs := mustRender(t, nil)
	if got, want := kinds(objs), []string{"ClusterRole", "ClusterRoleBinding", "DaemonSet", "Service", "ServiceAccount"}; !slices.Equal(got, want) {
		t.Fatalf("default install renders %v, want %v", got, want)
	}
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", &ds)
	pod := ds.Spec.Template.Spec
	if pod.HostNetwork || pod.HostPID {
		t.Errorf("hostNetwork %v, hostPID %v: want both off by default", pod.HostNetwork, pod.HostPID)
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil {
		t.Fatalf("securityContext %+v: want privileged: false with named capabilities", sc)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities dropped %v, want ALL", sc.Capabilities.Drop)
	}
	if got := sc.Capabilities.Add; !slices.Equal(got, Capabilities) {
		t.Errorf("capabilities added %v, want %v", got, Capabilities)
	}
	if !slices.Contains(c.Args, "--kubernetes.default-mode=observe") || !slices.Contains(c.Args, "--kubernetes") {
		t.Errorf("args %v: want --kubernetes and --kubernetes.default-mode=observe", c.Args)
	}
	if env := c.Env; len(env) == 0 || env[0].Name != "NODE_NAME" || env[0].ValueFrom == nil || env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("env %+v: want NODE_NAME from the downward API's spec.nodeName", env)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for name, path := range map[string]string{"cgroupfs": "/sys/fs/cgroup", "bpffs": "/sys/fs/bpf", "btf": "/sys/kernel/btf"} {
		if hostPaths[name] != path || mounts[name] != path {
			t.Errorf("volume %s: host path %q mounted at %q, want %s at the same path", name, hostPaths[name], mounts[name], path)
		}
	}
	if _, ok := hostPaths["tracefs"]; ok {
		t.Errorf("tracefs is mounted by default; the tracer does not need it")
	}
	if pod.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector %v, want kubernetes.io/os: linux", pod.NodeSelector)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations %+v, want every NoSchedule taint tolerated (like prometheus-node-exporter)", pod.Tolerations)
	}

	var role rbacv1.ClusterRole
	find(t, objs, "ClusterRole", &role)
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"scx-slo.io"}, Resources: []string{"slopolicies"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "watch"}},
	}
	if len(role.Rules) != len(want) {
		t.Fatalf("ClusterRole rules %+v, want %+v", role.Rules, want)
	}
	for i, r := range role.Rules {
		if !slices.Equal(r.APIGroups, want[i].APIGroups) || !slices.Equal(r.Resources, want[i].Resources) || !slices.Equal(r.Verbs, want[i].Verbs) || len(r.ResourceNames)+len(r.NonResourceURLs) != 0 {
			t.Errorf("ClusterRole rule %d: %+v, want %+v", i, r, want[i])
		}
	}
}

func TestRenderEverything(t *testing.T) {
	objs := mustRender(t, everything())
	want := []string{"ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "DaemonSet", "Deployment",
		"MutatingWebhookConfiguration", "PodDisruptionBudget", "PodMonitor", "PrometheusRule", "Role", "RoleBinding", "Secret", "Service", "Service",
		"ServiceAccount", "ServiceAccount", "ServiceMonitor", "ValidatingWebhookConfiguration"}
	if got := kinds(objs); !slices.Equal(got, want) {
		t.Fatalf("renders %v, want %v", got, want)
	}
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", &ds)
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	for _, a := range []string{"--kubernetes.default-mode=enforce", "--web.listen-address=:9900", "--slo.config-file=/etc/scx-slo/slo.yaml", "--collector.runqueue.max-series=50", "--log.level=debug"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v: missing %s", c.Args, a)
		}
	}
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet || c.Ports[0].HostPort != 9900 {
		t.Errorf("hostNetwork %v, dnsPolicy %q, hostPort %d", pod.HostNetwork, pod.DNSPolicy, c.Ports[0].HostPort)
	}
	if ds.Spec.Template.Annotations["checksum/config"] == "" || ds.Spec.Template.Annotations["example.com/team"] != "sre" {
		t.Errorf("pod annotations %v: want checksum/config and the podAnnotations", ds.Spec.Template.Annotations)
	}

	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule"} {
		for _, o := range objs {
			if o.GetKind() == kind && o.GetLabels()["release"] != "prom" {
				t.Errorf("%s labels %v: want release=prom for kube-prometheus-stack's selector", kind, o.GetLabels())
			}
		}
	}
	var sm monitoringv1.ServiceMonitor
	find(t, objs, "ServiceMonitor", &sm)
	if sm.Labels["team"] != "sre" || sm.Spec.Endpoints[0].ScrapeTimeout != "10s" {
		t.Errorf("ServiceMonitor labels %v, scrapeTimeout %q", sm.Labels, sm.Spec.Endpoints[0].ScrapeTimeout)
	}
	// The exporter-down alert selects the job the rules were generated for.
	jobSel := alerts.DefaultConfig().JobSelector
	relabelsJob := false
	for _, r := range sm.Spec.Endpoints[0].RelabelConfigs {
		if r.TargetLabel == "job" && r.Replacement != nil && jobSel == `job="`+*r.Replacement+`"` {
			relabelsJob = true
		}
	}
	if !relabelsJob {
		t.Errorf("ServiceMonitor relabelings %+v: want job set to match the rules' %s", sm.Spec.Endpoints[0].RelabelConfigs, jobSel)
	}

	// The PrometheusRule carries the generated rules, untouched.
	var rule monitoringv1.PrometheusRule
	find(t, objs, "PrometheusRule", &rule)
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "alerts", "scx-slo.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []monitoringv1.RuleGroup `yaml:"groups"`
	}
	if err := kyaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Groups) == 0 || !equalJSON(t, file.Groups, rule.Spec.Groups) {
		t.Errorf("PrometheusRule groups differ from alerts/scx-slo.rules.yml (%d groups there)", len(file.Groups))
	}
	if !strings.Contains(string(mustJSON(t, rule.Spec.Groups)), "{{ $labels.cgroup }}") {
		t.Errorf("the rules' {{ $labels.cgroup }} templates did not survive rendering")
	}

	// The dashboards ConfigMap carries the generated JSON byte for byte.
	var dash corev1.ConfigMap
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && strings.HasSuffix(o.GetName(), "-dashboards") {
			find(t, []*unstructured.Unstructured{o}, "ConfigMap", &dash)
		}
	}
	if dash.Labels["grafana_dashboard"] != "1" || dash.Annotations["grafana_folder"] != "scx-slo" {
		t.Errorf("dashboards ConfigMap labels %v, annotations %v", dash.Labels, dash.Annotations)
	}
	jsons, _ := filepath.Glob(filepath.Join(repoRoot(t), "dashboards", "*.json"))
	if len(dash.Data) != len(jsons) {
		t.Errorf("dashboards ConfigMap has %d entries, dashboards/ %d", len(dash.Data), len(jsons))
	}
	for _, p := range jsons {
		b, _ := os.ReadFile(p)
		if dash.Data[filepath.Base(p)] != string(b) {
			t.Errorf("dashboards ConfigMap entry %s differs from %s", filepath.Base(p), p)
		}
	}

	// The file config reaches the agent as written.
	var cfg corev1.ConfigMap
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && strings.HasSuffix(o.GetName(), "-config") {
			find(t, []*unstructured.Unstructured{o}, "ConfigMap", &cfg)
		}
	}
	var slo map[string]any
	if err := yaml.Unmarshal([]byte(cfg.Data["slo.yaml"]), &slo); err != nil || !equalJSON(t, slo, everything()["sloConfig"]) {
		t.Errorf("slo.yaml %q (%v): want the sloConfig value", cfg.Data["slo.yaml"], err)
	}
	if _, err := sloconfig.Parse([]byte(cfg.Data["slo.yaml"]), "slo.yaml"); err != nil {
		t.Errorf("the agent's parser rejects the rendered slo.yaml: %v", err)
	}
}

func TestRenderRejectsBadValues(t *testing.T) {
	for _, c := range []struct {
		values map[string]any
		want   string
	}{
		{map[string]any{"mode": map[string]any{"default": "enforcing"}}, `mode.default "enforcing"`},
		{map[string]any{"hostNetwork": true, "hostPort": 9817, "port": 9900}, "hostPort 9817"},
		{map[string]any{"service": map[string]any{"enabled": false}, "prometheus": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}}, "service.enabled"},
	} {
		_, err := render(t, c.values)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("values %v: error %v, want one containing %q", c.values, err, c.want)
		}
	}
}

// Every key of values.yaml is in the chart's README.md, itself or through
// a documented parent (a map documented as a whole, such as resources).
func TestValuesDocumented(t *testing.T) {
	dir := filepath.Join(repoRoot(t), ChartDir)
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	documented := func(path string) bool {
		for p := path; p != ""; {
			if bytes.Contains(readme, []byte("`"+p+"`")) {
				return true
			}
			i := strings.LastIndexByte(p, '.')
			if i < 0 {
				break
			}
			p = p[:i]
		}
		return false
	}
	var walk func(prefix string, m map[string]any)
	n := 0
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := prefix + k
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && !documented(path) {
				walk(path+".", sub)
				continue
			}
			n++
			if !documented(path) {
				t.Errorf("values.yaml key %s is not in the chart's README.md", path)
			}
		}
	}
	walk("", values)
	if n < 20 {
		t.Errorf("checked only %d keys of values.yaml", n)
	}
}
