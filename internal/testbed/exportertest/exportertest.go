// Package exportertest runs the real scx-slo binary for tests: it builds
// it, starts it on a free loopback port, scrapes /metrics with the
// Prometheus text parser, and makes real cgroups with workloads in them.
// Tests that use it need root (BPF, cgroups) and skip without it.
package exportertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// RequireRoot skips (fails in CI) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	needs.Root(t)
}

var (
	buildMu sync.Mutex
	builds  = map[string]*build{}
)

type build struct {
	once sync.Once
	path string
	err  error
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// BinaryEnv names a prebuilt scx-slo for Binary to use instead of
// building one: inside a lab guest there is no Go toolchain.
const BinaryEnv = "SCX_SLO_BINARY"

// Binary builds ./cmd/scx-slo once per test process, statically, unless
// $SCX_SLO_BINARY names one already built.
func Binary(t testing.TB) string {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p
	}
	return BuildPackage(t, "./cmd/scx-slo")
}

// BuildPackage builds the main package pkg (relative to the repository
// root) once per test process, statically, and returns the binary's path.
func BuildPackage(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	b := builds[pkg]
	if b == nil {
		b = &build{}
		builds[pkg] = b
	}
	buildMu.Unlock()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "scx-slo-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", b.path, pkg)
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Exporter is a running scx-slo.
type Exporter struct {
	Addr string
	URL  string // base URL, http or https
	cmd  *exec.Cmd
	log  *SyncBuffer
	done chan error
	// Client is used for scrapes; tests with TLS/auth replace it.
	Client *http.Client
}

// FreeAddr returns a loopback address nobody listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs the exporter with args (plus --web.listen-address) and waits
// until it answers on /metrics, or fails the test with its log.
func Start(t testing.TB, args ...string) *Exporter {
	t.Helper()
	e := StartNoWait(t, args...)
	e.WaitReady(t, "http")
	return e
}

// StartNoWait starts the exporter without waiting for it.
func StartNoWait(t testing.TB, args ...string) *Exporter {
	t.Helper()
	addr := FreeAddr(t)
	e := &Exporter{Addr: addr, URL: "http://" + addr, log: &SyncBuffer{}, done: make(chan error, 1), Client: &http.Client{Timeout: 10 * time.Second}}
	e.cmd = exec.Command(Binary(t), append([]string{"--web.listen-address=" + addr}, args...)...)
	e.cmd.Stdout = e.log
	e.cmd.Stderr = e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.done <- e.cmd.Wait() }()
	t.Cleanup(func() { e.Stop(t) })
	return e
}

// WaitReady polls until the exporter answers, using scheme for the URL.
func (e *Exporter) WaitReady(t testing.TB, scheme string) {
	t.Helper()
	e.URL = scheme + "://" + e.Addr
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-e.done:
			e.done <- err
			t.Fatalf("exporter exited early: %v\n%s", err, e.Log())
		default:
		}
		conn, err := net.DialTimeout("tcp", e.Addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("exporter did not listen on %s within 30s\n%s", e.Addr, e.Log())
}

// Wait returns the exporter's exit error, waiting at most d.
func (e *Exporter) Wait(d time.Duration) (error, bool) {
	select {
	case err := <-e.done:
		e.done <- err
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// Log returns what the exporter printed so far.
func (e *Exporter) Log() string { return e.log.String() }

// Signal sends sig to the exporter.
func (e *Exporter) Signal(sig os.Signal) error { return e.cmd.Process.Signal(sig) }

// Stop terminates the exporter (SIGTERM, then SIGKILL after 10 s).
func (e *Exporter) Stop(t testing.TB) {
	if e.cmd.ProcessState != nil {
		return
	}
	_ = e.cmd.Process.Signal(os.Interrupt)
	if _, ok := e.Wait(10 * time.Second); !ok {
		_ = e.cmd.Process.Kill()
		e.Wait(5 * time.Second)
	}
}

// Get fetches path from the exporter.
func (e *Exporter) Get(path string) (*http.Response, []byte, error) {
	resp, err := e.Client.Get(e.URL + path)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// Scrape fetches and parses /metrics.
func (e *Exporter) Scrape(t testing.TB) Families {
	t.Helper()
	resp, body, err := e.Get("/metrics")
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, e.Log())
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing scrape: %v", err)
	}
	return fams
}

// InsecureTLS returns a client that trusts any certificate.
func InsecureTLS() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// Families is a parsed scrape.
type Families map[string]*dto.MetricFamily

// Find returns the metrics of family name whose labels include want.
func (f Families) Find(name string, want map[string]string) []*dto.Metric {
	fam, ok := f[name]
	if !ok {
		return nil
	}
	var out []*dto.Metric
	for _, m := range fam.Metric {
		if labelsMatch(m, want) {
			out = append(out, m)
		}
	}
	return out
}

// Value sums the gauge/counter values (or histogram sample counts) of the
// matching series; ok is false when none matches.
func (f Families) Value(name string, want map[string]string) (float64, bool) {
	ms := f.Find(name, want)
	var sum float64
	for _, m := range ms {
		switch {
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum, len(ms) > 0
}

// LabelValues lists the values of label across the family's series.
func (f Families) LabelValues(name, label string) []string {
	fam, ok := f[name]
	if !ok {
		return nil
	}
	var out []string
	for _, m := range fam.Metric {
		for _, l := range m.Label {
			if l.GetName() == label {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.Label {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Eventually polls cond every 250 ms until it holds or d passes.
func Eventually(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
	return cond()
}

// SyncBuffer is a bytes.Buffer safe for a process's stdout and stderr
// and a reading test at once.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Clone(s.b.String())
}

// Sleep pauses for ms milliseconds.
func Sleep(ms int) { time.Sleep(time.Duration(ms) * time.Millisecond) }

// Pid returns the exporter's process id.
func (e *Exporter) Pid() int { return e.cmd.Process.Pid }
