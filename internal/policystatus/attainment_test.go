package policystatus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		deadlines, misses uint64
		want              string
	}{
		{0, 0, ""},
		{1, 0, "100.00%"},
		{10000, 7, "99.93%"},
		{3, 1, "66.66%"},              // rounded down, never up
		{100000, 1, "99.99%"},         // 99.999% is not 100.00%
		{math.MaxUint64, 1, "99.99%"}, // no overflow
		{5, 5, "0.00%"},
		{5, 9, "0.00%"}, // more misses than deadlines cannot go negative
	} {
		if got := percent(tc.deadlines, tc.misses); got != tc.want {
			t.Errorf("percent(%d, %d) = %q, want %q", tc.deadlines, tc.misses, got, tc.want)
		}
	}
}

// sum counts a policy's containers on the nodes read, only under that
// policy's source, and tells unreachable and pending nodes apart.
func TestSum(t *testing.T) {
	const pol = "shop/checkout"
	last := map[string]nodeReading{
		"a": {counts: map[ctrKey]counts{
			{"shop/c-1", "app", "policy:" + pol}:  {deadlines: 100, misses: 3},
			{"shop/c-1", "side", "policy:" + pol}: {deadlines: 10, misses: 1},
			// The agent gave this container an SLO from another source:
			// judged against another budget, not counted.
			{"shop/c-2", "app", "annotation"}: {deadlines: 50, misses: 50},
		}},
		"b": {err: fmt.Errorf("timeout")},
	}
	ctrs := []placed{
		{"a", "shop/c-1", "app"}, {"a", "shop/c-1", "app"}, // counted once
		{"a", "shop/c-1", "side"}, {"a", "shop/c-2", "app"},
		{"b", "shop/c-3", "app"}, {"c", "shop/c-4", "app"},
		{"", "shop/c-5", "app"}, // not scheduled
	}
	at := sum(pol, ctrs, last)
	if at.deadlines != 110 || at.misses != 4 || at.nodes != 3 || at.pending != 1 || len(at.unreachable) != 1 || at.unreachable["b"] == nil {
		t.Errorf("sum = %+v; want 110 deadlines, 4 misses, 3 nodes, c pending, b unreachable", at)
	}
	if msg := unreachableMessage(at); !strings.Contains(msg, "1 of 3 nodes") || !strings.Contains(msg, "b: timeout") {
		t.Errorf("unreachableMessage = %q", msg)
	}
}

