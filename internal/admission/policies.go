package admission

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
)

// PolicyCache follows every SLOPolicy with an informer, indexed by
// namespace, so an admission request costs no API call.
type PolicyCache struct {
	informer cache.SharedIndexInformer
}

// NewPolicyCache prepares the informer (a REST client for scx-slo.io
// only; no generated clientset).
func NewPolicyCache(cfg *rest.Config) (*PolicyCache, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	gv := v1alpha1.GroupVersion
	c.GroupVersion, c.APIPath = &gv, "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = "scx-slo-webhook"
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, err
	}
	inf := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(rc, "slopolicies", metav1.NamespaceAll, fields.Everything()),
		&v1alpha1.SLOPolicy{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	return &PolicyCache{informer: inf}, nil
}

// Start runs the informer until ctx ends and waits up to timeout for the
// first list.
func (p *PolicyCache) Start(ctx context.Context, timeout time.Duration) error {
	go p.informer.RunWithContext(ctx)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(wctx.Done(), p.informer.HasSynced) {
		return fmt.Errorf("no list of SLOPolicies within %s (is the CRD installed, may the service account list slopolicies.scx-slo.io?)", timeout)
	}
	return nil
}

// In returns the namespace's policies.
func (p *PolicyCache) In(namespace string) []v1alpha1.SLOPolicy {
	objs, _ := p.informer.GetIndexer().ByIndex(cache.NamespaceIndex, namespace)
	out := make([]v1alpha1.SLOPolicy, 0, len(objs))
	for _, o := range objs {
		if pol, ok := o.(*v1alpha1.SLOPolicy); ok {
			out = append(out, *pol)
		}
	}
	return out
}
