package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/collector"
	"github.com/scx-slo/scx-slo/internal/kubenode"
)

// kubeFlags are the Kubernetes mode's flags.
type kubeFlags struct {
	on         bool
	onSet      bool // given on the command line; otherwise auto-detected
	nodeName   string
	kubeconfig string
	syncWait   time.Duration
	// defaultMode applies on a node without the mode label; empty: the
	// flags decide (--enforce).
	defaultMode string
}

func addKubeFlags(cmd *kingpin.CmdClause, f *kubeFlags) {
	cmd.Flag("kubernetes", "Kubernetes mode: SLOs from pod annotations and SLOPolicies, pod labels on series, the node's scx-slo.io/mode label. Default: on when running in a pod with a service account.").
		IsSetByUser(&f.onSet).BoolVar(&f.on)
	cmd.Flag("kubernetes.node-name", "The node this agent runs on (its pods and its mode label).").Envar("NODE_NAME").StringVar(&f.nodeName)
	cmd.Flag("kubernetes.kubeconfig", "kubeconfig file for running outside a pod; empty: the pod's service account.").StringVar(&f.kubeconfig)
	cmd.Flag("kubernetes.default-mode", "Mode of a node without the scx-slo.io/mode label: off, observe or enforce. Empty: --enforce decides.").StringVar(&f.defaultMode)
	cmd.Flag("kubernetes.sync-timeout", "How long to wait for the first list of pods, SLOPolicies and the node before giving up.").Default("1m").DurationVar(&f.syncWait)
}

// enabled decides Kubernetes mode: the flag if given, else whether we run
// in a pod.
func (f *kubeFlags) enabled() bool {
	if f.onSet {
		return f.on
	}
	return kubenode.InCluster()
}

// validate checks the flags that need no API server, before anything
// starts.
func (f *kubeFlags) validate() error {
	if _, err := kubenode.ParseMode(f.defaultMode); err != nil {
		return fmt.Errorf("--kubernetes.default-mode=%q: must be off, observe, enforce or empty", f.defaultMode)
	}
	if f.nodeName == "" {
		return errors.New("--kubernetes.node-name is empty: set it, or NODE_NAME from spec.nodeName through the downward API")
	}
	if f.syncWait <= 0 {
		return fmt.Errorf("--kubernetes.sync-timeout=%s: must be positive", f.syncWait)
	}
	return nil
}

// kubeAgent is the Kubernetes side of a running exporter.
type kubeAgent struct {
	watcher *kubenode.Watcher
	node    string
	mode    kubenode.Mode // the node label when we started
}

// startKube reads the node's mode label, applies it to the flags (before
// anything is loaded) and starts following the node's pods and the
// SLOPolicies. A change of the label later calls restart: the exporter
// exits cleanly and the DaemonSet starts it again in the new mode.
func startKube(ctx context.Context, f *serveFlags, restart func(why string), logger log.Logger) (*kubeAgent, error) {
	cfg, err := kubenode.RESTConfig(f.kube.kubeconfig)
	if err != nil {
		return nil, err
	}
	def, _ := kubenode.ParseMode(f.kube.defaultMode) // checked by validate
	rctx, cancel := context.WithTimeout(ctx, f.kube.syncWait)
	mode, err := kubenode.ReadMode(rctx, cfg, f.kube.nodeName)
	cancel()
	var bad *kubenode.ModeError
	if errors.As(err, &bad) {
		level.Warn(logger).Log("msg", "ignoring the node's mode label", "err", err)
	} else if err != nil {
		return nil, err
	}
	effective := mode
	if effective == kubenode.ModeUnset {
		effective = def
	}
	applyMode(effective, f, logger)
	w, err := kubenode.New(kubenode.Options{
		Config: cfg, NodeName: f.kube.nodeName, Logger: log.With(logger, "component", "kubernetes"),
		OnMode: func(m kubenode.Mode) {
			if m != mode {
				restart(fmt.Sprintf("node label %s changed from %q to %q", kubenode.ModeLabel, mode, m))
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if err := w.Start(ctx, f.kube.syncWait); err != nil {
		return nil, err
	}
	level.Info(logger).Log("msg", "following Kubernetes", "node", f.kube.nodeName, "pods", w.Pods(), "mode_label", string(mode))
	return &kubeAgent{watcher: w, node: f.kube.nodeName, mode: mode}, nil
}

// applyMode makes the node's label (or --kubernetes.default-mode on a node
// without one) override --enforce: enforce turns it on, observe off
// (removing a pinned scheduler, as --enforce=false does), off also stops
// the BPF collectors; neither leaves the flags alone.
func applyMode(m kubenode.Mode, f *serveFlags, logger log.Logger) {
	switch m {
	case kubenode.ModeEnforce:
		f.enforce.on = true
	case kubenode.ModeObserve:
		f.enforce.on = false
	case kubenode.ModeOff:
		f.enforce.on = false
		collector.Disable("runqueue", "slo")
	default:
		return
	}
	level.Info(logger).Log("msg", "mode set for this node", "label", kubenode.ModeLabel, "mode", string(m), "enforce", f.enforce.on)
}

// The Kubernetes mode's own metrics; registered only in that mode.
var (
	kubePodsDesc = prometheus.NewDesc("scx_slo_kubernetes_pods",
		"Pods on this node the agent follows.", nil, nil)
	kubeProblemsDesc = prometheus.NewDesc("scx_slo_kubernetes_slo_problems",
		"1 for each pod (or container) whose SLO from Kubernetes is ignored: an invalid annotation or policy value, or a tie between policies. Bounded by the pods on the node.",
		[]string{"namespace", "pod", "container", "kind"}, nil)
)

func (k *kubeAgent) Describe(ch chan<- *prometheus.Desc) {
	ch <- kubePodsDesc
	ch <- kubeProblemsDesc
}

func (k *kubeAgent) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(kubePodsDesc, prometheus.GaugeValue, float64(k.watcher.Pods()))
	seen := map[[4]string]bool{}
	for _, p := range k.watcher.Problems() {
		l := [4]string{p.Pod.Namespace, p.Pod.Name, p.Pod.Container, p.Kind}
		if seen[l] { // two problems of one kind on one container: one series
			continue
		}
		seen[l] = true
		ch <- prometheus.MustNewConstMetric(kubeProblemsDesc, prometheus.GaugeValue, 1, l[:]...)
	}
}
