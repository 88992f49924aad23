package admission

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/slopolicy"
)

func fillPod(ann map[string]string, ctrs ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Labels: map[string]string{"app": "a"}, Annotations: ann}}
	for _, c := range ctrs {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	return p
}

func fillPolicy(name, budget string, prio int32, ctrs ...string) v1alpha1.SLOPolicy {
	return v1alpha1.SLOPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			Containers: ctrs, LatencyBudget: budget, Priority: prio}}
}

// The cases envtest does not reach; each result is also read back by
// Resolve, which must give the policy's SLO.
func TestFill(t *testing.T) {
	long := strings.Repeat("c", 49) // latency-budget.<49> is 64 characters
	cases := []struct {
		name     string
		pod      *corev1.Pod
		policies []v1alpha1.SLOPolicy
		want     map[string]string
	}{
		{"two policies: per-container keys", fillPod(nil, "api", "proxy"),
			[]v1alpha1.SLOPolicy{fillPolicy("all", "2ms", 0), fillPolicy("px", "1500us", 1, "proxy")},
			map[string]string{"scx-slo.io/latency-budget.api": "2ms", "scx-slo.io/importance.api": "100", "scx-slo.io/target.api": "0.99",
				"scx-slo.io/latency-budget.proxy": "1500us", "scx-slo.io/importance.proxy": "100", "scx-slo.io/target.proxy": "0.99",
				"scx-slo.io/policy": "all,px", "scx-slo.io/filled": "latency-budget.api,importance.api,target.api,latency-budget.proxy,importance.proxy,target.proxy"}},
		{"a pod-wide key of its own: the pod is in charge", fillPod(map[string]string{"scx-slo.io/importance": "7"}, "api"),
			[]v1alpha1.SLOPolicy{fillPolicy("all", "2ms", 0)}, nil},
		{"a tie fills nothing", fillPod(nil, "api"),
			[]v1alpha1.SLOPolicy{fillPolicy("a", "2ms", 0), fillPolicy("b", "3ms", 0)}, nil},
		{"a name too long for a key is left to the agent", fillPod(nil, "api", long),
			[]v1alpha1.SLOPolicy{fillPolicy("all", "2ms", 0), fillPolicy("px", "1ms", 1, long)},
			map[string]string{"scx-slo.io/latency-budget.api": "2ms", "scx-slo.io/importance.api": "100", "scx-slo.io/target.api": "0.99",
				"scx-slo.io/policy": "all", "scx-slo.io/filled": "latency-budget.api,importance.api,target.api"}},
		{"sub-microsecond budget", fillPod(nil, "api"), []v1alpha1.SLOPolicy{fillPolicy("all", "1500ns", 0)},
			map[string]string{"scx-slo.io/latency-budget": "1500ns", "scx-slo.io/importance": "100", "scx-slo.io/target": "0.99",
				"scx-slo.io/policy": "all", "scx-slo.io/filled": "latency-budget,importance,target"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Fill(tc.pod, tc.policies)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
			if got == nil {
				return
			}
			// The filled values read back exactly and are valid.
			filled := tc.pod.DeepCopy()
			for k, v := range got {
				if filled.Annotations == nil {
					filled.Annotations = map[string]string{}
				}
				filled.Annotations[k] = v
			}
			if msg := Invalid(filled); msg != "" {
				t.Errorf("filled pod is invalid: %s", msg)
			}
			before, after := slopolicy.Resolve(tc.pod, tc.policies), slopolicy.Resolve(filled, tc.policies)
			if fmt.Sprint(before.Containers) != fmt.Sprint(after.Containers) {
				t.Errorf("filling changed the decision:\nbefore %+v\nafter  %+v", before.Containers, after.Containers)
			}
		})
	}
}
