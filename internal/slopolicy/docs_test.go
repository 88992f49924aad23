package slopolicy

import (
	"os"
	"strings"
	"testing"
)

// docs/kubernetes.md must name the annotations Resolve reads and show only
// problem lines Resolve produces.
func TestDocs(t *testing.T) {
	data, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, a := range []string{AnnotationLatencyBudget, AnnotationImportance, AnnotationTarget} {
		if !strings.Contains(doc, "`"+a+"`") {
			t.Errorf("docs/kubernetes.md does not name %s", a)
		}
	}
	res := Resolve(pod(map[string]string{AnnotationLatencyBudget: "2", AnnotationImportance + ".nope": "5", "scx-slo.io/budget": "2ms"}, "api"), nil)
	produced := map[string]bool{}
	for _, p := range res.Problems {
		produced[p.Error()] = true
	}
	shown := 0
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "pod shop/") {
			shown++
			if !produced[line] {
				t.Errorf("docs show a problem Resolve does not produce: %s\nproduced: %q", line, res.Problems)
			}
		}
	}
	if shown < 3 {
		t.Errorf("found %d problem lines in docs/kubernetes.md; did its layout change?", shown)
	}
}
