package labbench

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ProgCost is one scheduler callback's cost over a cell, from bpf_stats
// (kernel.bpf_stats_enabled): how often it ran and its mean run time.
type ProgCost struct {
	Runs     uint64  `json:"runs"`
	NsPerRun float64 `json:"ns_per_run"`
}

// progStats is the run time and count of every loaded struct_ops
// program named slo_* (scx-slo's callbacks), keyed by name.
func progStats() (map[string]ebpf.ProgramStats, error) {
	out := map[string]ebpf.ProgramStats{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // gone meanwhile
		}
		info, err := p.Info()
		if err != nil || info.Type != ebpf.StructOps || !strings.HasPrefix(info.Name, "slo_") {
			p.Close()
			continue
		}
		st, err := p.Stats()
		p.Close()
		if err == nil {
			out[info.Name] = *st
		}
	}
}

// bpfCostMeter measures scx-slo's callbacks over a cell: bpf_stats are
// on from start to stop (they cost a clock read per run, so only while
// measuring).
type bpfCostMeter struct {
	fd     interface{ Close() error }
	before map[string]ebpf.ProgramStats
}

func startBPFCost() (*bpfCostMeter, error) {
	fd, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enabling bpf_stats: %w", err)
	}
	before, err := progStats()
	if err != nil {
		fd.Close()
		return nil, err
	}
	return &bpfCostMeter{fd: fd, before: before}, nil
}

// stop returns each callback's runs and mean ns per run since start.
func (m *bpfCostMeter) stop() (map[string]ProgCost, error) {
	after, err := progStats()
	m.fd.Close()
	if err != nil {
		return nil, err
	}
	out := map[string]ProgCost{}
	for name, a := range after {
		b := m.before[name]
		runs := a.RunCount - b.RunCount
		if runs == 0 {
			continue
		}
		out[name] = ProgCost{Runs: runs, NsPerRun: float64((a.Runtime - b.Runtime).Nanoseconds()) / float64(runs)}
	}
	return out, nil
}
