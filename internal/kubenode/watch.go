package kubenode

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/scx-slo/scx-slo/internal/slosync"
)

// Options configures a Watcher.
type Options struct {
	Config   *rest.Config
	NodeName string
	// OnMode hears the node's mode label on the informer's first reading
	// and each time it changes; the caller compares with the mode it
	// started in (ReadMode).
	OnMode func(Mode)
	Logger log.Logger
}

// Watcher follows the node's pods, the SLOPolicies and the node's mode
// label, and answers slosync.Owners from them.
type Watcher struct {
	opts       Options
	core       rest.Interface
	informers  []cache.SharedIndexInformer
	pods, node cache.SharedIndexInformer
	policies   *policyWatch

	dirty   chan struct{}
	idx     atomic.Pointer[index]
	version atomic.Uint64
	mode    atomic.Value // Mode
	wg      sync.WaitGroup
	// reported are the problems last logged, so each is logged once.
	reported map[Problem]bool
}

// resync is how often informers replay their stores; the index only
// changes on real changes, so this is a safety net, not a poll.
const resync = 10 * time.Minute

// New prepares the informers; Start runs them.
func New(opts Options) (*Watcher, error) {
	if opts.NodeName == "" {
		return nil, errNoNodeName
	}
	if opts.Logger == nil {
		opts.Logger = log.NewNopLogger()
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	core, err := restClient(opts.Config, scheme, corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	w := &Watcher{opts: opts, core: core, dirty: make(chan struct{}, 1), reported: map[Problem]bool{}}
	w.idx.Store(&index{byUID: map[string]*podEntry{}, byName: map[string]string{}})
	onPod := fields.OneTermEqualSelector("spec.nodeName", opts.NodeName).String()
	w.pods = cache.NewSharedIndexInformer(
		cache.NewFilteredListWatchFromClient(core, "pods", metav1.NamespaceAll, func(o *metav1.ListOptions) { o.FieldSelector = onPod }),
		&corev1.Pod{}, resync, cache.Indexers{})
	w.node = cache.NewSharedIndexInformer(nodeListWatch(core, opts.NodeName), &corev1.Node{}, resync, cache.Indexers{})
	w.policies, err = newPolicyWatch(opts.Config)
	if err != nil {
		return nil, err
	}
	w.informers = []cache.SharedIndexInformer{w.pods, w.node, w.policies.informer}
	for _, inf := range []cache.SharedIndexInformer{w.pods, w.policies.informer} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { w.markDirty() },
			UpdateFunc: func(any, any) { w.markDirty() },
			DeleteFunc: func(any) { w.markDirty() },
		}); err != nil {
			return nil, err
		}
	}
	if _, err := w.node.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.nodeChanged(o) },
		UpdateFunc: func(_, o any) { w.nodeChanged(o) },
	}); err != nil {
		return nil, err
	}
	return w, nil
}

// nodeListWatch lists and watches only the agent's own Node; the list is
// a get, so RBAC needs only get and watch on nodes.
func nodeListWatch(core rest.Interface, name string) *cache.ListWatch {
	thisNode := fields.OneTermEqualSelector("metadata.name", name).String()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
			var n corev1.Node
			if err := core.Get().Resource("nodes").Name(name).Do(ctx).Into(&n); err != nil {
				return nil, err
			}
			return &corev1.NodeList{ListMeta: metav1.ListMeta{ResourceVersion: n.ResourceVersion}, Items: []corev1.Node{n}}, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector, o.Watch = thisNode, true
			return core.Get().Resource("nodes").VersionedParams(&o, metav1.ParameterCodec).Watch(ctx)
		},
	}
}

// restClient is a REST client for one API group version that knows only
// the types in scheme: the agent links no generated clientset.
func restClient(cfg *rest.Config, scheme *runtime.Scheme, gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = apiPath
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = "scx-slo"
	}
	return rest.RESTClientFor(c)
}

// ReadMode gets the node's mode label once, before the agent decides what
// to load.
func ReadMode(ctx context.Context, cfg *rest.Config, nodeName string) (Mode, error) {
	if nodeName == "" {
		return ModeUnset, errNoNodeName
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return ModeUnset, err
	}
	core, err := restClient(cfg, scheme, corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return ModeUnset, err
	}
	var node corev1.Node
	if err := core.Get().Resource("nodes").Name(nodeName).Do(ctx).Into(&node); err != nil {
		return ModeUnset, fmt.Errorf("reading node %q (--kubernetes.node-name): %w", nodeName, err)
	}
	return modeOf(node.Labels)
}

