package pingpong

import "testing"

func TestRoundTrips(t *testing.T) {
	d, err := Run(1000)
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Fatalf("mean round trip %v", d)
	}
}

func TestMeasureInPairs(t *testing.T) {
	r, err := Measure(3, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if r.RoundTrip <= 0 || r.CPU <= 0 {
		t.Fatalf("mean round trip %v, CPU %v", r.RoundTrip, r.CPU)
	}
	// Two threads cannot use more than twice the wall time.
	if r.CPU > 2*r.RoundTrip {
		t.Errorf("CPU per round trip %v exceeds twice its wall time %v", r.CPU, r.RoundTrip)
	}
}
