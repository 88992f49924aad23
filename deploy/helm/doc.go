// Package helmchart keeps the Helm chart in scx-slo/ in step with what it
// ships but does not own: the dashboards (dashboards/*.json), the alert
// rules (alerts/scx-slo.rules.yml) and the version (VERSION). They are
// copied into the chart, because a chart packaged for a repository can
// only hold files under its own directory; Want says what the copies must
// be, `go generate ./deploy/helm/...` writes them, and a test fails when
// they are stale. The package's tests render the chart with Helm's engine
// (through helmtest, which other packages' tests use too) and send every
// object to a real kube-apiserver.
package helmchart

//go:generate go run ./gen
