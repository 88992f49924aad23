package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, ms(i))
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, ms(50)}, {0.99, ms(99)}, {1, ms(100)}, {0, ms(1)}} {
		if got := Quantile(s, tc.q); got != tc.want {
			t.Errorf("q%v = %v, want %v", tc.q, got, tc.want)
		}
	}
	if Quantile(nil, 0.5) != 0 {
		t.Errorf("empty quantile not 0")
	}
}

// TestOpenLoop: requests leave on schedule even while earlier ones hang,
// and a hung request comes back as a timeout, not never.
func TestOpenLoop(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done() // the first request hangs
			return
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(429)
	}))
	defer srv.Close()
	start := time.Now()
	rs, err := Run(context.Background(), Config{URL: srv.URL, Rate: 100, Count: 20, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("run took %v", d)
	}
	if len(rs) != 20 || rs[0].Err == nil {
		t.Fatalf("want 20 results with the first timed out: %d, first %+v", len(rs), rs[0])
	}
	if c := Count(rs, func(r Result) bool { return r.Status == 429 && r.RetryAfter == "1" }); c != 19 {
		t.Errorf("%d answered, want 19", c)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Rate: 0, Count: 1, Timeout: time.Second}, "rate 0"},
		{Config{Rate: 1, Count: 0, Timeout: time.Second}, "count 0"},
		{Config{Rate: 1, Count: 1}, "timeout 0s"},
	} {
		if _, err := Run(context.Background(), tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}
