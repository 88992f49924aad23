// Package loadgen is an open-loop HTTP load generator for tests and
// benchmarks on loopback: requests leave on a fixed schedule whether or
// not earlier ones were answered, and each latency is measured from the
// request's scheduled time, so a stalled server shows up as latency
// instead of as fewer requests (no coordinated omission).
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Config is one run: Count requests at Rate per second.
type Config struct {
	URL    string
	Method string // GET when empty
	Header http.Header
	Rate   float64
	Count  int
	// Timeout bounds each request; a request that gets no answer within
	// it is a Result with Err set, never a hang.
	Timeout time.Duration
	Client  *http.Client // a keep-alive client per run when nil
}

func (c Config) validate() error {
	switch {
	case c.Rate <= 0:
		return fmt.Errorf("loadgen: rate %v: must be greater than 0", c.Rate)
	case c.Count <= 0:
		return fmt.Errorf("loadgen: count %d: must be greater than 0", c.Count)
	case c.Timeout <= 0:
		return fmt.Errorf("loadgen: timeout %v: must be greater than 0", c.Timeout)
	}
	return nil
}

// Result is one request's outcome.
type Result struct {
	Status     int // 0 when Err is set
	Err        error
	Latency    time.Duration // scheduled send to body fully read
	RetryAfter string
}

// NewClient returns a client that keeps up to conns connections alive.
func NewClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
}

// Run sends the requests and returns every result, in schedule order. It
// returns when all requests have finished or timed out, or ctx ends (then
// the remaining ones are not sent and are left out).
func Run(ctx context.Context, c Config) ([]Result, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	client := c.Client
	if client == nil {
		client = NewClient(1024)
		defer client.CloseIdleConnections()
	}
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	results := make([]Result, c.Count)
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(time.Second) / c.Rate)
	sent := 0
	for i := 0; i < c.Count; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		wg.Add(1)
		go func(i int, at time.Time) {
			defer wg.Done()
			results[i] = one(ctx, client, method, c, at)
		}(i, at)
	}
	wg.Wait()
	return results[:sent], nil
}

func one(ctx context.Context, client *http.Client, method string, c Config, at time.Time) Result {
	ctx, cancel := context.WithDeadline(ctx, at.Add(c.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.URL, nil)
	if err != nil {
		return Result{Err: err}
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{Err: err, Latency: time.Since(at)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r := Result{Status: resp.StatusCode, Latency: time.Since(at), RetryAfter: resp.Header.Get("Retry-After"), Err: err}
	if errors.Is(err, context.DeadlineExceeded) {
		r.Status = 0
	}
	return r
}

// Latencies returns the latencies of the results keep accepts, sorted.
func Latencies(rs []Result, keep func(Result) bool) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		if keep(r) {
			out = append(out, r.Latency)
		}
	}
	slices.Sort(out)
	return out
}

// Quantile returns the q-quantile (0..1) of sorted latencies, nearest rank;
// 0 when empty.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Count returns how many results keep accepts.
func Count(rs []Result, keep func(Result) bool) int {
	n := 0
	for _, r := range rs {
		if keep(r) {
			n++
		}
	}
	return n
}
