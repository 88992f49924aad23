package kubenode

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/scx-slo/scx-slo/internal/sloconfig"
)

// BenchmarkOwnerLookup: what Kubernetes mode adds to a pass per cgroup it
// asks about (parse the path, look the pod and container up), on a node
// of 250 pods with two containers each plus system cgroups, against the
// file's own per-cgroup cost in the same run (a 10-glob config's Match
// over the same paths). slosync asks only about new cgroups, and about
// all of them once per change of pods or policies.
//
//	go test -run '^$' -bench OwnerLookup ./internal/kubenode
func BenchmarkOwnerLookup(b *testing.B) {
	const pods = 250
	var objs []*corev1.Pod
	var paths []string
	for i := range pods {
		uid := fmt.Sprintf("%08x-1111-2222-3333-%012x", i, i)
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("p%d", i), UID: types.UID(uid),
			Annotations: map[string]string{"scx-slo.io/latency-budget": "2ms"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}}
		slice := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"
		paths = append(paths, slice)
		for j, c := range p.Spec.Containers {
			id := fmt.Sprintf("%060x%02x%02x", i, i%256, j)
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, ContainerID: "containerd://" + id})
			paths = append(paths, slice+"/cri-containerd-"+id+".scope")
		}
		objs = append(objs, p)
	}
	for i := range 100 {
		paths = append(paths, fmt.Sprintf("/system.slice/unit%d.service", i))
	}
	idx := buildIndex(objs, func(p *corev1.Pod) (map[string]containerSLO, []Problem) { return resolve(p, nil) })
	var sb strings.Builder
	sb.WriteString("slos:\n")
	for i := range 10 {
		fmt.Fprintf(&sb, "  - cgroup: '/kubepods.slice/*/*pod%d*.slice/*'\n    latencyBudget: 2ms\n", i)
	}
	cfg, err := sloconfig.Parse([]byte(sb.String()), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var tOwner, tMatch time.Duration
	owned := 0
	for b.Loop() {
		t0 := time.Now()
		for _, p := range paths {
			if uid, id, ok := parsePath(p); ok {
				if _, ok := idx.owner(uid, id); ok {
					owned++
				}
			}
		}
		t1 := time.Now()
		for _, p := range paths {
			cfg.Match(p)
		}
		tOwner, tMatch = tOwner+t1.Sub(t0), tMatch+time.Since(t1)
	}
	if owned == 0 {
		b.Fatal("no path was owned")
	}
	n := float64(b.N * len(paths))
	b.ReportMetric(float64(tOwner.Nanoseconds())/n, "owner-ns/cgroup")
	b.ReportMetric(float64(tMatch.Nanoseconds())/n, "match-ns/cgroup")
	b.ReportMetric(float64(tOwner)/float64(tMatch), "owner/match")
}
