package kubeassets

import (
	"os"
	"reflect"
	"testing"
)

// The kubernetes go.mod as the module proxy serves it: the replace block
// points staging modules at ./staging; others are left alone.
func TestParseStaging(t *testing.T) {
	gomod := []byte(`module k8s.io/kubernetes

require (
	k8s.io/api v0.0.0
	k8s.io/klog/v2 v2.140.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/cri-streaming => ./staging/src/k8s.io/cri-streaming
)

replace k8s.io/kms => ./staging/src/k8s.io/kms
replace github.com/x/y => github.com/x/z v1.0.0
`)
	want := []string{"k8s.io/api", "k8s.io/client-go", "k8s.io/cri-streaming", "k8s.io/kms"}
	if got := parseStaging(gomod); !reflect.DeepEqual(got, want) {
		t.Errorf("parseStaging = %q; want %q", got, want)
	}
}

func TestDirFollowsEnv(t *testing.T) {
	t.Setenv(CacheEnv, "/tmp/x")
	if Dir() != "/tmp/x/"+KubeVersion {
		t.Errorf("Dir() = %s", Dir())
	}
	if _, err := Find(); err == nil {
		t.Error("Find in an empty cache succeeded")
	}
	os.Unsetenv(CacheEnv)
}

func TestVersionParts(t *testing.T) {
	if major(KubeVersion) != "1" || minor("v1.37.2") != "37" {
		t.Errorf("major/minor of %s: %s %s", KubeVersion, major(KubeVersion), minor(KubeVersion))
	}
}
