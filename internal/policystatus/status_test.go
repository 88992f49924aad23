package policystatus

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond; the limit only bounds a broken run on a busy host.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWhy(t, what, nil, cond)
}

// waitForWhy is waitFor that prints *why (set by cond) when it gives up.
func waitForWhy(t *testing.T, what string, why *string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			if why != nil {
				t.Fatalf("timed out waiting for %s: %s", what, *why)
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replica is one webhook pod's controller and election.
type replica struct {
	e      *Election
	cancel context.CancelFunc
	done   chan struct{}
}

// startReplica starts one; with agents set it also reads attainment.
func startReplica(t *testing.T, cluster *kubetest.Cluster, id string, agents *Agents) *replica {
	t.Helper()
	c, err := New(cluster.Config, func(msg string, kv ...any) { t.Log(append([]any{id, msg}, kv...)...) })
	must(t, err)
	if agents != nil {
		c.ReadAttainment(*agents)
	}
	e, err := NewElection(cluster.Config, "scx-slo", "scx-slo-policy-status", id, testLease, 200*time.Millisecond)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{e: e, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		elected := make(chan struct{})
		go func() {
			defer close(elected)
			e.Run(ctx)
		}()
		_ = c.Run(ctx, e.Leading, 100*time.Millisecond)
		<-elected // as `scx-slo webhook` does: the lease is given up first
	}()
	t.Cleanup(r.stop)
	return r
}

// testLease is the replicas' lease duration: a stopped leader that did
// not give the lease up holds the others off this long.
const testLease = 6 * time.Second

// stop ends the replica once it has released its lease.
func (r *replica) stop() {
	r.cancel()
	<-r.done
}

func TestPolicyStatusAtTheAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	c := cluster.Client
	ctx := context.Background()
	cluster.CreateNamespaces(t, "scx-slo", "shop", "quiet")
	policy := func(name string, prio int32, match map[string]string) *v1alpha1.SLOPolicy {
		return &v1alpha1.SLOPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{MatchLabels: match}, LatencyBudget: "2ms", Priority: prio}}
	}
	bad := policy("bad", 5, nil)
	bad.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Sometimes", Values: []string{"x"}}}
	for _, p := range []*v1alpha1.SLOPolicy{
		policy("checkout", 1, map[string]string{"app": "checkout"}),
		policy("tie-a", 0, map[string]string{"app": "web"}), policy("tie-b", 0, map[string]string{"tier": "front"}),
		bad,
	} {
		must(t, c.Create(ctx, p))
	}
	// The same bad selector in a namespace without pods: nothing is
	// resolved there, yet the policy is just as invalid.
	alone := bad.DeepCopy()
	alone.ObjectMeta = metav1.ObjectMeta{Namespace: "quiet", Name: "bad-alone"}
	must(t, c.Create(ctx, alone))
	pod := func(name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
	}
	for _, p := range []*corev1.Pod{
		pod("checkout-1", map[string]string{"app": "checkout"}), pod("checkout-2", map[string]string{"app": "checkout"}),
		pod("web-1", map[string]string{"app": "web", "tier": "front"}), pod("web-2", map[string]string{"app": "web"}),
	} {
		must(t, c.Create(ctx, p))
	}

	a, b := startReplica(t, cluster, "a", nil), startReplica(t, cluster, "b", nil)
	waitFor(t, "exactly one leader", func() bool { return a.e.Leading() != b.e.Leading() })

	get := func(name string) *v1alpha1.SLOPolicy {
		var p v1alpha1.SLOPolicy
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: name}, &p))
		return &p
	}
	cond := func(p *v1alpha1.SLOPolicy, typ string) metav1.Condition {
		if c := meta.FindStatusCondition(p.Status.Conditions, typ); c != nil {
			return *c
		}
		return metav1.Condition{}
	}
	waitFor(t, "checkout's status", func() bool {
		p := get("checkout")
		return p.Status.MatchedPods == 2 && p.Status.ObservedGeneration == p.Generation && cond(p, "Ready").Status == metav1.ConditionTrue
	})
	waitFor(t, "the tie", func() bool {
		pa, pb := get("tie-a"), get("tie-b")
		// web-2 is tie-a's alone; web-1 is matched by both at priority 0.
		return pa.Status.MatchedPods == 1 && pb.Status.MatchedPods == 0 &&
			cond(pa, "Conflict").Status == metav1.ConditionTrue && strings.Contains(cond(pa, "Conflict").Message, "shop/tie-b") &&
			cond(pb, "Conflict").Status == metav1.ConditionTrue && cond(pa, "Ready").Status == metav1.ConditionTrue
	})
	isInvalid := func(p *v1alpha1.SLOPolicy) bool {
		return cond(p, "Invalid").Status == metav1.ConditionTrue && strings.Contains(cond(p, "Invalid").Message, `spec.selector: `) &&
			strings.Contains(cond(p, "Invalid").Message, "Sometimes") && cond(p, "Ready").Status == metav1.ConditionFalse
	}
	waitFor(t, "the invalid policy", func() bool { return isInvalid(get("bad")) })
	var why string
	waitForWhy(t, "the invalid policy without pods", &why, func() bool {
		var p v1alpha1.SLOPolicy
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "quiet", Name: "bad-alone"}, &p))
		why = fmt.Sprintf("observedGeneration %d of %d, conditions %+v", p.Status.ObservedGeneration, p.Generation, p.Status.Conditions)
		return p.Status.ObservedGeneration == p.Generation && isInvalid(&p)
	})

	// The leader goes away; the other replica takes over and keeps the
	// status current.
	leader, other := a, b
	if b.e.Leading() {
		leader, other = b, a
	}
	stopped := time.Now()
	leader.stop()
	waitFor(t, "the other replica to lead", other.e.Leading)
	// A released lease is taken at the other's next try (every 200 ms);
	// an unreleased one only after testLease. Half of it leaves a busy
	// host room.
	if took := time.Since(stopped); took > testLease/2 {
		t.Errorf("the other replica led %v after the leader stopped; want well under the %v lease", took.Round(time.Millisecond), testLease)
	}
	must(t, c.Create(ctx, pod("checkout-3", map[string]string{"app": "checkout"})))
	waitFor(t, "checkout's status after the failover", func() bool { return get("checkout").Status.MatchedPods == 3 })

	// A spec change bumps the generation; the status follows it.
	p := get("checkout")
	p.Spec.LatencyBudget = "3ms"
	must(t, c.Update(ctx, p))
	waitFor(t, "observedGeneration", func() bool { p := get("checkout"); return p.Status.ObservedGeneration == p.Generation })
}

