package enforcer

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

// Limits of the scheduler's topology arrays (MAX_CPUS, MAX_DOMS in
// bpf/scheduler/scheduler.bpf.c).
const (
	maxCPUs = 512
	maxDoms = 64
)

// Topology groups CPUs into the scheduler's domains: one per last-level
// cache, so a domain's queues stay within one cache.
type Topology struct {
	CPUDom  []uint32   // domain of each CPU id
	Domains [][]uint32 // CPUs of each domain, ascending
}

// ReadTopology reads the last-level cache of every possible CPU from
// sysfs (cpuN/cache/index*/shared_cpu_list at the highest level). A CPU
// without cache information (offline at boot, or a VM that reports none)
// joins the domain of CPU 0's cache, or all form one domain: that is
// correct anywhere, only less sharded.
func ReadTopology(sysfs string) (Topology, error) {
	cpuDir := filepath.Join(sysfs, "devices", "system", "cpu")
	possible, err := os.ReadFile(filepath.Join(cpuDir, "possible"))
	if err != nil {
		return Topology{}, fmt.Errorf("reading the CPU topology: %w", err)
	}
	cpus, err := parseCPUList(strings.TrimSpace(string(possible)))
	if err != nil {
		return Topology{}, fmt.Errorf("%s/possible: %w", cpuDir, err)
	}
	n := 0
	for _, c := range cpus {
		n = max(n, int(c)+1)
	}
	if n > maxCPUs {
		return Topology{}, fmt.Errorf("%d possible CPUs: the scheduler supports at most %d", n, maxCPUs)
	}
	// Key each CPU by the first CPU of its LLC.
	leader := make([]int, n)
	for i := range leader {
		leader[i] = -1
	}
	for _, c := range cpus {
		if shared, ok := llcOf(cpuDir, c); ok && len(shared) > 0 {
			leader[c] = int(shared[0])
		}
	}
	fallback := 0
	if n > 0 && leader[0] >= 0 {
		fallback = leader[0]
	}
	ids := map[int]uint32{}
	var leaders []int
	for _, c := range cpus {
		if leader[c] < 0 {
			leader[c] = fallback
		}
		if _, ok := ids[leader[c]]; !ok {
			ids[leader[c]] = 0
			leaders = append(leaders, leader[c])
		}
	}
	sort.Ints(leaders)
	if len(leaders) > maxDoms {
		// More LLCs than the scheduler has queues for: fold them pairwise
		// in order, which keeps neighbours together.
		fold := (len(leaders) + maxDoms - 1) / maxDoms
		for i, l := range leaders {
			ids[l] = uint32(i / fold)
		}
	} else {
		for i, l := range leaders {
			ids[l] = uint32(i)
		}
	}
	t := Topology{CPUDom: make([]uint32, n)}
	for _, c := range cpus {
		d := ids[leader[c]]
		t.CPUDom[c] = d
		for int(d) >= len(t.Domains) {
			t.Domains = append(t.Domains, nil)
		}
		t.Domains[d] = append(t.Domains[d], c)
	}
	return t, nil
}

// llcOf returns the CPUs sharing c's highest-level cache.
func llcOf(cpuDir string, c uint32) ([]uint32, bool) {
	dirs, _ := filepath.Glob(filepath.Join(cpuDir, fmt.Sprintf("cpu%d", c), "cache", "index*"))
	best, bestLevel := "", -1
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "level"))
		if err != nil {
			continue
		}
		if lvl, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && lvl > bestLevel {
			best, bestLevel = d, lvl
		}
	}
	if best == "" {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(best, "shared_cpu_list"))
	if err != nil {
		return nil, false
	}
	list, err := parseCPUList(strings.TrimSpace(string(b)))
	return list, err == nil
}

// parseCPUList reads the kernel's cpulist format: "0-3,8,10-11".
func parseCPUList(s string) ([]uint32, error) {
	var out []uint32
	if s == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, uint32(c))
		}
	}
	return out, nil
}

// setTopology writes t into the scheduler's rodata before load.
func setTopology(spec *ebpf.CollectionSpec, t Topology) error {
	var cpuDom, domCPUs [maxCPUs]uint32
	var domFirst, domNr [maxDoms]uint32
	copy(cpuDom[:], t.CPUDom)
	next := uint32(0)
	for d, cpus := range t.Domains {
		domFirst[d] = next
		domNr[d] = uint32(len(cpus))
		for _, c := range cpus {
			domCPUs[next] = c
			next++
		}
	}
	nr := uint32(max(len(t.Domains), 1))
	for name, v := range map[string]any{
		"nr_doms": nr, "cpu_dom": cpuDom, "dom_first": domFirst, "dom_nr": domNr, "dom_cpus": domCPUs,
	} {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("scheduler object: no variable %q", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("scheduler object: setting %s: %w", name, err)
		}
	}
	return nil
}
