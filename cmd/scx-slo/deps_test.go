package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// The binaries that ship to nodes must not link the testbed (qemu
// launcher, apt client, load generators): ARCHITECTURE.md promises it.
// Nor client-go's generated clientset or controller-runtime: the
// Kubernetes mode uses REST clients for the two API groups it reads, and
// either would add megabytes to every node's binary.
func TestShippedBinariesLinkNoTestbed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, pkg := range []string{"./cmd/scx-slo", "./cmd/scx-slo-shed"} {
		cmd := exec.Command("go", "list", "-deps", pkg)
		cmd.Dir = exportertest.RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.Contains(dep, "/internal/testbed/") || dep == "k8s.io/client-go/kubernetes" ||
				strings.HasPrefix(dep, "k8s.io/client-go/kubernetes/typed/") || strings.HasPrefix(dep, "sigs.k8s.io/controller-runtime") {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
	}
}
