package latencyhist

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

func TestMatchesHeader(t *testing.T) {
	src, err := os.ReadFile("../../bpf/include/latency_hist.h")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"HIST_UNIT_SHIFT": UnitShift, "HIST_SUB_BITS": SubBits, "HIST_BUCKETS": Buckets}
	for name, v := range want {
		m := regexp.MustCompile(`#define\s+` + name + `\s+(\d+)`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("%s not defined in latency_hist.h", name)
		}
		got, _ := strconv.Atoi(string(m[1]))
		if got != v {
			t.Errorf("%s: header says %d, Go says %d", name, got, v)
		}
	}
}

func TestIndexBounds(t *testing.T) {
	// Every bucket's own bounds must map back to it, and buckets must tile
	// the line without gaps.
	for i := 0; i < Buckets-1; i++ {
		if got := Index(Lower(i)); got != i {
			t.Fatalf("Index(Lower(%d)=%d) = %d", i, Lower(i), got)
		}
		if got := Index(Upper(i) - 1); got != i {
			t.Fatalf("Index(Upper(%d)-1=%d) = %d", i, Upper(i)-1, got)
		}
		if Upper(i) != Lower(i+1) {
			t.Fatalf("gap after bucket %d", i)
		}
	}
	cases := map[uint64]int{0: 0, 255: 0, 256: 1, 1023: 3, 1024: 4, 3000: 9, 1 << 40: Buckets - 1}
	for ns, want := range cases {
		if got := Index(ns); got != want {
			t.Errorf("Index(%d) = %d, want %d", ns, got, want)
		}
	}
	if Lower(Buckets-1) != 1<<32+1<<31+1<<30 {
		t.Errorf("last bucket starts at %d", Lower(Buckets-1))
	}
}

func TestCumulativeAndQuantile(t *testing.T) {
	var c [Buckets]uint64
	c[Index(500)] = 10        // < 1 us
	c[Index(1_500_000)] = 80  // 1.5 ms
	c[Index(30_000_000)] = 10 // 30 ms
	cum := Cumulative(&c)
	if got := cum[PromBounds[0]]; got != 10 {
		t.Errorf("count <= 1us = %d, want 10", got)
	}
	if got := cum[PromBounds[len(PromBounds)-1]]; got != 100 {
		t.Errorf("count <= last bound = %d, want 100", got)
	}
	p50 := Quantile(&c, 0.5)
	if p50 < 0.0014 || p50 > 0.0016 {
		t.Errorf("p50 = %v, want about 1.5ms", p50)
	}
	p99 := Quantile(&c, 0.99)
	if p99 < 0.025 || p99 > 0.035 {
		t.Errorf("p99 = %v, want about 30ms", p99)
	}
	// Cumulative counts never decrease.
	prev := uint64(0)
	for _, b := range PromBounds {
		if cum[b] < prev {
			t.Fatalf("cumulative count drops at %v", b)
		}
		prev = cum[b]
	}
}
