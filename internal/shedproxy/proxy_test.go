package shedproxy

import (
	"strings"
	"testing"
)

func TestParseUpstream(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8081", "https://app.local", "http://[::1]:8081/base"} {
		if _, err := ParseUpstream(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:8081", "scheme must be http or https"},
		{"ftp://h:21", "scheme must be http or https"},
		{"http://", "needs a host"},
		{"http://h:1/?a=b", "must not have a query"},
		{"http://h:1/#x", "must not have a query or fragment"},
		{"http://u:p@h:1", "must not carry credentials"},
		{"http://h:/", "empty port"},
		{"http://h:1:2/%zz", `--upstream="http://h:1:2/%zz"`},
	} {
		_, err := ParseUpstream(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--upstream=") {
			t.Errorf("%s: want error with %q, got %v", tc.in, tc.want, err)
		}
	}
}
