package helmchart

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
)

// The chart's RBAC, installed in a real API server, lets the agent's
// service account make exactly the requests the agent makes (its node's
// pods, the SLOPolicies, its own Node by name) and refuses the rest.
func TestRBACAllowsTheAgentsRequestsOnly(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx := context.Background()
	cluster.CreateNamespaces(t, releaseNamespace)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{"scx-slo.io/mode": "enforce"}}}
	if err := cluster.Client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	var sa string
	for _, o := range mustRender(t, nil) {
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
	as := rest.CopyConfig(cluster.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + releaseNamespace + ":" + sa}
	c, err := dynamic.NewForConfig(as)
	if err != nil {
		t.Fatal(err)
	}
	pods := c.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"})
	nodes := c.Resource(schema.GroupVersionResource{Version: "v1", Resource: "nodes"})
	policies := c.Resource(schema.GroupVersionResource{Group: "scx-slo.io", Version: "v1alpha1", Resource: "slopolicies"})
	onNode := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", "node-a").String()}
	thisNode := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "node-a").String()}

	allowed := map[string]func() error{
		"list pods on its node":  func() error { _, err := pods.List(ctx, onNode); return err },
		"watch pods on its node": func() error { return watchOnce(pods.Watch(ctx, onNode)) },
		"list SLOPolicies":       func() error { _, err := policies.List(ctx, metav1.ListOptions{}); return err },
		"watch SLOPolicies":      func() error { return watchOnce(policies.Watch(ctx, metav1.ListOptions{})) },
		"get its node": func() error {
			n, err := nodes.Get(ctx, "node-a", metav1.GetOptions{})
			if err == nil && n.GetLabels()["scx-slo.io/mode"] != "enforce" {
				t.Errorf("the node's labels read as %v", n.GetLabels())
			}
			return err
		},
		"watch its node": func() error { return watchOnce(nodes.Watch(ctx, thisNode)) },
	}
	for what, do := range allowed {
		if err := do(); err != nil {
			t.Errorf("the agent's account may not %s: %v", what, err)
		}
	}
	denied := map[string]func() error{
		"list nodes": func() error { _, err := nodes.List(ctx, metav1.ListOptions{}); return err },
		"delete a pod": func() error {
			return pods.Namespace(releaseNamespace).Delete(ctx, "x", metav1.DeleteOptions{})
		},
		"label a node": func() error {
			_, err := nodes.Patch(ctx, "node-a", "application/merge-patch+json", []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		},
		"read secrets": func() error {
			_, err := c.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).List(ctx, metav1.ListOptions{})
			return err
		},
		"delete an SLOPolicy": func() error {
			return policies.Namespace(releaseNamespace).Delete(ctx, "x", metav1.DeleteOptions{})
		},
	}
	for what, do := range denied {
		if err := do(); !apierrors.IsForbidden(err) {
			t.Errorf("the agent's account may %s (error %v, want forbidden)", what, err)
		}
	}
}

// watchOnce opens a watch and closes it: the authorizer answers when it
// is opened.
func watchOnce(w watch.Interface, err error) error {
	if err != nil {
		return err
	}
	w.Stop()
	return nil
}
