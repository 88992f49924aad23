package alerts

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// promql is the parser every check in this package uses; the zero Options
// give the stable language Prometheus enables by default.
var promql = parser.NewParser(parser.Options{})

// MetricNames parses expr as PromQL and returns the sorted, de-duplicated
// metric names its selectors read. It is exported so a test can compare the
// names the rules and dashboards use against a real scrape of the exporter.
func MetricNames(expr string) ([]string, error) {
	node, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parse PromQL %q: %w", expr, err)
	}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, selectorName(vs))
		}
		return nil
	})
	slices.Sort(names)
	return slices.Compact(names), nil
}

// selectorName returns the metric name a selector reads, whether it is
// written as foo{...} or {__name__="foo"}.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// parseMatchers parses a comma-separated list of label matchers such as
// `job="scx-slo",cluster=~"prod-.*"`. An empty string yields no matchers.
func parseMatchers(field, s string) ([]*labels.Matcher, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	ms, err := promql.ParseMetricSelector("{" + s + "}")
	if err != nil {
		return nil, fmt.Errorf("%s %q: not a list of label matchers: %w", field, s, err)
	}
	for _, m := range ms {
		if m.Name == labels.MetricName {
			return nil, fmt.Errorf("%s %q: must not match on __name__", field, s)
		}
	}
	return ms, nil
}

// normalize parses expr, adds extra to every selector that does not already
// match on the same label, and prints it back on one line in Prometheus's
// canonical form (its multi-line prettifier needs YAML indentation
// indicators that trip up readers).
// Going through the parser means every rule is known to parse before it is
// written, and the selector can't be spliced into the wrong place.
func normalize(expr string, extra []*labels.Matcher) (string, error) {
	node, err := promql.ParseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("parse PromQL %q: %w", expr, err)
	}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		for _, m := range extra {
			if !hasMatcherOn(vs, m.Name) {
				vs.LabelMatchers = append(vs.LabelMatchers, m)
			}
		}
		return nil
	})
	return node.String(), nil
}

func hasMatcherOn(vs *parser.VectorSelector, label string) bool {
	for _, m := range vs.LabelMatchers {
		if m.Name == label {
			return true
		}
	}
	return false
}