// Start runs the informers until ctx ends and returns once their first
// lists are in (or with an error after timeout); the index is built
// before it returns. Wait waits for them to stop.
func (w *Watcher) Start(ctx context.Context, timeout time.Duration) error {
	for _, inf := range w.informers {
		w.wg.Add(1)
		go func() { defer w.wg.Done(); inf.RunWithContext(ctx) }()
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var synced []cache.InformerSynced
	for _, inf := range w.informers {
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(sctx.Done(), synced...) {
		return fmt.Errorf("listing pods on node %q, SLOPolicies and the node itself took longer than %s (API server reachable? RBAC allows get/list/watch?)", w.opts.NodeName, timeout)
	}
	w.rebuild()
	w.wg.Add(1)
	go func() { defer w.wg.Done(); w.loop(ctx) }()
	return nil
}

// Wait returns once every informer and the index loop stopped (after the
// Start context ended).
func (w *Watcher) Wait() { w.wg.Wait() }

func (w *Watcher) markDirty() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// loop rebuilds the index after changes; a burst of events costs one
// rebuild.
func (w *Watcher) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.dirty:
			w.rebuild()
		}
	}
}

// rebuild makes a new index from the stores and bumps the version if it
// differs from the current one (slosync then re-asks every cgroup).
func (w *Watcher) rebuild() {
	var pods []*corev1.Pod
	for _, o := range w.pods.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	policies := w.policies.byNamespace()
	idx := buildIndex(pods, func(p *corev1.Pod) (map[string]containerSLO, []Problem) {
		return resolve(p, policies[p.Namespace])
	})
	old := w.idx.Load()
	if reflect.DeepEqual(old.byUID, idx.byUID) && reflect.DeepEqual(old.problems, idx.problems) {
		return
	}
	w.idx.Store(idx)
	w.version.Add(1)
	w.logProblems(idx.problems)
}

// logProblems logs each problem once, when it first appears.
func (w *Watcher) logProblems(ps []Problem) {
	now := make(map[Problem]bool, len(ps))
	for _, p := range ps {
		now[p] = true
		if !w.reported[p] {
			level.Warn(w.opts.Logger).Log("msg", "ignoring an SLO of a pod", "namespace", p.Pod.Namespace, "pod", p.Pod.Name, "container", p.Pod.Container, "kind", p.Kind, "err", p.Message)
		}
	}
	w.reported = now
}

// nodeChanged follows the mode label.
func (w *Watcher) nodeChanged(o any) {
	n, ok := o.(*corev1.Node)
	if !ok {
		return
	}
	m, err := modeOf(n.Labels)
	if err != nil {
		level.Warn(w.opts.Logger).Log("msg", "ignoring the node's mode label", "err", err)
		return
	}
	// Every reading goes to OnMode, the first included: the label may
	// have changed between ReadMode and this informer's first list.
	prev, seen := w.mode.Swap(m).(Mode)
	if (!seen || prev != m) && w.opts.OnMode != nil {
		w.opts.OnMode(m)
	}
}

// Mode is the node's mode label as last seen.
func (w *Watcher) Mode() Mode { m, _ := w.mode.Load().(Mode); return m }

// Version changes whenever an Owner answer may have (slosync.Owners).
func (w *Watcher) Version() uint64 { return w.version.Load() }

// Owner says which pod and container a cgroup belongs to, and its SLO
// from Kubernetes (slosync.Owners).
func (w *Watcher) Owner(path string) (slosync.Owner, bool) {
	uid, ctr, ok := parsePath(path)
	if !ok {
		return slosync.Owner{}, false
	}
	return w.idx.Load().owner(uid, ctr)
}

// Problems are the current problems, sorted by pod.
func (w *Watcher) Problems() []Problem {
	ps := append([]Problem(nil), w.idx.Load().problems...)
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Pod != b.Pod {
			return a.Pod.String()+"/"+a.Pod.Container < b.Pod.String()+"/"+b.Pod.Container
		}
		return a.Kind < b.Kind
	})
	return ps
}

// Pods is the number of pods on the node the agent knows of.
func (w *Watcher) Pods() int { return len(w.idx.Load().byUID) }

// HasPod reports whether "namespace/name" is a pod on this node.
func (w *Watcher) HasPod(namespacedName string) bool {
	_, ok := w.idx.Load().byName[namespacedName]
	return ok
}
