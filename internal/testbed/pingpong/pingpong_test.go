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

func TestRoundTripsInPairs(t *testing.T) {
	d, err := RunPairs(3, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Fatalf("mean round trip %v", d)
	}
}
