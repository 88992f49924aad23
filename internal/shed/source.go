package shed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/overload"
)

// ErrNoSLO means none of the target's cgroups has an SLO: never overloaded.
var ErrNoSLO = overload.ErrNoSLO

// Source reads the overload bit of a Target. Overloaded is called from
// one goroutine, every poll interval; it must return within a few
// milliseconds or a bounded timeout, never hang.
type Source interface {
	Name() string
	Overloaded() (bool, error)
	Close() error
}

// Target is the cgroup whose bit decides shedding: the first of
// Candidates, most specific first, that has an SLO.
type Target struct {
	Candidates []Cgroup
}

// Cgroup is one candidate: its path in the hierarchy and its id.
type Cgroup struct {
	Path string
	ID   uint64
}

func (t Target) String() string {
	paths := make([]string, len(t.Candidates))
	for i, c := range t.Candidates {
		paths[i] = c.Path
	}
	return strings.Join(paths, ",")
}

// ResolveTarget turns --cgroup into a Target. "auto" means this
// process's own cgroup and its ancestors up to (not including) the root,
// nearest first: in a pod the sidecar's container cgroup, then the pod's.
// Anything else is one cgroup path. Without needIDs (only the HTTP source
// is used) an explicit path need not exist in this mount namespace: a
// container with a private cgroup namespace cannot see the pod's cgroup
// directory, but the exporter knows the path.
func ResolveTarget(h cgroupfs.Hierarchy, spec string, needIDs bool) (Target, error) {
	var paths []string
	if spec == "auto" {
		self, err := h.PathOf(0)
		if err != nil {
			return Target{}, fmt.Errorf("--cgroup=auto: %w", err)
		}
		for p := self; p != "/" && p != "." && p != ""; p = filepath.Dir(p) {
			paths = append(paths, p)
		}
		if len(paths) == 0 {
			return Target{}, fmt.Errorf("--cgroup=auto: this process runs in the root cgroup of %s; give --cgroup=PATH", h)
		}
	} else {
		if !strings.HasPrefix(spec, "/") {
			return Target{}, fmt.Errorf("--cgroup=%q: must be auto or a cgroup path starting with / (relative to the hierarchy root, without %s)", spec, h.Root)
		}
		paths = []string{filepath.Clean(spec)}
	}
	var t Target
	for _, p := range paths {
		if !needIDs && spec != "auto" {
			t.Candidates = append(t.Candidates, Cgroup{Path: p})
			continue
		}
		id, err := cgroupfs.ID(h.Dir(p))
		if err != nil {
			return Target{}, fmt.Errorf("--cgroup=%q: cgroup %s: %w", spec, p, err)
		}
		t.Candidates = append(t.Candidates, Cgroup{Path: p, ID: id})
	}
	return t, nil
}

// PinnedSource reads the bit through the exporter's pinned, mmapped maps:
// two memory loads per read. It needs root or CAP_BPF with write access to
// the pins (see package overload), which also follows re-pins and reports
// a published state whose heartbeat stopped (overload.ErrStale).
type PinnedSource struct {
	target Target
	reader *overload.Reader
}

// NewPinnedSource opens lazily: the first read opens the pins, and a failed
// open is retried at most once per overload.PinRecheck.
func NewPinnedSource(dir string, t Target) *PinnedSource {
	return &PinnedSource{target: t, reader: overload.OpenLazy(dir)}
}

func (p *PinnedSource) Name() string { return "pinned" }

func (p *PinnedSource) Overloaded() (bool, error) {
	for _, c := range p.target.Candidates {
		on, err := p.reader.Overloaded(c.ID)
		if errors.Is(err, overload.ErrNoSLO) {
			continue
		}
		return on, err
	}
	return false, ErrNoSLO
}

func (p *PinnedSource) Close() error { return p.reader.Close() }

// searchEvery bounds how often the HTTP source looks for the candidate
// with an SLO while none has one.
const searchEvery = time.Second

// HTTPSource reads the bit from the exporter's /overload endpoint, for
// readers without access to the pins.
type HTTPSource struct {
	base    *url.URL
	target  Target
	client  *http.Client
	timeout time.Duration
	// The candidate that had an SLO last time (-1: look again), and when
	// the candidates were last searched.
	current  int
	searched time.Time
}

// NewHTTPSource reads from the exporter at base (e.g.
// http://127.0.0.1:9817); each request times out after timeout.
func NewHTTPSource(base string, t Target, timeout time.Duration) (*HTTPSource, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--state.url=%q: want http://host:port of the scx-slo exporter", base)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute, DisableCompression: true}
	return &HTTPSource{base: u, target: t, client: &http.Client{Transport: tr}, timeout: timeout, current: -1}, nil
}

func (h *HTTPSource) Name() string { return "http" }

func (h *HTTPSource) Close() error { h.client.CloseIdleConnections(); return nil }

func (h *HTTPSource) Overloaded() (bool, error) {
	if h.current >= 0 {
		on, err := h.get(h.target.Candidates[h.current])
		if !errors.Is(err, ErrNoSLO) {
			return on, err
		}
		h.current = -1
	}
	// Search the candidates at most once per second when none had an SLO:
	// each miss is a 404 round trip.
	if time.Since(h.searched) < searchEvery {
		return false, ErrNoSLO
	}
	for i, c := range h.target.Candidates {
		on, err := h.get(c)
		if errors.Is(err, ErrNoSLO) {
			continue
		}
		if err == nil {
			h.current = i
		}
		return on, err
	}
	h.searched = time.Now()
	return false, ErrNoSLO
}

func (h *HTTPSource) get(c Cgroup) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	u := *h.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/overload"
	u.RawQuery = url.Values{"cgroup": {c.Path}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", u.String(), err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return false, ErrNoSLO
	default:
		return false, fmt.Errorf("%s: %s: %s", u.String(), resp.Status, strings.TrimSpace(string(body)))
	}
	var states []struct {
		Cgroup     string `json:"cgroup"`
		ID         uint64 `json:"id"`
		Overloaded bool   `json:"overloaded"`
	}
	if err := json.Unmarshal(body, &states); err != nil {
		return false, fmt.Errorf("%s: bad answer: %w", u.String(), err)
	}
	for _, s := range states {
		if s.Cgroup == c.Path {
			return s.Overloaded, nil
		}
	}
	return false, ErrNoSLO
}
