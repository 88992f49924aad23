// Package policystatus writes SLOPolicy status: how many pods each policy
// gives an SLO to, and whether it is Ready, in Conflict (ties with another
// at equal priority for some container) or Invalid, all decided by
// slopolicy.Resolve as the agents decide; and the policy's SLO attainment,
// summed from the node agents' counters (attainment.go). One replica
// writes, chosen by a Lease (election.go); docs/kubernetes.md describes it.
package policystatus

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/slopolicy"
)

// Controller follows pods and SLOPolicies and writes policy status.
type Controller struct {
	pods, policies cache.SharedIndexInformer
	client         rest.Interface // scx-slo.io/v1alpha1
	log            func(msg string, kv ...any)
	dirty          atomic.Bool
	agents         *agentReader // nil: attainment is not read
}

func restClient(cfg *rest.Config, scheme *runtime.Scheme, gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion, c.APIPath = &gv, apiPath
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = "scx-slo-policy-status"
	}
	return rest.RESTClientFor(c)
}

// New prepares the informers (REST clients for core/v1 and scx-slo.io
// only, no generated clientset).
func New(cfg *rest.Config, log func(msg string, kv ...any)) (*Controller, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	sc, err := restClient(cfg, scheme, v1alpha1.GroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	core, err := restClient(cfg, scheme, corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	byNS := cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
	c := &Controller{
		pods: cache.NewSharedIndexInformer(cache.NewListWatchFromClient(core, "pods", metav1.NamespaceAll, fields.Everything()),
			&corev1.Pod{}, 0, byNS),
		policies: cache.NewSharedIndexInformer(cache.NewListWatchFromClient(sc, "slopolicies", metav1.NamespaceAll, fields.Everything()),
			&v1alpha1.SLOPolicy{}, 0, byNS),
		client: sc, log: log,
	}
	mark := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.dirty.Store(true) },
		UpdateFunc: func(any, any) { c.dirty.Store(true) },
		DeleteFunc: func(any) { c.dirty.Store(true) },
	}
	for _, inf := range []cache.SharedIndexInformer{c.pods, c.policies} {
		if _, err := inf.AddEventHandler(mark); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// ReadAttainment makes the controller read each policy's attainment from
// the node agents a (call before Run).
func (c *Controller) ReadAttainment(a Agents) {
	c.agents = newAgentReader(a, c.pods)
}

// Run follows the cluster until ctx ends; while leading() it writes the
// status of every policy whose status is out of date, at most once per
// interval (a batch of pod events is one pass).
func (c *Controller) Run(ctx context.Context, leading func() bool, interval time.Duration) error {
	go c.pods.RunWithContext(ctx)
	go c.policies.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), c.pods.HasSynced, c.policies.HasSynced) {
		return ctx.Err()
	}
	c.dirty.Store(true)
	if c.agents != nil {
		// Readings run beside the status writes and never hold them up:
		// a pass uses the last finished reading.
		go c.agents.run(ctx, leading, func() { c.dirty.Store(true) })
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	wasLeading := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		lead := leading()
		if lead && !wasLeading {
			c.dirty.Store(true) // a new leader checks everything once
		}
		wasLeading = lead
		if lead && c.dirty.Swap(false) {
			if err := c.syncAll(ctx); err != nil {
				c.dirty.Store(true) // retry next tick
				c.log("writing SLOPolicy status", "err", err)
			}
		}
	}
}

// verdict is what the pods say about one policy.
type verdict struct {
	matched  int32
	tiesWith map[string]bool
	invalid  []string
	ctrs     []placed // the containers it gives its SLO to
}

// verdicts decides, for every policy of the namespace, from its pods.
func verdicts(pods []*corev1.Pod, policies []v1alpha1.SLOPolicy) map[string]*verdict {
	out := map[string]*verdict{}
	for i := range policies {
		p := &policies[i]
		v := &verdict{tiesWith: map[string]bool{}}
		// Judged on its own too: resolving pods meets a bad value only
		// where the policy matches a pod, and a bad selector only where
		// the namespace has pods, but it is invalid either way.
		for _, pr := range slopolicy.Check(p) {
			v.invalid = append(v.invalid, problemText(pr))
		}
		out[p.Namespace+"/"+p.Name] = v
	}
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		res := slopolicy.Resolve(pod, policies)
		counted := map[string]bool{}
		for _, ctr := range res.Containers {
			if ctr.Source == slopolicy.SourcePolicy {
				v := out[ctr.Policy]
				v.ctrs = append(v.ctrs, placed{pod.Spec.NodeName, pod.Namespace + "/" + pod.Name, ctr.Name})
				if !counted[ctr.Policy] {
					counted[ctr.Policy] = true
					v.matched++
				}
			}
			for _, a := range ctr.Tie {
				for _, b := range ctr.Tie {
					if a != b {
						out[a].tiesWith[b] = true
					}
				}
			}
		}
		for _, pr := range res.Problems {
			if v := out[pr.Policy]; pr.Policy != "" && v != nil {
				v.invalid = append(v.invalid, problemText(pr))
			}
		}
	}
	return out
}

