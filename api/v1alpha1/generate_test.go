package v1alpha1

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/slovalue"
)

const crdFile = "../../deploy/helm/scx-slo/crds/scx-slo.io_slopolicies.yaml"

// The deepcopy code and the CRD manifest are generated from types.go;
// editing the types without `go generate ./api/...` must fail here.
func TestGeneratedUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs controller-gen")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "tool", "controller-gen", "object", "paths=.", "output:object:dir="+dir,
		"crd", "output:crd:dir="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, out)
	}
	for fresh, committed := range map[string]string{
		"zz_generated.deepcopy.go":    "zz_generated.deepcopy.go",
		"scx-slo.io_slopolicies.yaml": crdFile,
	} {
		want, err := os.ReadFile(filepath.Join(dir, fresh))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(committed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./api/...", committed)
		}
	}
}

// The CRD's CEL messages repeat the shared parser's words, and its bounds
// its limits, so the API server and the agent say the same thing.
func TestCRDSpeaksLikeTheParser(t *testing.T) {
	data, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	// YAML folds long strings; compare with whitespace runs collapsed.
	crd := strings.Join(strings.Fields(string(data)), " ")
	for _, msg := range []string{
		slovalue.MsgPlainNumber, slovalue.MsgNotDuration, slovalue.MsgBudgetZero, slovalue.MsgBudgetMax,
		slovalue.MsgTargetRange, slovalue.MsgTargetPercnt, slovalue.MsgImportanceRange,
		"duration(self) <= duration('" + slovalue.MaxLatencyBudget.String() + "')",
		fmt.Sprintf("self >= %d && self <= %d", slovalue.MinImportance, slovalue.MaxImportance),
		"default: 100", `default: "0.99"`,
	} {
		if !strings.Contains(crd, msg) {
			t.Errorf("CRD lacks %q", msg)
		}
	}
	if slovalue.DefaultImportance != 100 || slovalue.MinImportance != 1 || slovalue.MaxImportance != 1000 || slovalue.DefaultTarget != 0.99 {
		t.Errorf("limits changed: update the kubebuilder markers in types.go and this test")
	}
}
