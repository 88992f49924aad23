package policystatus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/scx-slo/scx-slo/internal/nodestatus"
	"github.com/scx-slo/scx-slo/internal/slopolicy"
)

// Agents says where the node agents run and how to ask them for their
// counters. The controller finds each node's agent among the pods it
// already follows (no Service, Endpoints or extra permission) and reads
// http://<pod IP>:<port>/status.
type Agents struct {
	Namespace string          // of the agent pods
	Selector  labels.Selector // picks the agent pods (the DaemonSet's labels)
	Port      string          // a container port's name ("metrics") or number
	Timeout   time.Duration   // per node and reading
	Interval  time.Duration   // between readings
}

// readParallel bounds the agents asked at once, so a reading of a large
// cluster neither opens thousands of connections nor takes
// nodes × Timeout.
const readParallel = 16

// maxStatusBytes bounds one agent's answer.
const maxStatusBytes = 32 << 20

// ctrKey names one container's SLO cgroups on a node as the agent reports
// them: pod ("namespace/name"), container and the SLO's source
// ("policy:<namespace>/<name>").
type ctrKey struct{ pod, container, source string }

type counts struct{ deadlines, misses uint64 }

// nodeReading is one agent's answer: the counters of every container whose
// SLO a policy gives, or why there are none.
type nodeReading struct {
	counts map[ctrKey]counts
	err    error
}

// placed is one container a policy gives its SLO to, and where it runs.
type placed struct{ node, pod, container string }

// agentReader keeps the last reading of every node that runs a pod with an
// SLO from a policy. syncAll tells it which nodes those are (need) and uses
// its last readings without waiting (readings); a goroutine reads.
type agentReader struct {
	cfg    Agents
	pods   cache.SharedIndexInformer
	client *http.Client
	kick   chan struct{}

	mu       sync.Mutex
	need     map[string]bool
	last     map[string]nodeReading
	readOnce bool
}

func newAgentReader(cfg Agents, pods cache.SharedIndexInformer) *agentReader {
	// No proxy from the environment: agents are reached at pod IPs.
	tr := &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		MaxIdleConnsPerHost: 1, IdleConnTimeout: 2 * cfg.Interval, ResponseHeaderTimeout: cfg.Timeout}
	return &agentReader{cfg: cfg, pods: pods, client: &http.Client{Transport: tr}, kick: make(chan struct{}, 1)}
}

// setNeed records the nodes syncAll wants readings of; a node never read
// yet starts a reading now rather than at the next interval.
func (a *agentReader) setNeed(nodes map[string]bool) {
	a.mu.Lock()
	a.need = nodes
	unread := false
	for n := range nodes {
		if _, ok := a.last[n]; !ok {
			unread = true
		}
	}
	a.mu.Unlock()
	if unread {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// readings returns the last readings and whether any reading finished.
func (a *agentReader) readings() (map[string]nodeReading, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last, a.readOnce
}

func (a *agentReader) forget() {
	a.mu.Lock()
	a.last, a.readOnce = nil, false
	a.mu.Unlock()
}

// run reads every Interval (and when kicked) while leading(), calling
// done after each reading, until ctx ends.
func (a *agentReader) run(ctx context.Context, leading func() bool, done func()) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
		}
		if !leading() {
			a.forget() // a later term starts from fresh readings
			continue
		}
		a.readAll(ctx)
		done()
	}
}

// readAll asks the agent of every needed node, readParallel at a time,
// each bounded by Timeout, and replaces the readings.
func (a *agentReader) readAll(ctx context.Context) {
	a.mu.Lock()
	nodes := make([]string, 0, len(a.need))
	for n := range a.need {
		nodes = append(nodes, n)
	}
	a.mu.Unlock()
	urls := a.agentURLs()
	out := make(map[string]nodeReading, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, readParallel)
	for _, n := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var r nodeReading
			if u, ok := urls[n]; ok {
				r = a.read(ctx, u)
			} else {
				r.err = fmt.Errorf("no running agent pod (namespace %s, selector %s) on the node", a.cfg.Namespace, a.cfg.Selector)
			}
			mu.Lock()
			out[n] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // stopping: an interrupted reading says nothing about the agents
	}
	a.mu.Lock()
	a.last, a.readOnce = out, true
	a.mu.Unlock()
}

