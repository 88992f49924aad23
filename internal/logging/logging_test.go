package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestSlogBridgeKeepsLevelsAndFilter(t *testing.T) {
	var buf bytes.Buffer
	l := Slog(NewTo(&buf, &Config{Level: "info", Format: "logfmt"}))
	l.Debug("hidden")
	l.With("component", "web").Warn("listening", "address", ":9817")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("debug line passed an info filter: %q", out)
	}
	for _, want := range []string{"level=warn", `msg=listening`, "component=web", "address=:9817"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
}
