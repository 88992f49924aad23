package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/nodestatus"
	"github.com/scx-slo/scx-slo/internal/overload"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

func randomID(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// kubePod is one pod of the test: its API object and its real cgroups.
type kubePod struct {
	name, container string
	annotations     map[string]string
	labels          map[string]string
	qos             corev1.PodQOSClass
	// layout makes the pod's cgroup directories under root (the test's
	// parent) from the pod UID and the container ID and returns the
	// container's cgroup and the one its workload runs in.
	layout func(root, uid, id string) (ctr string, run string, dirs []string)

	uid, id, ctrPath, runPath string
	dirs                      []string
	work                      *exportertest.Workload
}

// systemdBurstable is the kubelet's systemd driver with containerd
// (kubelet pkg/kubelet/cm/cgroup_manager_linux.go, containerd's
// "cri-containerd-<id>.scope"); the workload runs in a child cgroup of the
// container, which belongs to it.
func systemdBurstable(root, uid, id string) (string, string, []string) {
	u := strings.ReplaceAll(uid, "-", "_")
	pod := root + "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + u + ".slice"
	ctr := pod + "/cri-containerd-" + id + ".scope"
	return ctr, ctr + "/sub", []string{root + "/kubepods.slice", root + "/kubepods.slice/kubepods-burstable.slice", pod, ctr, ctr + "/sub"}
}

// systemdGuaranteed: a guaranteed pod's slice sits directly under
// kubepods.slice; CRI-O puts its conmon monitor in a sibling scope that is
// no container.
func systemdGuaranteed(root, uid, id string) (string, string, []string) {
	pod := root + "/kubepods.slice/kubepods-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"
	ctr := pod + "/crio-" + id + ".scope"
	return ctr, ctr, []string{root + "/kubepods.slice", pod, pod + "/crio-conmon-" + id + ".scope", ctr}
}

// cgroupfsBestEffort is the kubelet's cgroupfs driver: kubepods/<qos>/pod<uid>/<id>.
func cgroupfsBestEffort(root, uid, id string) (string, string, []string) {
	pod := root + "/kubepods/besteffort/pod" + uid
	ctr := pod + "/" + id
	return ctr, ctr, []string{root + "/kubepods", root + "/kubepods/besteffort", pod, ctr}
}

// TestKubernetesAgent runs the real agent against a real kube-apiserver
// and etcd and this machine's real cgroups: pods in the systemd and
// cgroupfs layouts with real workloads in their containers' cgroups get
// their SLOs by precedence (annotation over SLOPolicy over the node's
// file) in the BPF slos map and pod labels on their series; an invalid
// annotation is counted with the pod named; /overload answers for a pod;
// editing a policy reaches the running pod it applies to; deleting a pod
// and its cgroups clears its map entries and series; and a change of the
// node's mode label restarts the agent.
func TestKubernetesAgent(t *testing.T) {
	exportertest.RequireRoot(t)
	needs.BPFFS(t, "/sys/fs/bpf")
	for _, hier := range []string{"v2", "v1"} {
		t.Run(hier, func(t *testing.T) { testKubernetesAgent(t, hier) })
	}
}

func testKubernetesAgent(t *testing.T, hier string) {
	cluster := kubetest.Start(t)
	ctx := context.Background()
	c := cluster.Client
	cg := exportertest.NewCgroups(t, hier)
	nodeName := fmt.Sprintf("node-%s-%d", hier, time.Now().UnixNano()%1e6)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"scx-slo.io/mode": "observe"}}}
	must(t, c.Create(ctx, node))
	cluster.CreateNamespaces(t, "shop")
	policy := &v1alpha1.SLOPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: v1alpha1.SLOPolicySpec{
			Selector:      metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			LatencyBudget: "4ms", Importance: 200, Target: "0.95",
		},
	}
	must(t, c.Create(ctx, policy))

	pods := []*kubePod{
		// annotation over policy (and over the file)
		{name: "anno", container: "api", labels: map[string]string{"app": "web"}, annotations: map[string]string{"scx-slo.io/latency-budget": "3ms"}, qos: corev1.PodQOSBurstable, layout: systemdBurstable},
		// policy over the file
		{name: "pol", container: "api", labels: map[string]string{"app": "web"}, qos: corev1.PodQOSGuaranteed, layout: systemdGuaranteed},
		// the file; its invalid annotation is counted, not applied
		{name: "plain", container: "batch", annotations: map[string]string{"scx-slo.io/latency-budget": "2"}, qos: corev1.PodQOSBestEffort, layout: cgroupfsBestEffort},
	}
	made := map[string]bool{}
	for _, p := range pods {
		obj := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: p.name, Labels: p.labels, Annotations: p.annotations},
			Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{
				Name: p.container, Image: "example/app", Resources: resourcesFor(p.qos),
			}}},
		}
		must(t, c.Create(ctx, obj))
		p.uid, p.id = string(obj.UID), randomID(t)
		p.ctrPath, p.runPath, p.dirs = p.layout(cg.Parent, p.uid, p.id)
		for _, d := range p.dirs {
			if !made[d] { // kubepods.slice and the QoS slices are shared
				cg.Make(t, strings.TrimPrefix(d, cg.Parent+"/"))
				made[d] = true
			}
		}
		obj.Status = corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: p.qos, ContainerStatuses: []corev1.ContainerStatus{{
			Name: p.container, Image: "example/app", ImageID: "example/app@sha256:" + strings.Repeat("0", 64),
			ContainerID: "containerd://" + p.id, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		}}}
		must(t, c.Status().Update(ctx, obj))
		p.work = cg.StartWorkload(t, p.runPath, "probe", 1)
	}

	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: "+cg.Parent+"/**\n    latencyBudget: 5ms\n")
	pins := needs.BPFFSDir(t, "scx-slo-kube-test")
	e := exportertest.Start(t, "--kubernetes", "--kubernetes.kubeconfig="+cluster.Kubeconfig(t), "--kubernetes.node-name="+nodeName,
		"--cgroup.hierarchy="+hier, "--slo.config-file="+cfg, "--overload.pin-dir="+pins, "--slo.resync-interval=200ms")

	budgets := map[string]time.Duration{"anno": 3 * time.Millisecond, "pol": 4 * time.Millisecond, "plain": 5 * time.Millisecond}
	sources := map[string]string{"anno": "annotation", "pol": "policy:shop/web", "plain": "file"}
	slosMap := func() *ebpf.Map {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pins, overload.SLOsPin), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("opening the pinned slos map: %v\n%s", err, e.Log())
		}
		return m
	}
	idOf := func(p string) uint64 {
		id, err := cgroupfs.ID(cg.H.Dir(p))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	var why string
	applied := func() bool {
		m := slosMap()
		defer m.Close()
		f := e.Scrape(t)
		for _, p := range pods {
			// The container's cgroup and the child its workload runs in.
			for _, path := range []string{p.ctrPath, p.runPath} {
				var entry slomaps.Entry
				if err := m.Lookup(idOf(path), &entry); err != nil || entry.BudgetNs != uint64(budgets[p.name]) {
					why = fmt.Sprintf("%s: slos entry of %s: %+v %v, want budget %v", p.name, path, entry, err, budgets[p.name])
					return false
				}
				want := map[string]string{"cgroup": path, "namespace": "shop", "pod": p.name, "container": p.container}
				if v, ok := f.Value("scx_slo_budget_seconds", want); !ok || v != budgets[p.name].Seconds() {
					why = fmt.Sprintf("%s: scx_slo_budget_seconds%v = %v (%v)", p.name, want, v, ok)
					return false
				}
			}
			// Its wakeups are measured under its pod's labels.
			want := map[string]string{"cgroup": p.runPath, "namespace": "shop", "pod": p.name, "container": p.container}
			if v, ok := f.Value("scx_slo_deadlines_total", want); !ok || v < 1 {
				why = fmt.Sprintf("%s: no deadlines judged yet for %v", p.name, want)
				return false
			}
		}
		var st nodestatus.Status
		if _, body, err := e.Get("/status"); err != nil || json.Unmarshal(body, &st) != nil {
			why = fmt.Sprintf("/status: %v", err)
			return false
		}
		for _, p := range pods {
			found := false
			for _, row := range st.Cgroups {
				if row.Path == p.ctrPath {
					found = row.Source == sources[p.name] && row.Pod == "shop/"+p.name && row.Container == p.container
				}
			}
			if !found {
				why = fmt.Sprintf("/status has no row for %s from %s in pod shop/%s: %+v", p.ctrPath, sources[p.name], p.name, st.Cgroups)
				return false
			}
		}
		if v, ok := f.Value("scx_slo_kubernetes_slo_problems", map[string]string{"namespace": "shop", "pod": "plain", "kind": "invalid_annotation"}); !ok || v != 1 {
			why = "the invalid annotation of shop/plain is not counted"
			return false
		}
		if v, _ := f.Value("scx_slo_kubernetes_pods", nil); v != float64(len(pods)) {
			why = fmt.Sprintf("scx_slo_kubernetes_pods = %v, want %d", v, len(pods))
			return false
		}
		return true
	}
	began := time.Now()
	if !exportertest.Eventually(ctx, 30*time.Second, applied) {
		t.Fatalf("after 30s: %s\n%s", why, e.Log())
	}
	t.Logf("SLOs applied %v after the agent listened", time.Since(began).Round(time.Millisecond))
	// Every Kubernetes-only metric the docs list is exported.
	f := e.Scrape(t)
	for _, name := range kubeMetrics(t, "README.md") {
		if _, ok := f[name]; !ok {
			t.Errorf("documented Kubernetes metric %s not exported", name)
		}
	}
	if !strings.Contains(e.Log(), "shop/plain") {
		t.Errorf("the invalid annotation was not logged with the pod named:\n%s", e.Log())
	}

	// /overload and the status view take a pod.
	_, body, err := e.Get("/overload?pod=shop/anno")
	must(t, err)
	var states []overloadState
	if err := json.Unmarshal(body, &states); err != nil || len(states) == 0 {
		t.Fatalf("/overload?pod=shop/anno: %v %s", err, body)
	}
	// The pod's SLO cgroups: the container's (and its child) from the
	// annotation, and the pod-level slice, which the file's glob covers.
	ctrs := 0
	podDir := pods[0].ctrPath[:strings.LastIndex(pods[0].ctrPath, "/")]
	for _, s := range states {
		switch {
		case s.Pod != "shop/anno" || !strings.HasPrefix(s.Cgroup, podDir):
			t.Errorf("/overload?pod=shop/anno answered %+v", s)
		case strings.HasPrefix(s.Cgroup, pods[0].ctrPath) && s.Container == "api":
			ctrs++
		}
	}
	if ctrs != 2 {
		t.Errorf("/overload?pod=shop/anno: %d cgroups of container api, want 2 (it and its child): %+v", ctrs, states)
	}
	out, err := runStatus(t, e, "shop/pol")
	if err != nil || !strings.Contains(out, pods[1].ctrPath) || strings.Contains(out, pods[0].ctrPath) || !strings.Contains(out, "policy:shop/web") {
		t.Errorf("scx-slo status shop/pol: %v\n%s", err, out)
	}

	// Editing the SLOPolicy reaches the running pod it gives its SLO to:
	// its slos entries, budget series and /status row follow the new spec,
	// while the pod whose annotation wins keeps its budget.
	began = time.Now()
	must(t, c.Get(ctx, client.ObjectKeyFromObject(policy), policy))
	policy.Spec.LatencyBudget, policy.Spec.Importance, policy.Spec.Target = "6ms", 300, "0.9"
	must(t, c.Update(ctx, policy))
	want := slomaps.NewEntry(uint64(6*time.Millisecond), 0.9, 300, 0)
	pol, anno := pods[1], pods[0]
	followed := func() bool {
		m := slosMap()
		defer m.Close()
		for _, path := range []string{pol.ctrPath, pol.runPath} {
			var entry slomaps.Entry
			if err := m.Lookup(idOf(path), &entry); err != nil ||
				entry.BudgetNs != want.BudgetNs || entry.Importance != want.Importance || entry.AllowedMiss != want.AllowedMiss {
				why = fmt.Sprintf("slos entry of %s: %+v %v, want budget, importance and allowed miss of %+v", path, entry, err, want)
				return false
			}
		}
		var entry slomaps.Entry
		if err := m.Lookup(idOf(anno.ctrPath), &entry); err != nil || entry.BudgetNs != uint64(budgets[anno.name]) {
			why = fmt.Sprintf("slos entry of the annotated pod's %s: %+v %v, want budget %v", anno.ctrPath, entry, err, budgets[anno.name])
			return false
		}
		f := e.Scrape(t)
		labels := map[string]string{"cgroup": pol.ctrPath, "namespace": "shop", "pod": pol.name, "container": pol.container}
		if v, ok := f.Value("scx_slo_budget_seconds", labels); !ok || v != 0.006 {
			why = fmt.Sprintf("scx_slo_budget_seconds%v = %v (%v), want 0.006", labels, v, ok)
			return false
		}
		var st nodestatus.Status
		if _, body, err := e.Get("/status"); err != nil || json.Unmarshal(body, &st) != nil {
			why = fmt.Sprintf("/status: %v", err)
			return false
		}
		for _, row := range st.Cgroups {
			if row.Path == pol.ctrPath {
				if row.Source != "policy:shop/web" || row.Budget != 0.006 || row.Target != 0.9 {
					why = fmt.Sprintf("/status row of %s: %+v, want policy:shop/web, 6ms, 0.9", pol.ctrPath, row)
					return false
				}
				return true
			}
		}
		why = fmt.Sprintf("/status has no row for %s: %+v", pol.ctrPath, st.Cgroups)
		return false
	}
	if !exportertest.Eventually(ctx, 30*time.Second, followed) {
		t.Fatalf("after editing SLOPolicy shop/web: %s\n%s", why, e.Log())
	}
	t.Logf("the policy edit reached pod %s %v after the update", pol.name, time.Since(began).Round(time.Millisecond))

	// The pod goes, then its cgroups: its entries leave the map and its
	// series the scrape.
	gone := pods[1]
	began = time.Now()
	goneIDs := []uint64{idOf(gone.ctrPath)}
	must(t, c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: gone.name}}, client.GracePeriodSeconds(0)))
	gone.work.Stop()
	for i := len(gone.dirs) - 1; i >= 0; i-- {
		if strings.HasSuffix(gone.dirs[i], ".slice") && strings.Count(gone.dirs[i], "/") <= strings.Count(cg.Parent, "/")+1 {
			continue // kubepods.slice is shared
		}
		must(t, cg.Remove(gone.dirs[i]))
	}
	cleared := func() bool {
		m := slosMap()
		defer m.Close()
		for _, id := range goneIDs {
			var entry slomaps.Entry
			if m.Lookup(id, &entry) == nil {
				why = fmt.Sprintf("cgroup %d of the deleted pod still in the slos map", id)
				return false
			}
		}
		f := e.Scrape(t)
		for _, name := range []string{"scx_slo_budget_seconds", "scx_slo_runqueue_latency_seconds"} {
			if len(f.Find(name, map[string]string{"pod": gone.name})) > 0 {
				why = name + " still has a series of the deleted pod"
				return false
			}
		}
		if v, _ := f.Value("scx_slo_kubernetes_pods", nil); v != float64(len(pods)-1) {
			why = fmt.Sprintf("scx_slo_kubernetes_pods = %v after the delete", v)
			return false
		}
		return true
	}
	if !exportertest.Eventually(ctx, 15*time.Second, cleared) {
		t.Fatalf("after deleting %s: %s\n%s", gone.name, why, e.Log())
	}
	t.Logf("pod %s gone from the map and the scrape %v after its delete", gone.name, time.Since(began).Round(time.Millisecond))

	// Relabelling the node restarts the agent (the DaemonSet brings it back
	// in the new mode); it exits cleanly.
	must(t, c.Get(ctx, client.ObjectKey{Name: nodeName}, node))
	node.Labels["scx-slo.io/mode"] = "off"
	must(t, c.Update(ctx, node))
	err, exited := e.Wait(20 * time.Second)
	if !exited || err != nil || !strings.Contains(e.Log(), `changed from \"observe\" to \"off\"`) {
		t.Fatalf("after relabelling the node: exited %v, err %v\n%s", exited, err, e.Log())
	}
	// And starts in mode off: no BPF, only the exporter's own metrics.
	e2 := exportertest.Start(t, "--kubernetes", "--kubernetes.kubeconfig="+cluster.Kubeconfig(t), "--kubernetes.node-name="+nodeName,
		"--cgroup.hierarchy="+hier, "--overload.pin-dir=")
	f = e2.Scrape(t)
	if v, _ := f.Value("scx_slo_mode", map[string]string{"mode": "off"}); v != 1 {
		t.Errorf("scx_slo_mode{mode=off} = %v on a node labelled off\n%s", v, e2.Log())
	}
	if _, ok := f["scx_slo_runqueue_latency_seconds"]; ok {
		t.Errorf("mode off still exports run-queue latency")
	}
	e2.Stop(t)
}

// resourcesFor gives a container the resources that make its pod's QoS
// class qos (the API server computes status.qosClass from them and keeps
// it immutable).
func resourcesFor(qos corev1.PodQOSClass) corev1.ResourceRequirements {
	r := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	switch qos {
	case corev1.PodQOSGuaranteed:
		return corev1.ResourceRequirements{Requests: r, Limits: r}
	case corev1.PodQOSBurstable:
		return corev1.ResourceRequirements{Requests: r}
	}
	return corev1.ResourceRequirements{}
}

// runStatus runs `scx-slo status <target>` against e.
func runStatus(t *testing.T, e *exportertest.Exporter, target string) (string, error) {
	out, err := exec.Command(exportertest.Binary(t), "status", "--address="+e.URL, target).CombinedOutput()
	return string(out), err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Bad Kubernetes flags are refused before anything starts, naming the
// flag and the value.
func TestKubernetesFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kubernetes", "--kubernetes.node-name="}, "--kubernetes.node-name is empty"},
		{[]string{"--kubernetes", "--kubernetes.node-name=n1", "--kubernetes.default-mode=enforcing"}, `--kubernetes.default-mode="enforcing"`},
		{[]string{"--kubernetes", "--kubernetes.node-name=n1", "--kubernetes.sync-timeout=0s"}, "--kubernetes.sync-timeout=0s"},
		{[]string{"--kubernetes", "--kubernetes.node-name=n1", "--kubernetes.kubeconfig=/nonexistent/kubeconfig"}, `--kubernetes.kubeconfig="/nonexistent/kubeconfig"`},
	} {
		cmd := exec.Command(exportertest.Binary(t), append(tc.args, "--web.listen-address=127.0.0.1:0", "--overload.pin-dir=", "--no-collector.runqueue", "--no-collector.slo")...)
		cmd.Env = append(os.Environ(), "NODE_NAME=")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: %v, want an error naming %s:\n%s", tc.args, err, tc.want, out)
		}
	}
}
