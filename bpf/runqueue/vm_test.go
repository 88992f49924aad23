package runqueue

import (
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
)

// TestVMTracerKernelMatrix runs this package's tracer tests inside every
// kernel of the lab's matrix (labtest.MatrixKernels, e.g. 6.12 LTS): the
// observe-mode tracer must load wherever there is BTF, sched_ext or not.
// The host's own kernel runs them directly.
func TestVMTracerKernelMatrix(t *testing.T) {
	if labtest.InGuest() {
		t.Skip("already inside the guest")
	}
	for _, spec := range labtest.MatrixKernels() {
		t.Run(spec, func(t *testing.T) {
			k := labtest.KernelFor(t, spec)
			labtest.RunTests(t, "^Test[^V]", lab.Options{Kernel: k, Timeout: 5 * time.Minute})
		})
	}
}
