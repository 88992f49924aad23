package labtest

import (
	"os"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
)

type guestFacts struct {
	SchedExtState string
	Uid           int
	Env           string
	Subtest       bool
}

func readTrim(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// The whole round trip: build this package's tests, run one subtest in the
// guest, bring its JSON back.
func TestRunTestRoundTrip(t *testing.T) {
	t.Run("facts", func(t *testing.T) {
		if InGuest() {
			WriteJSON(t, "facts", guestFacts{
				SchedExtState: readTrim(t, "/sys/kernel/sched_ext/state"),
				Uid:           os.Getuid(),
				Env:           os.Getenv("LABTEST_VALUE"),
				Subtest:       true,
			})
			return
		}
		res := RunTest(t, lab.Options{Env: map[string]string{"LABTEST_VALUE": "from host"}})
		var got guestFacts
		ReadJSON(t, res, "facts", &got)
		want := guestFacts{SchedExtState: "disabled", Uid: 0, Env: "from host", Subtest: true}
		if got != want {
			t.Errorf("guest facts = %+v, want %+v", got, want)
		}
	})
}

func TestRunPattern(t *testing.T) {
	if got, want := runPattern("TestA/sub.case(1)"), `^TestA$/^sub\.case\(1\)$`; got != want {
		t.Errorf("runPattern = %q, want %q", got, want)
	}
}
