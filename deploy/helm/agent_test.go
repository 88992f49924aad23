package helmchart

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// The real agent started the way the chart's DaemonSet starts it (its
// args, NODE_NAME, only its capabilities) and talking to a real API server
// as the chart's service account under the chart's RBAC, comes up in the
// mode its Node's label names: here observe, over a chart default of off,
// with the tracer loaded.
func TestAgentRunsWithTheChartsPodSpec(t *testing.T) {
	cluster := kubetest.Start(t)
	needs.Root(t)
	pins := needs.BPFFSDir(t, "scx-slo-chart-agent")
	ctx := context.Background()

	cluster.CreateNamespaces(t, releaseNamespace)
	nodeName := fmt.Sprintf("chart-node-%d", time.Now().UnixNano())
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"scx-slo.io/mode": "observe"}}}
	if err := cluster.Client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}

	objs := mustRender(t, map[string]any{"mode": map[string]any{"default": "off"}})
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", &ds)
	var sa string
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount":
			sa = o.GetName()
			fallthrough
		case "ClusterRole", "ClusterRoleBinding":
			if err := cluster.Client.Create(ctx, o); err != nil {
				t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}

	// The pod's identity: the admin's credentials, impersonating the
	// service account, so every request is authorised as the agent's.
	kubeconfig := impersonatingKubeconfig(t, cluster.Config, sa)

	c := ds.Spec.Template.Spec.Containers[0]
	// What the kubelet does with the container: expand $(NODE_NAME) from
	// the downward API. The listen address is the test's own loopback port.
	var args []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--web.listen-address=") {
			continue
		}
		args = append(args, strings.ReplaceAll(a, "$(NODE_NAME)", nodeName))
	}
	args = append(args, "--kubernetes.kubeconfig="+kubeconfig, "--overload.pin-dir="+pins, "--enforce.pin-dir="+pins+"-enforce")
	t.Logf("args from the chart: %q", c.Args)

	a := startWithCaps(t, c.SecurityContext.Capabilities.Add, args...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err, exited := a.wait(250 * time.Millisecond); exited {
			t.Fatalf("agent exited: %v\n%s", err, a.log.String())
		}
		fams, err := a.scrape()
		if err == nil {
			observe, _ := fams.Value("scx_slo_mode", map[string]string{"mode": "observe"})
			tracked, _ := fams.Value("scx_slo_runqueue_tracked_cgroups", nil)
			if observe == 1 && tracked > 0 {
				t.Logf("agent in observe mode (node label over the chart's default off), tracking %v cgroups", tracked)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not in observe mode with its tracer within 60 s (last scrape error %v)\n%s", err, a.log.String())
		}
	}
}
