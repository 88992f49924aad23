package enforcer

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/bpf/scheduler"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{PinDir: "relative/pins"}, `PinDir "relative/pins"`},
		{Options{Backoff: -time.Second}, "Backoff -1s"},
		{Options{Poll: -time.Millisecond}, "Poll -1ms"},
		{Options{Guard: &Guard{}}, "Guard.Observe needs"},
		{Options{Guard: &Guard{Margin: 2}}, "margin 2"},
		{Options{Guard: &Guard{BaselineFor: -time.Second}}, "baseline -1s"},
	} {
		_, err := New(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error mentioning %q", tc.opts, err, tc.want)
		}
	}
	e, err := New(Options{})
	if err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
	if e.opts.PinDir != DefaultPinDir || e.opts.MaxReattach != 5 || e.opts.Backoff != time.Second {
		t.Errorf("defaults not applied: %+v", e.opts)
	}
	if e.Attached() {
		t.Error("Attached before Start")
	}
	if _, ok := e.Maps(); ok {
		t.Error("Maps reports ok before Start")
	}
}

// opsFlags reads sched_ext_ops.flags from the spec's struct_ops value.
func opsFlags(t *testing.T, spec *ebpf.CollectionSpec) uint64 {
	t.Helper()
	ms := spec.Maps[scheduler.OpsMap]
	for _, m := range ms.Value.(*btf.Struct).Members {
		if m.Name == "flags" {
			return binary.LittleEndian.Uint64(ms.Contents[0].Value.([]byte)[m.Offset.Bytes():])
		}
	}
	t.Fatal("no flags member")
	return 0
}

func TestPartialSetsSwitchPartial(t *testing.T) {
	const enqLast = 1 << 1
	full, err := loadSpec(false)
	if err != nil {
		t.Fatal(err)
	}
	if f := opsFlags(t, full); f != enqLast {
		t.Errorf("full mode flags %#x, want ENQ_LAST only (%#x)", f, enqLast)
	}
	part, err := loadSpec(true)
	if err != nil {
		t.Fatal(err)
	}
	if f := opsFlags(t, part); f != enqLast|scheduler.SwitchPartial {
		t.Errorf("partial mode flags %#x, want %#x", f, enqLast|scheduler.SwitchPartial)
	}
	// The embedded object must stay untouched for the next load.
	again, _ := loadSpec(false)
	if f := opsFlags(t, again); f != enqLast {
		t.Errorf("patching leaked into the embedded object: flags %#x", f)
	}
}

// TestReadExitReadsRecord writes an exit record into a real BPF array
// shaped like .data.exit, as raw bytes at the offsets ops.exit writes, and
// reads it back.
func TestReadExitReadsRecord(t *testing.T) {
	spec, err := loadSpec(false)
	if err != nil {
		t.Fatal(err)
	}
	size := spec.Maps[scheduler.ExitSection].ValueSize
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: size, MaxEntries: 1})
	needs.Part(t, "BPF maps (root and BPF)", err)
	defer m.Close()
	buf := make([]byte, size)
	binary.LittleEndian.PutUint32(buf[0:], 1026)
	code := int64(-3)
	binary.LittleEndian.PutUint64(buf[8:], uint64(code))
	binary.LittleEndian.PutUint64(buf[16:], 1)
	copy(buf[24:], "runnable task stall\x00junk")
	copy(buf[152:], "khugepaged[42] failed to run for 7.568s")
	if err := m.Put(uint32(0), buf); err != nil {
		t.Fatal(err)
	}
	got, err := readExit(m)
	if err != nil {
		t.Fatal(err)
	}
	want := ExitInfo{Count: 1, Kind: "error_stall", Code: -3, Reason: "runnable task stall", Msg: "khugepaged[42] failed to run for 7.568s"}
	if got != want {
		t.Errorf("read %+v, want %+v", got, want)
	}
	if k := exitKindName(4242); k != "kind_4242" {
		t.Errorf("unknown kind named %q", k)
	}
}

func TestDetachWithNothingPinned(t *testing.T) {
	if err := Detach(t.TempDir() + "/none"); err != nil {
		t.Errorf("Detach of an empty pin dir: %v", err)
	}
}

// The exporter (cmd/scx-slo) holds the enforcer through this interface.
var _ interface {
	prometheus.Collector
	Maps() (slomaps.Maps, bool)
	Attached() bool
	Stop()
} = (*Enforcer)(nil)
