package slopolicy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
)

func pod(ann map[string]string, ctrs ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-1",
		Labels: map[string]string{"app": "checkout", "tier": "api"}, Annotations: ann}}
	for _, c := range ctrs {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
	return p
}

func policy(name string, prio int32, budget string, match map[string]string, ctrs ...string) v1alpha1.SLOPolicy {
	return v1alpha1.SLOPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{MatchLabels: match},
			Containers: ctrs, LatencyBudget: budget, Priority: prio, Importance: 100, Target: "0.99"}}
}

var app = map[string]string{"app": "checkout"}

func TestResolvePrecedence(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name     string
		pod      *corev1.Pod
		policies []v1alpha1.SLOPolicy
		want     []Container
		problems []string
	}{
		{"nothing applies", pod(nil, "api"), nil,
			[]Container{{Name: "api", Source: SourceNone}}, nil},
		{"pod annotation for every container", pod(map[string]string{AnnotationLatencyBudget: "2ms", AnnotationImportance: "500", AnnotationTarget: "0.999"}, "api", "proxy"), nil,
			[]Container{
				{Name: "api", Source: SourceAnnotation, SLO: SLO{2 * ms, 500, 0.999}},
				{Name: "proxy", Source: SourceAnnotation, SLO: SLO{2 * ms, 500, 0.999}}}, nil},
		{"container annotation beats pod-wide, defaults fill the rest", pod(map[string]string{
			AnnotationLatencyBudget: "2ms", AnnotationLatencyBudget + ".proxy": "10ms", AnnotationTarget + ".proxy": "0.9"}, "api", "proxy"), nil,
			[]Container{
				{Name: "api", Source: SourceAnnotation, SLO: SLO{2 * ms, 100, 0.99}},
				{Name: "proxy", Source: SourceAnnotation, SLO: SLO{10 * ms, 100, 0.9}}}, nil},
		{"annotation beats policy", pod(map[string]string{AnnotationLatencyBudget + ".api": "1ms"}, "api", "proxy"),
			[]v1alpha1.SLOPolicy{policy("p", 5, "3ms", app)},
			[]Container{
				{Name: "api", Source: SourceAnnotation, SLO: SLO{1 * ms, 100, 0.99}},
				{Name: "proxy", Source: SourcePolicy, SLO: SLO{3 * ms, 100, 0.99}, Policy: "shop/p"}}, nil},
		{"highest priority wins; containers list narrows", pod(nil, "api", "proxy"),
			[]v1alpha1.SLOPolicy{policy("low", 1, "9ms", app), policy("high", 7, "2ms", app, "api"), policy("other", 9, "1ms", map[string]string{"app": "cart"})},
			[]Container{
				{Name: "api", Source: SourcePolicy, SLO: SLO{2 * ms, 100, 0.99}, Policy: "shop/high"},
				{Name: "proxy", Source: SourcePolicy, SLO: SLO{9 * ms, 100, 0.99}, Policy: "shop/low"}}, nil},
		{"a tie is reported, never resolved", pod(nil, "api"),
			[]v1alpha1.SLOPolicy{policy("b", 3, "2ms", app), policy("a", 3, "4ms", map[string]string{"tier": "api"}), policy("c", 1, "8ms", app)},
			[]Container{{Name: "api", Source: SourceNone, Tie: []string{"shop/a", "shop/b"}}}, nil},
		{"other namespace never matches", pod(nil, "api"),
			[]v1alpha1.SLOPolicy{func() v1alpha1.SLOPolicy { p := policy("p", 1, "2ms", nil); p.Namespace = "other"; return p }()},
			[]Container{{Name: "api", Source: SourceNone}}, nil},
		{"empty selector matches the whole namespace; unset values default", pod(nil, "api"),
			[]v1alpha1.SLOPolicy{func() v1alpha1.SLOPolicy {
				p := policy("all", 0, "5ms", nil)
				p.Spec.Importance, p.Spec.Target = 0, ""
				return p
			}()},
			[]Container{{Name: "api", Source: SourcePolicy, SLO: SLO{5 * ms, 100, 0.99}, Policy: "shop/all"}}, nil},
		{"invalid annotation is reported and falls through to the policy", pod(map[string]string{AnnotationLatencyBudget: "2", AnnotationTarget: "99%"}, "api"),
			[]v1alpha1.SLOPolicy{policy("p", 0, "3ms", app)},
			[]Container{{Name: "api", Source: SourcePolicy, SLO: SLO{3 * ms, 100, 0.99}, Policy: "shop/p"}},
			[]string{
				`pod shop/checkout-1: scx-slo.io/latency-budget: "2": a plain number is ambiguous; add a unit: ns, us, ms or s (e.g. 2ms, 500us, 1.5ms)`,
				`pod shop/checkout-1: scx-slo.io/target: "99%": write a fraction, not a percentage (e.g. 0.99 for 99%)`}},
		{"misspelt and misdirected annotations are reported once", pod(map[string]string{"scx-slo.io/budget": "2ms", AnnotationImportance + ".nope": "5", AnnotationImportance: "7"}, "api", "proxy"), nil,
			[]Container{{Name: "api", Source: SourceNone}, {Name: "proxy", Source: SourceNone}},
			[]string{
				`pod shop/checkout-1: scx-slo.io/budget: "2ms": unknown annotation; known: scx-slo.io/latency-budget, scx-slo.io/importance, scx-slo.io/target (each optionally .<container>)`,
				`pod shop/checkout-1: scx-slo.io/importance.nope: "5": the pod has no app container "nope"`,
				`pod shop/checkout-1: scx-slo.io/importance: "7": set without scx-slo.io/latency-budget; an annotation SLO needs a budget`}},
		{"keys the webhook filled yield to the live policy; the pod's own still win", pod(map[string]string{
			AnnotationLatencyBudget + ".api": "9ms", AnnotationImportance + ".api": "100", AnnotationTarget + ".api": "0.99",
			AnnotationLatencyBudget + ".proxy": "1ms", AnnotationPolicy: "p",
			AnnotationFilled: "latency-budget.api,importance.api,target.api"}, "api", "proxy"),
			[]v1alpha1.SLOPolicy{policy("p", 0, "3ms", app)},
			[]Container{
				{Name: "api", Source: SourcePolicy, SLO: SLO{3 * ms, 100, 0.99}, Policy: "shop/p"},
				{Name: "proxy", Source: SourceAnnotation, SLO: SLO{1 * ms, 100, 0.99}}}, nil},
		{"invalid policy is reported and skipped", pod(nil, "api"),
			[]v1alpha1.SLOPolicy{policy("bad", 9, "1h", app), policy("ok", 1, "2ms", app),
				func() v1alpha1.SLOPolicy {
					p := policy("badsel", 9, "2ms", nil)
					p.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Sometimes"}}
					return p
				}()},
			[]Container{{Name: "api", Source: SourcePolicy, SLO: SLO{2 * ms, 100, 0.99}, Policy: "shop/ok"}},
			[]string{
				`SLOPolicy shop/bad (for pod shop/checkout-1): spec.latencyBudget: "1h": must be at most 10s`,
				`SLOPolicy shop/badsel (for pod shop/checkout-1): spec.selector: `}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Resolve(tc.pod, tc.policies)
			if !reflect.DeepEqual(got.Containers, tc.want) {
				t.Errorf("containers:\n got %+v\nwant %+v", got.Containers, tc.want)
			}
			if len(got.Problems) != len(tc.problems) {
				t.Fatalf("problems: got %q, want %q", got.Problems, tc.problems)
			}
			for i, p := range got.Problems {
				if !strings.HasPrefix(p.Error(), tc.problems[i]) {
					t.Errorf("problem %d:\n got %s\nwant %s", i, p.Error(), tc.problems[i])
				}
			}
		})
	}
}

// Check finds, without any pod, the problems Resolve reports for a pod the
// policy matches, in the same words.
func TestCheckAgreesWithResolve(t *testing.T) {
	badsel := policy("badsel", 0, "2ms", app)
	badsel.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Sometimes"}}
	badvals := policy("badvals", 0, "1h", app)
	badvals.Spec.Importance, badvals.Spec.Target = 1001, "99%"
	for _, p := range []v1alpha1.SLOPolicy{policy("ok", 0, "2ms", app), badsel, badvals} {
		got := Check(&p)
		want := Resolve(pod(nil, "api"), []v1alpha1.SLOPolicy{p}).Problems
		for i := range want {
			want[i].Pod = ""
		}
		if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
			t.Errorf("%s: Check says %q; Resolve says %q", p.Name, got, want)
		}
	}
	if n := len(Check(&badvals)); n != 3 {
		t.Errorf("badvals: %d problems, want 3 (budget, importance, target)", n)
	}
}
