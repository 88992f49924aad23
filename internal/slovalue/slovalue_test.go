package slovalue

import (
	"testing"
	"time"
)

func TestParseLatencyBudget(t *testing.T) {
	good := map[string]time.Duration{
		"2ms": 2 * time.Millisecond, "1.5ms": 1500 * time.Microsecond, "500us": 500 * time.Microsecond,
		"500µs": 500 * time.Microsecond, "0.25s": 250 * time.Millisecond, "10s": 10 * time.Second,
		"1s500ms": 1500 * time.Millisecond, "+2ms": 2 * time.Millisecond, "1ns": 1,
	}
	for in, want := range good {
		got, err := ParseLatencyBudget(in)
		if err != nil || got != want {
			t.Errorf("ParseLatencyBudget(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"2": MsgPlainNumber, "0.002": MsgPlainNumber, "0": MsgPlainNumber, "1e3": MsgPlainNumber,
		"2 ms": MsgNotDuration, "": MsgNotDuration, "ms": MsgNotDuration, "2x": MsgNotDuration,
		"0ms": MsgBudgetZero, "-1ms": MsgBudgetZero,
		"10.000001s": "must be at most 10s", "1h": "must be at most 10s",
	}
	for in, want := range bad {
		if _, err := ParseLatencyBudget(in); err == nil || err.Error() != want {
			t.Errorf("ParseLatencyBudget(%q) error = %v; want %q", in, err, want)
		}
	}
}

func TestParseImportance(t *testing.T) {
	for in, want := range map[string]int{"1": 1, "100": 100, "1000": 1000, "+7": 7} {
		if got, err := ParseImportance(in); err != nil || got != want {
			t.Errorf("ParseImportance(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "1001", "-1", "1.5", "abc", "", "0x10", "99999999999999999999"} {
		if _, err := ParseImportance(in); err == nil || err.Error() != "must be an integer from 1 to 1000" {
			t.Errorf("ParseImportance(%q) error = %v", in, err)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]float64{"0.99": 0.99, ".5": 0.5, "9.9e-1": 0.99, "0.999999": 0.999999, "+0.5": 0.5} {
		if got, err := ParseTarget(in); err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"99%": MsgTargetPercnt, "0": MsgTargetRange, "1": MsgTargetRange, "1.0": MsgTargetRange,
		"-0.5": MsgTargetRange, "NaN": MsgTargetRange, "inf": MsgTargetRange, "0x1p-1": MsgTargetRange,
		"": MsgTargetRange, "0.99 ": MsgTargetRange, "1e-400": MsgTargetRange,
	}
	for in, want := range bad {
		if _, err := ParseTarget(in); err == nil || err.Error() != want {
			t.Errorf("ParseTarget(%q) error = %v; want %q", in, err, want)
		}
	}
}
