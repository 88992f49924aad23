package workload

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var v []int64
	for i := 1; i <= 100; i++ {
		v = append(v, int64(i)*int64(100*time.Microsecond)) // 0.1 .. 10 ms
	}
	s := Summarize(v, time.Millisecond)
	if s.N != 100 || s.OverBudget != 0.9 {
		t.Errorf("N=%d over=%v, want 100 and 0.9 (90 of 100 samples exceed 1 ms)", s.N, s.OverBudget)
	}
	if s.P50Ns != int64(5100*time.Microsecond) || s.MaxNs != int64(10*time.Millisecond) {
		t.Errorf("p50=%d max=%d", s.P50Ns, s.MaxNs)
	}
	if z := Summarize(nil, time.Millisecond); z.N != 0 {
		t.Errorf("empty: %+v", z)
	}
}

func TestSpinTakesAboutItsDuration(t *testing.T) {
	start := time.Now()
	spin(5 * time.Millisecond)
	if d := time.Since(start); d < 5*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("spin(5ms) took %s", d)
	}
}
