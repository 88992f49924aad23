package kubenode

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

// The index maps cgroup paths of the kubelet's layouts to pods and
// containers, with the SLO Resolve gives each container: a container
// whose status is not written yet still belongs to its pod, a pod not on
// the node to nobody, and an invalid annotation or a tie is a problem
// naming the pod.
func TestIndexOwner(t *testing.T) {
	const uid, ctr, side = "0c3e2a5b-9f1d-4c8e-a7b6-1234567890ab", "4f1c2d3e4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0", "aa1c2d3e4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff1"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-0", UID: types.UID(uid), Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{"scx-slo.io/latency-budget.api": "2ms"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api"}, {Name: "sidecar"}, {Name: "late"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "api", ContainerID: "containerd://" + ctr}, {Name: "sidecar", ContainerID: "containerd://" + side},
		}},
	}
	bad := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "bad", UID: "11111111-2222-3333-4444-555555555555", Annotations: map[string]string{"scx-slo.io/latency-budget": "2"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x"}}},
	}
	policies := []v1alpha1.SLOPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "a"}, Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, LatencyBudget: "7ms", Importance: 100, Target: "0.9", Containers: []string{"sidecar"}}},
		// b and c tie for container late: neither applies, a problem says so
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "b"}, Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, LatencyBudget: "8ms", Priority: 5, Containers: []string{"late"}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "c"}, Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{}, LatencyBudget: "9ms", Priority: 5, Containers: []string{"late"}}},
	}
	idx := buildIndex([]*corev1.Pod{pod, bad}, func(p *corev1.Pod) (map[string]containerSLO, []Problem) { return resolve(p, policies) })
	owner := func(path string) (slosync.Owner, bool) {
		uid, id, ok := parsePath(path)
		if !ok {
			return slosync.Owner{}, false
		}
		return idx.owner(uid, id)
	}
	u := strings.ReplaceAll(uid, "-", "_")
	for _, tc := range []struct {
		path      string
		ok        bool
		container string
		budget    time.Duration
		source    string
	}{
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + u + ".slice/cri-containerd-" + ctr + ".scope", true, "api", 2 * time.Millisecond, "annotation"},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + u + ".slice/cri-containerd-" + ctr + ".scope/child", true, "api", 2 * time.Millisecond, "annotation"},
		{"/kubepods/burstable/pod" + uid + "/" + side, true, "sidecar", 7 * time.Millisecond, "policy:shop/a"},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + u + ".slice", true, "", 0, ""},
		{"/kubepods/burstable/pod" + uid + "/" + strings.Repeat("b", 64), true, "", 0, ""}, // status not written yet
		{"/kubepods/burstable/pod99999999-2222-3333-4444-555555555555/" + ctr, false, "", 0, ""},
		{"/system.slice/containerd.service", false, "", 0, ""},
	} {
		o, ok := owner(tc.path)
		if ok != tc.ok {
			t.Errorf("%s: owned %v, want %v", tc.path, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if o.Pod != (slosync.Pod{Namespace: "shop", Name: "checkout-0", Container: tc.container}) {
			t.Errorf("%s: pod %+v, want shop/checkout-0 container %q", tc.path, o.Pod, tc.container)
		}
		var budget time.Duration
		if o.SLO != nil {
			budget = o.SLO.LatencyBudget
		}
		if budget != tc.budget || o.Source != tc.source {
			t.Errorf("%s: SLO %v from %q, want %v from %q", tc.path, budget, o.Source, tc.budget, tc.source)
		}
	}
	want := map[string]bool{"shop/bad//" + ProblemAnnotation: true, "shop/checkout-0/late/" + ProblemPolicyTie: true}
	for _, p := range idx.problems {
		key := p.Pod.String() + "/" + p.Pod.Container + "/" + p.Kind
		if !want[key] {
			t.Errorf("unexpected problem %+v", p)
		}
		delete(want, key)
		if p.Kind == ProblemAnnotation && !strings.Contains(p.Message, `"2"`) {
			t.Errorf("the invalid annotation's message does not name the value: %s", p.Message)
		}
		if p.Kind == ProblemPolicyTie && !strings.Contains(p.Message, "shop/b, shop/c") {
			t.Errorf("the tie's message does not name both policies: %s", p.Message)
		}
	}
	for k := range want {
		t.Errorf("missing problem %s (have %+v)", k, idx.problems)
	}
}

func TestParseMode(t *testing.T) {
	for v, want := range map[string]Mode{"": ModeUnset, "off": ModeOff, "observe": ModeObserve, "enforce": ModeEnforce} {
		if m, err := ParseMode(v); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %q, %v", v, m, err)
		}
	}
	if _, err := ParseMode("enforcing"); err == nil || !strings.Contains(err.Error(), `scx-slo.io/mode="enforcing"`) {
		t.Errorf("ParseMode(enforcing): %v, want an error naming the label and value", err)
	}
}
