// Package alerts generates the Prometheus recording and alerting rules that
// ship with scx-slo (alerts/scx-slo.rules.yml). The Go code here is the single
// source of truth: the YAML is rendered from a Config and committed so users
// can load it without Go.
//
// Regenerate with `go generate ./alerts/...` after changing the rules.
package alerts

//go:generate go run ./gen --out .
