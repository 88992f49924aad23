package policystatus

import (
	"context"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// Election picks one writer among the replicas with a coordination.k8s.io
// Lease: the holder renews it every retry; another replica takes it only
// once it has gone unrenewed for the lease duration. client-go's
// leaderelection needs the generated clientset, which the shipped binary
// does not link; this is the same protocol over a REST client.
type Election struct {
	client           rest.Interface
	namespace, name  string
	identity         string
	duration, period time.Duration
	leading          atomic.Bool
	renewed          time.Time // last successful renewal, local clock
}

// NewElection prepares the lease namespace/name for identity (the pod's
// name). duration is how long a silent leader keeps the lease; period how
// often replicas try.
func NewElection(cfg *rest.Config, namespace, name, identity string, duration, period time.Duration) (*Election, error) {
	scheme := runtime.NewScheme()
	if err := coordinationv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := restClient(cfg, scheme, coordinationv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	return &Election{client: c, namespace: namespace, name: name, identity: identity, duration: duration, period: period}, nil
}

// Leading reports whether this replica holds the lease.
func (e *Election) Leading() bool { return e.leading.Load() }

// Run tries every period until ctx ends, then gives the lease up so
// another replica takes over at once.
func (e *Election) Run(ctx context.Context) {
	t := time.NewTicker(e.period)
	defer t.Stop()
	for {
		e.try(ctx)
		select {
		case <-ctx.Done():
			e.release()
			return
		case <-t.C:
		}
	}
}

func (e *Election) try(ctx context.Context) {
	now := metav1.NowMicro()
	secs := int32(e.duration / time.Second)
	var l coordinationv1.Lease
	err := e.client.Get().Namespace(e.namespace).Resource("leases").Name(e.name).Do(ctx).Into(&l)
	switch {
	case apierrors.IsNotFound(err):
		l = coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: e.namespace, Name: e.name},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &e.identity, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now}}
		err = e.client.Post().Namespace(e.namespace).Resource("leases").Body(&l).Do(ctx).Error()
		e.settle(err == nil)
		return
	case err != nil:
		e.settle(false)
		return
	}
	mine := l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == e.identity
	expired := l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" || l.Spec.RenewTime == nil ||
		l.Spec.LeaseDurationSeconds == nil ||
		l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second).Before(time.Now())
	if !mine && !expired {
		e.leading.Store(false) // another replica holds it
		return
	}
	if !mine {
		l.Spec.AcquireTime = &now
		n := int32(0)
		if l.Spec.LeaseTransitions != nil {
			n = *l.Spec.LeaseTransitions
		}
		n++
		l.Spec.LeaseTransitions = &n
	}
	l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &e.identity, &now, &secs
	// The update carries the resourceVersion read: two replicas racing
	// for an expired lease cannot both win.
	err = e.client.Put().Namespace(e.namespace).Resource("leases").Name(e.name).Body(&l).Do(ctx).Error()
	e.settle(err == nil)
}

// settle records a try: a failed renewal keeps leadership only while the
// last success is younger than the lease duration minus one period, so
// this replica stops writing before another may start.
func (e *Election) settle(ok bool) {
	if ok {
		e.renewed = time.Now()
		e.leading.Store(true)
		return
	}
	if e.leading.Load() && time.Since(e.renewed) < e.duration-e.period {
		return
	}
	e.leading.Store(false)
}

// release empties the holder if this replica holds the lease.
func (e *Election) release() {
	if !e.leading.Swap(false) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var l coordinationv1.Lease
	if err := e.client.Get().Namespace(e.namespace).Resource("leases").Name(e.name).Do(ctx).Into(&l); err != nil {
		return
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != e.identity {
		return
	}
	empty := ""
	l.Spec.HolderIdentity = &empty
	_ = e.client.Put().Namespace(e.namespace).Resource("leases").Name(e.name).Body(&l).Do(ctx).Error()
}
