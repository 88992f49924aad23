package boolflags

import (
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
)

func TestRewrite(t *testing.T) {
	app := kingpin.New("x", "")
	serve := app.Command("serve", "").Default()
	enforce := serve.Flag("enforce", "").Bool()
	level := serve.Flag("log.level", "").Default("info").String()
	cases := []struct {
		args    []string
		enforce bool
		err     string
	}{
		{[]string{"--enforce=true"}, true, ""},
		{[]string{"--enforce=false"}, false, ""},
		{[]string{"--enforce"}, true, ""},
		{[]string{"--enforce=maybe"}, false, `--enforce="maybe": a boolean flag takes true or false`},
		{[]string{"--log.level=debug", "--enforce=true"}, true, ""},
	}
	for _, c := range cases {
		*enforce = false
		args, err := Rewrite(app, c.args)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: err %v, want %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if _, err := app.Parse(args); err != nil {
			t.Fatalf("%v -> %v: %v", c.args, args, err)
		}
		if *enforce != c.enforce {
			t.Errorf("%v: enforce = %v, want %v", c.args, *enforce, c.enforce)
		}
	}
	if *level != "debug" {
		t.Errorf("non-boolean flag mangled: log.level = %q", *level)
	}
	// Values after "--" belong to a wrapped command.
	got, _ := Rewrite(app, []string{"--", "--enforce=false"})
	if got[1] != "--enforce=false" {
		t.Errorf("rewrote past --: %v", got)
	}
}
