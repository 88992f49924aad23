// Package nodestatus is the one-screen summary of a node that both
// `scx-slo status` and the exporter's landing page show: mode, kernel
// capability, scheduler state and one row per cgroup.
package nodestatus

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is served as JSON at /status and rendered as a table.
type Status struct {
	Version       string   `json:"version"`
	Mode          string   `json:"mode"` // off, observe or enforce
	Hierarchy     string   `json:"hierarchy"`
	KernelRelease string   `json:"kernelRelease"`
	SchedExt      bool     `json:"schedExt"`
	SchedState    string   `json:"schedState,omitempty"`
	SchedOps      string   `json:"schedOps,omitempty"`
	Compatible    bool     `json:"enforceCompatible"`
	Incompatible  []string `json:"incompatibleReasons,omitempty"`
	Enforcer      string   `json:"enforcer"` // off, attached, detached: <why>
	ConfigOK      bool     `json:"configOK"`
	// Kubernetes is set in Kubernetes mode.
	Kubernetes *Kubernetes `json:"kubernetes,omitempty"`
	Window     string      `json:"window"`
	Cgroups    []Cgroup    `json:"cgroups"`
	Generated  time.Time   `json:"generated"`
}

// Kubernetes is what the agent follows in Kubernetes mode.
type Kubernetes struct {
	Node      string `json:"node"`
	ModeLabel string `json:"modeLabel,omitempty"` // the node's scx-slo.io/mode at start
	Pods      int    `json:"pods"`
}

// Cgroup is one row. Quantiles cover Status.Window.
type Cgroup struct {
	Path string `json:"path"`
	// Pod ("namespace/name") and Container the cgroup belongs to, in
	// Kubernetes mode.
	Pod       string  `json:"pod,omitempty"`
	Container string  `json:"container,omitempty"`
	Source    string  `json:"source,omitempty"`        // where the SLO came from: file, annotation, policy:<ns>/<name>
	Budget    float64 `json:"budgetSeconds,omitempty"` // 0: no SLO
	Target    float64 `json:"target,omitempty"`
	P50       float64 `json:"p50Seconds"`
	P99       float64 `json:"p99Seconds"`
	Wakeups   uint64  `json:"wakeups"`
	Deadlines uint64  `json:"deadlines"`
	Misses    uint64  `json:"misses"`
	// DeadlinesTotal and MissesTotal are not windowed: they count since
	// the agent began following the cgroup, as the scx_slo_deadlines_total
	// and scx_slo_deadline_misses_total counters do (the SLOPolicy status
	// controller sums them over a policy's pods).
	DeadlinesTotal uint64 `json:"deadlinesTotal"`
	MissesTotal    uint64 `json:"missesTotal"`
	Overloaded     bool   `json:"overloaded"`
}

// WriteJSON writes s as indented JSON.
func (s *Status) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// Only keeps the rows of target: a pod ("namespace/name", every
// container of it) or a cgroup path (it and its descendants). It reports
// whether any row matched.
func (s *Status) Only(target string) bool {
	var rows []Cgroup
	for _, c := range s.Cgroups {
		if c.Pod == target || c.Path == target || strings.HasPrefix(c.Path, strings.TrimSuffix(target, "/")+"/") {
			rows = append(rows, c)
		}
	}
	s.Cgroups = rows
	return len(rows) > 0
}

// IsPodName reports whether target names a pod ("namespace/name") rather
// than a cgroup path (which starts with "/").
func IsPodName(target string) bool {
	ns, name, ok := strings.Cut(target, "/")
	return ok && ns != "" && name != "" && !strings.Contains(name, "/")
}

// WriteTable writes s for a terminal.
func (s *Status) WriteTable(w io.Writer) error {
	sched := "not available"
	if s.SchedExt {
		sched = s.SchedState
		if s.SchedOps != "" {
			sched += " (" + s.SchedOps + ")"
		}
	}
	compat := "yes"
	if !s.Compatible {
		compat = "no: " + strings.Join(s.Incompatible, "; ")
	}
	cfg := "ok"
	if !s.ConfigOK {
		cfg = "last reload rejected (serving the last good config)"
	}
	fmt.Fprintf(w, "mode:        %s\nenforcer:    %s\nkernel:      %s (sched_ext: %s)\ncompatible:  %s\ncgroups:     %s\nslo config:  %s\n",
		s.Mode, s.Enforcer, s.KernelRelease, sched, compat, s.Hierarchy, cfg)
	if k := s.Kubernetes; k != nil {
		label := k.ModeLabel
		if label == "" {
			label = "unset (flags decide)"
		}
		fmt.Fprintf(w, "kubernetes:  node %s, %d pods, mode label %s\n", k.Node, k.Pods, label)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	pods := s.Kubernetes != nil
	if pods {
		fmt.Fprintf(tw, "POD\tCONTAINER\tSOURCE\t")
	}
	fmt.Fprintf(tw, "CGROUP\tBUDGET\tP50\tP99\tWAKEUPS\tMISSES\tOVERLOADED\n")
	rows := append([]Cgroup(nil), s.Cgroups...)
	sort.Slice(rows, func(i, j int) bool {
		if (rows[i].Budget > 0) != (rows[j].Budget > 0) {
			return rows[i].Budget > 0
		}
		return rows[i].Path < rows[j].Path
	})
	for _, c := range rows {
		budget, misses, over := "-", "-", "-"
		if c.Budget > 0 {
			budget = dur(c.Budget)
			misses = fmt.Sprintf("%d/%d", c.Misses, c.Deadlines)
			over = map[bool]string{true: "YES", false: "no"}[c.Overloaded]
		}
		if pods {
			fmt.Fprintf(tw, "%s\t%s\t%s\t", or(c.Pod), or(c.Container), or(c.Source))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.Path, budget, dur(c.P50), dur(c.P99), c.Wakeups, misses, over)
	}
	fmt.Fprintf(tw, "\n(latency quantiles over %s)\n", s.Window)
	return tw.Flush()
}

func or(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dur(sec float64) string {
	return time.Duration(sec * 1e9).Round(time.Microsecond).String()
}
