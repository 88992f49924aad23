// Package dashboards builds the Grafana dashboards that ship with scx-slo
// with the Grafana Foundation SDK. The Go code is the single source of
// truth: the JSON files next to it are rendered from a Config and committed
// so users can import them into Grafana without Go.
//
// Regenerate with `go generate ./dashboards/...` after changing a panel.
//
// Template variables are datasource, job, instance and cgroup. Kubernetes
// namespace and pod variables are left for when the exporter labels cgroups
// with them; until then the cgroup path (/kubepods.slice/...) identifies pods.
package dashboards

//go:generate go run ./gen --out .