// problemText is a policy's problem as its Invalid condition states it:
// field, value and the parser's words, without the pod.
func problemText(pr slopolicy.Problem) string {
	return fmt.Sprintf("%s: %q: %s", pr.Field, pr.Value, pr.Msg)
}

// desired is the status of p given its verdict and, when read is set, the
// agents' last readings (unset: attainment is not read, or not yet, and
// its fields stay as they are); conditions keep their transition times
// when unchanged.
func desired(p *v1alpha1.SLOPolicy, v *verdict, last map[string]nodeReading, read bool) v1alpha1.SLOPolicyStatus {
	st := *p.Status.DeepCopy()
	st.ObservedGeneration, st.MatchedPods = p.Generation, v.matched
	set := func(typ string, on bool, reason, msg string) {
		s := metav1.ConditionFalse
		if on {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: p.Generation})
	}
	invalid := uniq(v.invalid)
	if len(invalid) > 0 {
		set(v1alpha1.ConditionInvalid, true, "InvalidValue", strings.Join(invalid, "; "))
		set(v1alpha1.ConditionReady, false, "InvalidValue", "the policy is skipped: "+strings.Join(invalid, "; "))
	} else {
		set(v1alpha1.ConditionInvalid, false, "Valid", "")
		set(v1alpha1.ConditionReady, true, "Valid", fmt.Sprintf("gives its SLO to %d pods", v.matched))
	}
	if ties := keys(v.tiesWith); len(ties) > 0 {
		set(v1alpha1.ConditionConflict, true, "EqualPriority", "ties at equal priority with "+strings.Join(ties, ", ")+"; neither applies to the containers both match")
	} else {
		set(v1alpha1.ConditionConflict, false, "NoTie", "")
	}
	if read {
		at := sum(p.Namespace+"/"+p.Name, v.ctrs, last)
		st.Deadlines, st.Misses = clamp(at.deadlines), clamp(at.misses)
		st.Attainment = percent(at.deadlines, at.misses)
		st.UnreachableNodes = int32(len(at.unreachable))
		switch {
		case len(at.unreachable) > 0:
			set(v1alpha1.ConditionAttainmentComplete, false, "AgentsUnreachable", unreachableMessage(at))
		case at.pending > 0:
			set(v1alpha1.ConditionAttainmentComplete, false, "ReadingPending", fmt.Sprintf("the first reading of %d of the %d nodes running its pods is under way", at.pending, at.nodes))
		case at.nodes == 0:
			set(v1alpha1.ConditionAttainmentComplete, true, "NoPodsRunning", "no pod it gives its SLO to is on a node")
		default:
			set(v1alpha1.ConditionAttainmentComplete, true, "AllAgentsAnswered", fmt.Sprintf("counted from the agents of all %d nodes running its pods", at.nodes))
		}
	}
	return st
}

func (c *Controller) syncAll(ctx context.Context) error {
	var firstErr error
	var last map[string]nodeReading
	read := false
	if c.agents != nil {
		// Before the first reading the counters already in status stay
		// (a new leader does not zero them).
		last, read = c.agents.readings()
	}
	need := map[string]bool{}
	for _, ns := range c.namespaces() {
		pols := c.policiesIn(ns)
		byPolicy := verdicts(c.podsIn(ns), pols)
		for i := range pols {
			p := &pols[i]
			v := byPolicy[p.Namespace+"/"+p.Name]
			for _, ctr := range v.ctrs {
				if ctr.node != "" {
					need[ctr.node] = true
				}
			}
			want := desired(p, v, last, read)
			if reflect.DeepEqual(want, p.Status) {
				continue
			}
			upd := p.DeepCopy()
			upd.Status = want
			err := c.client.Put().Namespace(p.Namespace).Resource("slopolicies").Name(p.Name).SubResource("status").
				Body(upd).Do(ctx).Error()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("SLOPolicy %s/%s: %w", p.Namespace, p.Name, err)
			}
		}
	}
	if c.agents != nil {
		c.agents.setNeed(need)
	}
	return firstErr
}

func (c *Controller) namespaces() []string {
	seen := map[string]bool{}
	for _, o := range c.policies.GetStore().List() {
		seen[o.(*v1alpha1.SLOPolicy).Namespace] = true
	}
	return keys(seen)
}

func (c *Controller) policiesIn(ns string) []v1alpha1.SLOPolicy {
	objs, _ := c.policies.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	out := make([]v1alpha1.SLOPolicy, 0, len(objs))
	for _, o := range objs {
		out = append(out, *o.(*v1alpha1.SLOPolicy))
	}
	return out
}

func (c *Controller) podsIn(ns string) []*corev1.Pod {
	objs, _ := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func uniq(s []string) []string {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return keys(m)
}
