package collector

import (
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/internal/scxcap"
)

// The scx collector reports sched_ext's presence and state: the readings
// the enforcer consults before it loads the scheduler.
func init() { registerCollector("scx", true, newScxCollector) }

type scxCollector struct {
	paths                                      scxcap.Paths
	supported, state, ops, enableSeq, rejected *prometheus.Desc
	events, kernel, btf, compatible, why       *prometheus.Desc
	degraded                                   *prometheus.Desc
}

func scxDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

func newScxCollector(src Sources, _ log.Logger) (Collector, error) {
	return &scxCollector{
		paths:      src.ScxPaths,
		supported:  scxDesc("scx_supported", "1 if the kernel has sched_ext (/sys/kernel/sched_ext exists)."),
		state:      scxDesc("scx_state", "1 for sched_ext's current state.", "state"),
		ops:        scxDesc("scx_ops_info", "The loaded sched_ext scheduler (root/ops).", "ops"),
		enableSeq:  scxDesc("scx_enable_seq", "sched_ext enable_seq: how many times a BPF scheduler was enabled since boot."),
		rejected:   scxDesc("scx_nr_rejected", "sched_ext nr_rejected: tasks that could not be switched to the BPF scheduler."),
		events:     scxDesc("scx_events_total", "sched_ext event counters from root/events.", "event"),
		kernel:     scxDesc("kernel_info", "The running kernel's release.", "release"),
		btf:        scxDesc("btf_present", "1 if kernel BTF is at /sys/kernel/btf/vmlinux."),
		compatible: scxDesc("enforce_compatible", "1 if this kernel can run the scx-slo scheduler."),
		why:        scxDesc("enforce_incompatible_info", "One series per reason the kernel cannot run the scx-slo scheduler.", "reason"),
		degraded:   scxDesc("enforce_degraded_info", "One series per scheduler feature this kernel lacks while it can run the scx-slo scheduler (docs/metrics.md).", "feature"),
	}, nil
}

var scxStates = []string{"enabled", "disabled", "enabling", "disabling"}

func (c *scxCollector) Update(out *Series) error {
	capab, err := scxcap.Probe(c.paths)
	gauge := out.Gauge
	gauge(c.kernel, 1, capab.KernelRelease)
	gauge(c.btf, BoolValue(capab.BTF))
	gauge(c.supported, BoolValue(capab.Supported))
	if capab.Supported {
		for _, s := range scxStates {
			gauge(c.state, BoolValue(capab.State == s), s)
		}
		if capab.Ops != "" {
			gauge(c.ops, 1, capab.Ops)
		}
		out.Counter(c.enableSeq, float64(capab.EnableSeq))
		out.Counter(c.rejected, float64(capab.NrRejected))
		for name, v := range capab.Events {
			out.Counter(c.events, float64(v), name)
		}
	}
	ok, why := capab.Compatible()
	gauge(c.compatible, BoolValue(ok))
	for _, r := range why {
		gauge(c.why, 1, r)
	}
	if ok {
		for _, f := range capab.Degraded {
			gauge(c.degraded, 1, f)
		}
	}
	return err
}

// BoolValue is a boolean as a Prometheus gauge value: 1 or 0.
func BoolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
