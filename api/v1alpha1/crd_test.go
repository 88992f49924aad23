package v1alpha1_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/slovalue"
	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
)

// object builds an SLOPolicy as a user writes it in YAML: unstructured,
// so a 0 or a missing field reaches the API server as written.
func object(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "scx-slo.io/v1alpha1", "kind": "SLOPolicy",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec":     spec,
	}}
	return u
}

func validSpec() map[string]any {
	return map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "checkout"}}, "latencyBudget": "2ms"}
}

func with(k string, v any) map[string]any {
	s := validSpec()
	if v == nil {
		delete(s, k)
	} else {
		s[k] = v
	}
	return s
}

// The generated CRD installs in a real API server, which rejects bad
// values with the field and the value in its message, and accepts and
// defaults good ones.
func TestSLOPolicyAtTheAPIServer(t *testing.T) {
	kc := kubetest.Start(t)
	ctx := context.Background()

	t.Run("rejects", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			spec map[string]any
			want []string // all must appear in the error
		}{
			{"budget without unit", with("latencyBudget", "2"), []string{`spec.latencyBudget: Invalid value: "2": ` + slovalue.MsgPlainNumber}},
			{"budget zero", with("latencyBudget", "0ms"), []string{`spec.latencyBudget: Invalid value: "0ms": must be greater than 0`}},
			{"budget too long", with("latencyBudget", "1h"), []string{`spec.latencyBudget: Invalid value: "1h": must be at most 10s`}},
			{"budget not a duration", with("latencyBudget", "2 ms"), []string{`spec.latencyBudget: Invalid value: "2 ms": ` + slovalue.MsgNotDuration}},
			{"budget missing", with("latencyBudget", nil), []string{"spec.latencyBudget: Required value"}},
			{"importance too high", with("importance", 1001), []string{"spec.importance: Invalid value: 1001: " + slovalue.MsgImportanceRange}},
			{"importance zero", with("importance", 0), []string{"spec.importance: Invalid value: 0: " + slovalue.MsgImportanceRange}},
			{"target one", with("target", "1"), []string{`spec.target: Invalid value: "1": ` + slovalue.MsgTargetRange}},
			{"target percent", with("target", "99%"), []string{`spec.target: Invalid value: "99%": ` + slovalue.MsgTargetPercnt}},
			{"target as a number", with("target", 0.99), []string{"spec.target", "must be of type string"}},
			{"selector missing", with("selector", nil), []string{"spec.selector: Required value"}},
			{"priority negative", with("priority", -1), []string{"spec.priority: Invalid value: -1:"}},
			{"container name", with("containers", []any{"Not_A_Name"}), []string{`spec.containers[0]: Invalid value: "Not_A_Name"`}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := kc.Client.Create(ctx, object("bad", tc.spec), client.DryRunAll)
				if err == nil {
					t.Fatalf("API server accepted %v", tc.spec)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
			})
		}
	})

	// docs/kubernetes.md shows what the API server says.
	t.Run("docs", func(t *testing.T) {
		doc, err := os.ReadFile("../../docs/kubernetes.md")
		if err != nil {
			t.Fatal(err)
		}
		produced := map[string]bool{}
		for _, spec := range []map[string]any{with("latencyBudget", "2"), with("latencyBudget", "0ms"), with("latencyBudget", "1h"),
			with("target", "99%"), with("target", 0.99), with("importance", 1001), with("selector", nil)} {
			err := kc.Client.Create(ctx, object("doc", spec), client.DryRunAll)
			if err == nil {
				t.Fatalf("accepted %v", spec)
			}
			produced[err.Error()] = true
		}
		shown := 0
		for _, line := range strings.Split(string(doc), "\n") {
			if !strings.HasPrefix(line, "spec.") {
				continue
			}
			shown++
			found := false
			for e := range produced {
				found = found || strings.Contains(e, line)
			}
			if !found {
				t.Errorf("docs/kubernetes.md shows an error the API server does not give: %s\ngot: %v", line, produced)
			}
		}
		if shown < 5 {
			t.Errorf("found %d error lines in docs/kubernetes.md; did its layout change?", shown)
		}
	})

	// The API server and the shared parser agree on every value, with the
	// same words.
	t.Run("agrees with the shared parser", func(t *testing.T) {
		check := func(field, v string, perr error) {
			err := kc.Client.Create(ctx, object("agree", with(field, v)), client.DryRunAll)
			switch {
			case perr == nil && err != nil:
				t.Errorf("%s %q: parser accepts, API server rejects: %v", field, v, err)
			case perr != nil && err == nil:
				t.Errorf("%s %q: parser rejects (%v), API server accepts", field, v, perr)
			case perr != nil && !strings.Contains(err.Error(), fmt.Sprintf("spec.%s: Invalid value: %q: %s", field, v, perr)):
				t.Errorf("%s %q: API server says %v; parser says %v", field, v, err, perr)
			}
		}
		for _, v := range []string{"2ms", "1.5ms", "500us", "500µs", "0.25s", "10s", "1s500ms", "+2ms", "1ns",
			"2", "0", "0.002", "1e3", "2 ms", "", "ms", "2x", "0ms", "-1ms", "10.000001s", "1h", "1.ms"} {
			_, perr := slovalue.ParseLatencyBudget(v)
			check("latencyBudget", v, perr)
		}
		for _, v := range []string{"0.99", ".5", "9.9e-1", "0.999999", "+0.5",
			"99%", "0", "1", "1.0", "-0.5", "NaN", "inf", "0x1p-1", "", "0.99 ", "abc"} {
			_, perr := slovalue.ParseTarget(v)
			check("target", v, perr)
		}
		// Importance is an int32 in the CRD, so the API server shows it
		// unquoted; the parser reads the same digits from a file or an
		// annotation. (Beyond int32 the schema's format check answers
		// first, as it does for a target written as a number.)
		for _, v := range []int64{1, 2, 100, 999, 1000, 0, -1, 1001, 5000, math.MinInt32, math.MaxInt32} {
			_, perr := slovalue.ParseImportance(strconv.FormatInt(v, 10))
			err := kc.Client.Create(ctx, object("agree", with("importance", v)), client.DryRunAll)
			switch {
			case perr == nil && err != nil:
				t.Errorf("importance %d: parser accepts, API server rejects: %v", v, err)
			case perr != nil && err == nil:
				t.Errorf("importance %d: parser rejects (%v), API server accepts", v, perr)
			case perr != nil && !strings.Contains(err.Error(), fmt.Sprintf("spec.importance: Invalid value: %d: %s", v, perr)):
				t.Errorf("importance %d: API server says %v; parser says %v", v, err, perr)
			case perr != nil && strings.Count(err.Error(), "spec.importance") != 1:
				t.Errorf("importance %d: API server says more than the parser's words: %v", v, err)
			}
		}
	})

	// kubectl get slop shows budget, importance, target, priority, matched
	// pods, attainment and Ready: the API server's Table for the kind, as
	// kubectl asks for it.
	t.Run("printer columns", func(t *testing.T) {
		if err := kc.Client.Create(ctx, object("columns", with("priority", 3))); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := kc.Client.Delete(ctx, object("columns", nil)); err != nil {
				t.Error(err)
			}
		}()
		hc, err := rest.HTTPClientFor(kc.Config)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(kc.Config.Host, "/")+"/apis/scx-slo.io/v1alpha1/namespaces/default/slopolicies/columns", nil)
		req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var table metav1.Table
		if err := json.Unmarshal(body, &table); err != nil || len(table.Rows) != 1 {
			t.Fatalf("table: %v: %s", err, body)
		}
		var names []string
		for _, c := range table.ColumnDefinitions {
			names = append(names, c.Name)
		}
		got := fmt.Sprint(names, table.Rows[0].Cells[:5])
		if want := "[Name Budget Importance Target Priority Matched Attainment Ready Age] [columns 2ms 100 0.99 3]"; got != want {
			t.Errorf("columns:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("round-trips with defaults", func(t *testing.T) {
		if err := kc.Client.Create(ctx, object("minimal", validSpec())); err != nil {
			t.Fatal(err)
		}
		var got v1alpha1.SLOPolicy
		if err := kc.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "minimal"}, &got); err != nil {
			t.Fatal(err)
		}
		want := v1alpha1.SLOPolicySpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
			LatencyBudget: "2ms", Importance: slovalue.DefaultImportance, Target: "0.99", Priority: 0}
		if fmt.Sprint(got.Spec) != fmt.Sprint(want) {
			t.Errorf("defaults:\n got %+v\nwant %+v", got.Spec, want)
		}

		full := &v1alpha1.SLOPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "full"},
			Spec: v1alpha1.SLOPolicySpec{
				Selector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"api", "web"}}}},
				Containers: []string{"app", "proxy"}, LatencyBudget: "1.5ms", Importance: 500, Target: "0.999", Priority: 7}}
		sent := full.Spec.DeepCopy()
		if err := kc.Client.Create(ctx, full); err != nil {
			t.Fatal(err)
		}
		var back v1alpha1.SLOPolicy
		if err := kc.Client.Get(ctx, client.ObjectKeyFromObject(full), &back); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(back.Spec) != fmt.Sprint(*sent) {
			t.Errorf("round trip:\n got %+v\nwant %+v", back.Spec, *sent)
		}
		var list v1alpha1.SLOPolicyList
		if err := kc.Client.List(ctx, &list, client.InNamespace("default")); err != nil || len(list.Items) != 2 {
			t.Errorf("list: %d items, %v", len(list.Items), err)
		}
	})
}
