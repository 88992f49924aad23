package alerts

import (
	"regexp"
	"slices"
	"strings"
)

// contractRow matches a metric row of the tables in docs/metrics.md:
// | `scx_slo_name` | type | ...
var contractRow = regexp.MustCompile("(?m)^\\|\\s*`(scx_slo_[a-zA-Z0-9_]+)`\\s*\\|\\s*([a-z]+)\\s*\\|")

// DocumentedMetrics returns the series names the metrics contract
// (docs/metrics.md) promises, sorted. A histogram contributes the
// _bucket, _sum and _count series that PromQL actually reads, a summary
// its quantile series plus _sum and _count.
func DocumentedMetrics(markdown []byte) []string {
	var names []string
	for _, m := range contractRow.FindAllSubmatch(markdown, -1) {
		name, kind := string(m[1]), strings.ToLower(string(m[2]))
		switch kind {
		case "histogram":
			names = append(names, name+"_bucket", name+"_sum", name+"_count")
		case "summary":
			names = append(names, name, name+"_sum", name+"_count")
		default:
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
