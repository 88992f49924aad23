package kubenode

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
)

// policyWatch follows the SLOPolicies of every namespace (pods on the
// node can be in any of them).
type policyWatch struct {
	informer cache.SharedIndexInformer
}

func newPolicyWatch(cfg *rest.Config) (*policyWatch, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := restClient(cfg, scheme, v1alpha1.GroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	inf := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(c, "slopolicies", metav1.NamespaceAll, fields.Everything()),
		&v1alpha1.SLOPolicy{}, resync, cache.Indexers{})
	return &policyWatch{informer: inf}, nil
}

// byNamespace lists the policies grouped by namespace.
func (p *policyWatch) byNamespace() map[string][]v1alpha1.SLOPolicy {
	out := map[string][]v1alpha1.SLOPolicy{}
	for _, o := range p.informer.GetStore().List() {
		if pol, ok := o.(*v1alpha1.SLOPolicy); ok {
			out[pol.Namespace] = append(out[pol.Namespace], *pol)
		}
	}
	return out
}
