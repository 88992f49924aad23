package overload

import (
	"context"
	"testing"
	"time"
)

// BenchmarkReaderOverloaded is one read as the sidecar makes it every
// 5 ms (heartbeat check, cached slot, bit, under the reader's mutex),
// interleaved with the baseline of a bare load of the bit from the same
// mapping; "read/bare" is the ratio.
func BenchmarkReaderOverloaded(b *testing.B) {
	dir := pinRoot(b)
	slos, bits := exporterMaps(b, 42, 3, true)
	hb, err := StartHeartbeat(context.Background(), dir)
	if err != nil {
		b.Fatal(err)
	}
	defer hb.Stop()
	if err := publishOnce(dir, slos, bits); err != nil {
		b.Fatal(err)
	}
	r, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	mem := r.pins.bits
	const batch = 1000
	var buf [4]byte
	var bare, read time.Duration
	for b.Loop() {
		t0 := time.Now()
		for range batch {
			mem.ReadAt(buf[:], 3*8)
		}
		t1 := time.Now()
		for range batch {
			if on, err := r.Overloaded(42); err != nil || !on {
				b.Fatal(on, err)
			}
		}
		bare, read = bare+t1.Sub(t0), read+time.Since(t1)
	}
	if buf[0] != 1 {
		b.Fatal("the bare load did not read the bit")
	}
	n := float64(b.N * batch)
	b.ReportMetric(float64(read.Nanoseconds())/n, "ns/read")
	b.ReportMetric(float64(bare.Nanoseconds())/n, "ns/bare")
	b.ReportMetric(float64(read)/float64(bare), "read/bare")
	b.ReportMetric(0, "ns/op")
}