// agentURLs maps node names to their agent's /status, from the running
// agent pods.
func (a *agentReader) agentURLs() map[string]string {
	objs, _ := a.pods.GetIndexer().ByIndex(cache.NamespaceIndex, a.cfg.Namespace)
	out := map[string]string{}
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.Spec.NodeName == "" || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning ||
			p.DeletionTimestamp != nil || !a.cfg.Selector.Matches(labels.Set(p.Labels)) {
			continue
		}
		if port, ok := containerPort(p, a.cfg.Port); ok {
			out[p.Spec.NodeName] = "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port))) + "/status"
		}
	}
	return out
}

// containerPort resolves port (a name or a number) on pod p.
func containerPort(p *corev1.Pod, port string) (int32, bool) {
	if n, err := strconv.ParseInt(port, 10, 32); err == nil {
		return int32(n), true
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == port {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// read asks one agent.
func (a *agentReader) read(ctx context.Context, url string) nodeReading {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nodeReading{err: err}
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nodeReading{err: err}
	}
	defer func() {
		// Drained, the connection serves the next reading.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxStatusBytes))
		resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return nodeReading{err: fmt.Errorf("%s answered %s", url, resp.Status)}
	}
	var st nodestatus.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxStatusBytes)).Decode(&st); err != nil {
		return nodeReading{err: fmt.Errorf("reading %s: %w", url, err)}
	}
	r := nodeReading{counts: map[ctrKey]counts{}}
	for _, row := range st.Cgroups {
		if row.Pod == "" || row.Container == "" || !strings.HasPrefix(row.Source, policySource) {
			continue
		}
		// A container's child cgroups have SLO entries of their own.
		k := ctrKey{row.Pod, row.Container, row.Source}
		c := r.counts[k]
		c.deadlines += row.DeadlinesTotal
		c.misses += row.MissesTotal
		r.counts[k] = c
	}
	return r
}

// policySource prefixes the agent's source of an SLO from a policy, as
// kubenode writes it: "policy:<namespace>/<name>".
const policySource = string(slopolicy.SourcePolicy) + ":"

// attainment is a policy's share of the readings.
type attainment struct {
	deadlines, misses uint64
	unreachable       map[string]error // node: why
	nodes             int              // nodes running its containers
	pending           int              // of those, nodes not read yet
}

// sum adds up the counters of the containers policy gives its SLO to. A
// node without a reading yet is left out and counted as pending (its
// first reading is on its way); a node whose agent did not answer is
// counted as unreachable.
func sum(policy string, ctrs []placed, last map[string]nodeReading) attainment {
	at := attainment{unreachable: map[string]error{}}
	nodes, pending := map[string]bool{}, map[string]bool{}
	seen := map[placed]bool{}
	for _, c := range ctrs {
		if c.node == "" || seen[c] {
			continue // not scheduled: nothing runs yet
		}
		seen[c] = true
		nodes[c.node] = true
		r, ok := last[c.node]
		switch {
		case !ok:
			pending[c.node] = true
		case r.err != nil:
			at.unreachable[c.node] = r.err
		default:
			n := r.counts[ctrKey{c.pod, c.container, policySource + policy}]
			at.deadlines += n.deadlines
			at.misses += n.misses
		}
	}
	at.nodes, at.pending = len(nodes), len(pending)
	return at
}

// percent renders met/deadlines as a percentage rounded down to two
// decimals ("99.93%"); empty when nothing was judged.
func percent(deadlines, misses uint64) string {
	if deadlines == 0 {
		return ""
	}
	met := deadlines - min(misses, deadlines)
	hi, lo := bits.Mul64(met, 10000)
	q, _ := bits.Div64(hi, lo, deadlines) // hi < deadlines since met <= deadlines
	return fmt.Sprintf("%d.%02d%%", q/100, q%100)
}

// clamp fits a counter into the API's int64.
func clamp(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// unreachableMessage names the nodes that did not answer (the first few)
// and why.
func unreachableMessage(at attainment) string {
	nodes := make([]string, 0, len(at.unreachable))
	for n := range at.unreachable {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	const shown = 5
	var parts []string
	for i, n := range nodes {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(nodes)-shown))
			break
		}
		parts = append(parts, n+": "+at.unreachable[n].Error())
	}
	return fmt.Sprintf("%d of %d nodes running its pods did not answer; their pods are left out: %s",
		len(nodes), at.nodes, strings.Join(parts, "; "))
}
