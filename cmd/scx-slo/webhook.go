package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log/level"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"github.com/scx-slo/scx-slo/internal/admission"
	"github.com/scx-slo/scx-slo/internal/kubenode"
	"github.com/scx-slo/scx-slo/internal/logging"
	"github.com/scx-slo/scx-slo/internal/policystatus"
)

func init() { commands = append(commands, registerWebhook) }

func registerWebhook(app *kingpin.Application) {
	cmd := app.Command("webhook", "Serve the admission webhook: fill pods' SLO annotations from SLOPolicies, reject invalid ones.")
	addr := cmd.Flag("webhook.listen-address", "Address to serve HTTPS on.").Default(":9443").String()
	certFile := cmd.Flag("tls.cert-file", "PEM certificate (chain) to serve; reread at every connection, so a rotated file takes effect without a restart.").Required().String()
	keyFile := cmd.Flag("tls.key-file", "PEM private key of --tls.cert-file.").Required().String()
	kubeconfig := cmd.Flag("kubernetes.kubeconfig", "kubeconfig file for running outside a pod; empty: the pod's service account.").String()
	syncTimeout := cmd.Flag("kubernetes.sync-timeout", "How long start-up waits for the first list of SLOPolicies.").Default("1m").Duration()
	status := cmd.Flag("policy-status", "Also write SLOPolicy status (matched pods, conditions) while holding the Lease below; one replica writes.").Default("true").Bool()
	leaseNS := cmd.Flag("leader-election.namespace", "Namespace of the Lease that picks the status writer.").Envar("POD_NAMESPACE").Default("default").String()
	leaseName := cmd.Flag("leader-election.lease", "Name of that Lease.").Default("scx-slo-policy-status").String()
	identity := cmd.Flag("leader-election.identity", "This replica's name in the Lease; empty: the host name.").Envar("POD_NAME").String()
	agentSel := cmd.Flag("policy-status.agent-selector", "Label selector of the node agents' pods, whose /status gives each policy's attainment; empty: attainment is not read.").Default("app.kubernetes.io/name=scx-slo").String()
	agentNS := cmd.Flag("policy-status.agent-namespace", "Namespace of the node agents' pods; empty: --leader-election.namespace.").String()
	agentPort := cmd.Flag("policy-status.agent-port", "The agents' HTTP port: a container port name or number.").Default("metrics").String()
	agentTimeout := cmd.Flag("policy-status.agent-timeout", "How long one agent may take to answer; a node whose agent does not is counted as unreachable.").Default("2s").Duration()
	agentInterval := cmd.Flag("policy-status.attainment-interval", "How often the attainment is read from the agents.").Default("15s").Duration()
	logCfg := logging.AddFlags(cmd)
	cmd.Action(func(*kingpin.ParseContext) error {
		// Flags first: a bad value stops start-up before anything runs.
		var agents *policystatus.Agents
		if *status && *agentSel != "" {
			ns := *agentNS
			if ns == "" {
				ns = *leaseNS
			}
			var err error
			if agents, err = agentsFromFlags(*agentSel, ns, *agentPort, *agentTimeout, *agentInterval); err != nil {
				return err
			}
		}
		logger := logging.New(logCfg)
		logf := func(msg string, kv ...any) { _ = level.Info(logger).Log(append([]any{"msg", msg}, kv...)...) }
		certs, err := admission.LoadCerts(*certFile, *keyFile, logf)
		if err != nil {
			return err
		}
		cfg, err := kubenode.RESTConfig(*kubeconfig)
		if err != nil {
			return err
		}
		policies, err := admission.NewPolicyCache(cfg)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if err := policies.Start(ctx, *syncTimeout); err != nil {
			return err
		}
		var statusDone <-chan struct{} // nil: no status writer to wait for
		if *status {
			if statusDone, err = runPolicyStatus(ctx, cfg, *leaseNS, *leaseName, *identity, agents, logf); err != nil {
				return err
			}
		}
		// However serving ends, stop the status writer and wait until it
		// has given its Lease up: exiting first would leave the other
		// replica waiting out the lease duration.
		defer func() {
			stop()
			if statusDone == nil {
				return
			}
			select {
			case <-statusDone:
			case <-time.After(statusStopTimeout):
				logf("SLOPolicy status writer did not stop in time; the other replica takes over when the lease expires", "timeout", statusStopTimeout)
			}
		}()
		l, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("--webhook.listen-address %s: %w", *addr, err)
		}
		logf("serving the admission webhook", "address", l.Addr().String(), "serial", certs.Serial())
		return admission.Serve(ctx, l, certs, &admission.Handler{Policies: policies, Log: logf})
	})
}

const (
	// statusLeaseDuration is how long a silent status writer keeps its
	// Lease.
	statusLeaseDuration = 15 * time.Second
	// statusStopTimeout bounds the wait for the status writer at exit:
	// above the election's release (5 s), well below a pod's default
	// termination grace period (30 s).
	statusStopTimeout = 10 * time.Second
)

// runPolicyStatus starts the status controller and its election in the
// background; they end with ctx, and the returned channel closes once
// both have returned (the election after releasing its Lease).
func runPolicyStatus(ctx context.Context, cfg *rest.Config, ns, lease, identity string, agents *policystatus.Agents, logf func(string, ...any)) (<-chan struct{}, error) {
	if identity == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--leader-election.identity is empty and the host name unknown: %w", err)
		}
		identity = h
	}
	c, err := policystatus.New(cfg, logf)
	if err != nil {
		return nil, err
	}
	if agents != nil {
		c.ReadAttainment(*agents)
	}
	e, err := policystatus.NewElection(cfg, ns, lease, identity, statusLeaseDuration, 2*time.Second)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		e.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		if err := c.Run(ctx, e.Leading, time.Second); err != nil && ctx.Err() == nil {
			logf("SLOPolicy status controller stopped", "err", err)
		}
	}()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done, nil
}

// agentsFromFlags checks the --policy-status.agent-* flags.
func agentsFromFlags(selector, ns, port string, timeout, interval time.Duration) (*policystatus.Agents, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("--policy-status.agent-selector=%q: %w", selector, err)
	}
	switch {
	case port == "":
		return nil, fmt.Errorf("--policy-status.agent-port is empty: want a container port name or number")
	case timeout <= 0:
		return nil, fmt.Errorf("--policy-status.agent-timeout=%s: must be greater than 0", timeout)
	case interval <= 0:
		return nil, fmt.Errorf("--policy-status.attainment-interval=%s: must be greater than 0", interval)
	}
	return &policystatus.Agents{Namespace: ns, Selector: sel, Port: port, Timeout: timeout, Interval: interval}, nil
}