// A policy is judged on its own, not only through the pods it meets: a
// value the shared parser rejects makes it Invalid (Ready=False) even when
// no pod matches. (The CRD rejects such values at the API server, so this
// case is built here rather than through it; an object from an older CRD
// looks like this.)
func TestInvalidWithoutPods(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec v1alpha1.SLOPolicySpec
		want string
	}{
		{"target", v1alpha1.SLOPolicySpec{LatencyBudget: "2ms", Target: "99%"},
			`spec.target: "99%": write a fraction, not a percentage (e.g. 0.99 for 99%)`},
		{"budget", v1alpha1.SLOPolicySpec{LatencyBudget: "2"},
			`spec.latencyBudget: "2": a plain number is ambiguous`},
		{"importance", v1alpha1.SLOPolicySpec{LatencyBudget: "2ms", Importance: 1001},
			`spec.importance: "1001": must be an integer from 1 to 1000`},
		{"selector", v1alpha1.SLOPolicySpec{LatencyBudget: "2ms", Selector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpIn}}}}, `spec.selector: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := v1alpha1.SLOPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p", Generation: 2}, Spec: tc.spec}
			// One pod in the namespace that the policy does not match.
			other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "other", Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
			p.Spec.Selector.MatchLabels = map[string]string{"app": "checkout"}
			for _, pods := range [][]*corev1.Pod{nil, {other}} {
				v := verdicts(pods, []v1alpha1.SLOPolicy{p})["shop/p"]
				st := desired(&p, v, nil, false)
				inv, ready := meta.FindStatusCondition(st.Conditions, "Invalid"), meta.FindStatusCondition(st.Conditions, "Ready")
				if inv == nil || inv.Status != metav1.ConditionTrue || !strings.Contains(inv.Message, tc.want) {
					t.Errorf("%d pods: Invalid = %+v, want True with %q", len(pods), inv, tc.want)
				}
				if ready == nil || ready.Status != metav1.ConditionFalse {
					t.Errorf("%d pods: Ready = %+v, want False", len(pods), ready)
				}
				if st.MatchedPods != 0 || st.ObservedGeneration != 2 {
					t.Errorf("%d pods: matched %d, observedGeneration %d", len(pods), st.MatchedPods, st.ObservedGeneration)
				}
			}
		})
	}
}