// silentAgent accepts connections on loopback and never answers: a node
// agent that hangs. It returns its port.
func silentAgent(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// TestAttainmentFromARealAgent runs the status controller against a real
// kube-apiserver and a real node agent in observe mode (the scx-slo
// binary, real BPF tracer, real cgroups with probes in them). On node-a
// the agent runs; node-b's agent accepts connections and never answers;
// node-c has no agent pod. The policy's counters in status equal the sum
// of the agent's own scx_slo_deadlines_total and
// scx_slo_deadline_misses_total over its pods there (not over a pod whose
// annotation wins over it), and the two nodes that did not answer are
// counted and named. While an agent hangs, the rest of the status is
// still written.
func TestAttainmentFromARealAgent(t *testing.T) {
	exportertest.RequireRoot(t)
	pins := needs.BPFFSDir(t, "scx-slo-attain-test")
	cluster := kubetest.Start(t)
	cluster.CreateNamespaces(t, "scx-slo", "shop")
	c := cluster.Client
	ctx := context.Background()
	cg := exportertest.NewCgroups(t, "v2")
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	nodeA, nodeB, nodeC := "node-a-"+suffix, "node-b-"+suffix, "node-c-"+suffix
	for _, n := range []string{nodeA, nodeB} {
		must(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"scx-slo.io/mode": "observe"}}}))
	}
	must(t, c.Create(ctx, &v1alpha1.SLOPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"},
		Spec: v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
			LatencyBudget: "50us", Target: "0.99"}}))

	// Pods with real cgroups (the kubelet's cgroupfs layout) on node-a;
	// the others exist only in the API server.
	type pod struct {
		name, node  string
		annotations map[string]string
		work        *exportertest.Workload
	}
	pods := []*pod{
		{name: "checkout-1", node: nodeA}, {name: "checkout-2", node: nodeA},
		{name: "anno", node: nodeA, annotations: map[string]string{"scx-slo.io/latency-budget": "3ms"}},
		{name: "checkout-3", node: nodeB}, {name: "checkout-4", node: nodeC},
	}
	made := map[string]bool{}
	for _, p := range pods {
		obj := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: p.name, Labels: map[string]string{"app": "checkout"}, Annotations: p.annotations},
			Spec: corev1.PodSpec{NodeName: p.node, Containers: []corev1.Container{{Name: "app", Image: "example/app"}}}}
		must(t, c.Create(ctx, obj))
		id := randomID(t)
		obj.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", Image: "example/app", ImageID: "example/app@sha256:" + strings.Repeat("0", 64),
			ContainerID: "containerd://" + id, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		}}}
		must(t, c.Status().Update(ctx, obj))
		if p.node != nodeA {
			continue
		}
		for _, d := range []string{"kubepods", "kubepods/besteffort", "kubepods/besteffort/pod" + string(obj.UID), "kubepods/besteffort/pod" + string(obj.UID) + "/" + id} {
			if !made[d] {
				cg.Make(t, d)
				made[d] = true
			}
		}
		p.work = cg.StartWorkload(t, cg.Parent+"/kubepods/besteffort/pod"+string(obj.UID)+"/"+id, "probe", 1)
	}

	agent := exportertest.Start(t, "--kubernetes", "--kubernetes.kubeconfig="+cluster.Kubeconfig(t), "--kubernetes.node-name="+nodeA,
		"--cgroup.hierarchy=v2", "--overload.pin-dir="+pins, "--slo.resync-interval=200ms")
	_, agentPort, err := net.SplitHostPort(agent.Addr)
	must(t, err)
	// The agents' pods, as the DaemonSet's would be: found by label, on
	// their node, at their pod IP and the port named metrics.
	for node, port := range map[string]string{nodeA: agentPort, nodeB: strconv.Itoa(silentAgent(t))} {
		n, _ := strconv.Atoi(port)
		obj := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "scx-slo", Name: "scx-slo-" + node, Labels: map[string]string{"app.kubernetes.io/name": "scx-slo"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "scx-slo", Image: "scx-slo",
				Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: int32(n)}}}}}}
		must(t, c.Create(ctx, obj))
		obj.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}}}
		must(t, c.Status().Update(ctx, obj))
	}

	get := func() *v1alpha1.SLOPolicy {
		var p v1alpha1.SLOPolicy
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "checkout"}, &p))
		return &p
	}
	agents := Agents{Namespace: "scx-slo", Selector: labels.SelectorFromSet(labels.Set{"app.kubernetes.io/name": "scx-slo"}), Port: "metrics", Interval: 300 * time.Millisecond}

	// A reading stuck on node-b's agent holds up nothing else.
	agents.Timeout = time.Hour
	stuck := startReplica(t, cluster, "stuck", &agents)
	waitFor(t, "matched pods while a reading hangs", func() bool {
		p := get()
		return p.Status.MatchedPods == 4 && p.Status.ObservedGeneration == p.Generation
	})
	if p := get(); p.Status.Attainment != "" || meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionAttainmentComplete) != nil {
		t.Fatalf("attainment written while the reading of node-b still hangs: %+v", p.Status)
	}
	stuck.stop()

	agents.Timeout = time.Second
	startReplica(t, cluster, "reader", &agents)
	// The agent's own counters, summed over the policy's pods on node-a.
	scraped := func(pods ...string) (deadlines, misses int64) {
		f := agent.Scrape(t)
		for _, name := range pods {
			for metric, into := range map[string]*int64{"scx_slo_deadlines_total": &deadlines, "scx_slo_deadline_misses_total": &misses} {
				for _, m := range f.Find(metric, map[string]string{"namespace": "shop", "pod": name}) {
					*into += int64(m.GetCounter().GetValue())
				}
			}
		}
		return deadlines, misses
	}
	var why string
	waitForWhy(t, "attainment from the running probes", &why, func() bool {
		p := get()
		d1, _ := scraped("checkout-1")
		d2, _ := scraped("checkout-2")
		da, _ := scraped("anno")
		why = fmt.Sprintf("status %+v; agent deadlines checkout-1 %d, checkout-2 %d, anno %d\n%s", p.Status, d1, d2, da, agent.Log())
		return d1 > 0 && d2 > 0 && da > 0 && p.Status.Attainment != "" && p.Status.Deadlines > 0
	})
	// Stop the probes: the counters stand still, and the status must
	// come to equal them exactly.
	for _, p := range pods {
		if p.work != nil {
			p.work.Stop()
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d, m := scraped("checkout-1", "checkout-2")
		st := get().Status
		want := percent(uint64(d), uint64(m))
		if st.Deadlines == d && st.Misses == m && st.Attainment == want {
			t.Logf("policy status: %d deadlines, %d misses, attainment %s; the agent's counters agree", d, m, want)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, the agent says %d deadlines, %d misses (%s)\n%s", st, d, m, want, agent.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := get().Status
	cond := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionAttainmentComplete)
	if st.UnreachableNodes != 2 || cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != "AgentsUnreachable" ||
		!strings.Contains(cond.Message, "2 of 3 nodes") || !strings.Contains(cond.Message, nodeB+": ") ||
		!strings.Contains(cond.Message, nodeC+": no running agent pod") {
		t.Errorf("unreachable nodes %d, condition %+v; want node-b (hangs) and node-c (no agent) named", st.UnreachableNodes, cond)
	}
	if st.MatchedPods != 4 {
		t.Errorf("matchedPods %d, want 4 (the annotated pod is not the policy's)", st.MatchedPods)
	}

	// node-b and node-c's pods go: every node running a matched pod
	// answers.
	for _, name := range []string{"checkout-3", "checkout-4"} {
		must(t, c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}, client.GracePeriodSeconds(0)))
	}
	waitFor(t, "AttainmentComplete", func() bool {
		st := get().Status
		cond := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionAttainmentComplete)
		return st.UnreachableNodes == 0 && cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason == "AllAgentsAnswered"
	})

	// `kubectl get slop` asks the API server for a Table; its columns come
	// from the CRD's printer columns.
	row := tableRow(t, cluster, "/apis/scx-slo.io/v1alpha1/namespaces/shop/slopolicies/checkout")
	st = get().Status
	t.Logf("kubectl get slop: %v", row)
	for col, want := range map[string]string{"Budget": "50us", "Matched": "2", "Attainment": st.Attainment} {
		if got, ok := row[col]; !ok || got != want {
			t.Errorf("kubectl get slop: column %s = %q (present %v), want %q; row %v", col, got, ok, want, row)
		}
	}
}

// tableRow asks the API server for path as a Table, as kubectl get does,
// and returns its one row by column name.
func tableRow(t *testing.T, cluster *kubetest.Cluster, path string) map[string]string {
	t.Helper()
	rc, err := rest.UnversionedRESTClientFor(&rest.Config{Host: cluster.Config.Host, APIPath: "/", TLSClientConfig: cluster.Config.TLSClientConfig,
		BearerToken: cluster.Config.BearerToken, ContentConfig: rest.ContentConfig{NegotiatedSerializer: cluster.Codecs()}})
	must(t, err)
	body, err := rc.Get().AbsPath(path).SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("%s as a Table: %v\n%.500s", path, err, body)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatalf("%s as a Table: %v\n%.500s", path, err, body)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("%s as a Table: %d rows", path, len(table.Rows))
	}
	out := map[string]string{}
	for i, col := range table.ColumnDefinitions {
		if i < len(table.Rows[0].Cells) {
			out[col.Name] = fmt.Sprint(table.Rows[0].Cells[i])
		}
	}
	return out
}

func randomID(t *testing.T) string {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	must(t, err)
	return hex.EncodeToString(b)
}
