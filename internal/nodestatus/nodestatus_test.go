package nodestatus

import (
	"bytes"
	"strings"
	"testing"
)

// Only keeps a pod's rows (every container) or a cgroup and its
// children; the table shows pod columns in Kubernetes mode.
func TestOnlyAndPodColumns(t *testing.T) {
	rows := []Cgroup{
		{Path: "/kubepods/pod1", Pod: "shop/a"},
		{Path: "/kubepods/pod1/c1", Pod: "shop/a", Container: "api", Source: "annotation", Budget: 0.002},
		{Path: "/kubepods/pod2/c1", Pod: "shop/b", Container: "api"},
		{Path: "/kubepods/pod10", Pod: "shop/c"},
		{Path: "/system.slice"},
	}
	for target, want := range map[string][]string{
		"shop/a":         {"/kubepods/pod1", "/kubepods/pod1/c1"},
		"/kubepods/pod1": {"/kubepods/pod1", "/kubepods/pod1/c1"}, // not pod10
		"/system.slice":  {"/system.slice"},
		"shop/none":      nil,
	} {
		s := &Status{Cgroups: append([]Cgroup(nil), rows...)}
		ok := s.Only(target)
		var got []string
		for _, c := range s.Cgroups {
			got = append(got, c.Path)
		}
		if ok != (len(want) > 0) || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("Only(%q) = %v %v, want %v", target, ok, got, want)
		}
	}
	for v, want := range map[string]bool{"shop/a": true, "/kubepods/pod1": false, "shop": false, "a/b/c": false, "/a": false} {
		if IsPodName(v) != want {
			t.Errorf("IsPodName(%q) = %v", v, !want)
		}
	}
	var b bytes.Buffer
	s := &Status{Kubernetes: &Kubernetes{Node: "n1", Pods: 3}, Cgroups: rows}
	if err := s.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kubernetes:  node n1, 3 pods, mode label unset", "POD", "shop/a", "annotation"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
