package sloconfig

import (
	"os"
	"strings"
	"testing"
)

// The reference must not drift from the parser: its YAML examples must be
// accepted and every error line it shows must be one the tests produce.
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/slo-config.md")
	if err != nil {
		t.Fatal(err)
	}
	produced := map[string]bool{}
	for _, tc := range invalidCases {
		for _, w := range tc.want {
			produced[w] = true
		}
	}
	blocks := strings.Split(string(doc), "```")
	yamlBlocks, errorLines := 0, 0
	for i := 1; i < len(blocks); i += 2 {
		b := blocks[i]
		if body, ok := strings.CutPrefix(b, "yaml\n"); ok {
			yamlBlocks++
			if _, err := Parse([]byte(body), "docs"); err != nil {
				t.Errorf("example in docs/slo-config.md rejected:\n%v\n%s", err, body)
			}
			continue
		}
		for _, line := range strings.Split(b, "\n") {
			if strings.HasPrefix(line, "slo.yaml") {
				errorLines++
				if !produced[line] {
					t.Errorf("docs show an error no test produces: %s", line)
				}
			}
		}
	}
	if yamlBlocks == 0 || errorLines < 10 {
		t.Errorf("found %d YAML examples and %d error lines; did the doc's layout change?", yamlBlocks, errorLines)
	}
	// The shipped example config must load as well.
	if _, err := Load("../../docs/slo.example.yaml"); err != nil {
		t.Errorf("docs/slo.example.yaml: %v", err)
	}
}
