package labbench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/peers"
)

// Setups that attach one of the kernel's sample sched_ext schedulers
// (internal/testbed/peers) for their cells.
const (
	SCXSimple      = "scx_simple"       // global weighted vtime; cgroups at the default cpu.weight 100
	SCXFlatCG      = "scx_flatcg"       // cgroup weights: latency cpu.weight 10000, batch 1 (tuned EEVDF's)
	SCXFlatCGShort = "scx_flatcg-short" // the same with the shortest cgroup slice its -s flag takes
)

// peerSetup is how a setup runs its peer.
type peerSetup struct {
	binary       string   // peers.Simple or peers.FlatCG
	args         []string // beyond the binary
	latW, batchW string   // cpu.weight of the latency and batch cgroups
}

var peerSetups = map[string]peerSetup{
	SCXSimple: {binary: peers.Simple, latW: "100", batchW: "100"},
	SCXFlatCG: {binary: peers.FlatCG, latW: "10000", batchW: "1"},
	// -s takes microseconds as a float and rounds to whole ns; 1 µs is
	// the shortest it keeps non-zero: the CPU moves to the next cgroup at
	// every dispatch. Task slices stay SCX_SLICE_DFL.
	SCXFlatCGShort: {binary: peers.FlatCG, args: []string{"-s", "1"}, latW: "10000", batchW: "1"},
}

// PeerNames are the peer setups in the order Full runs them.
var PeerNames = []string{SCXSimple, SCXFlatCG, SCXFlatCGShort}

// IsPeer reports whether a setup attaches a peer scheduler.
func IsPeer(setup string) bool { _, ok := peerSetups[setup]; return ok }

// PeerBinary is one peer executable as the guest sees it.
type PeerBinary struct {
	Path    string `json:"path,omitempty"`    // in the guest
	Ops     string `json:"ops,omitempty"`     // what /sys/kernel/sched_ext/root/ops shows while it runs
	Slice   string `json:"slice,omitempty"`   // how it slices time (build.json)
	Missing string `json:"missing,omitempty"` // why the host has none (build failed)
}

// PeerRun is what a peer cell records about its scheduler.
type PeerRun struct {
	Command string `json:"command"` // in the guest
	// Ops is /sys/kernel/sched_ext/root/ops read at the end of the
	// measured window, before the peer is stopped.
	Ops   string `json:"ops"`
	Slice string `json:"slice"` // how it slices time (from its source, build.json)
	// Banner is the first line the peer printed (scx_flatcg's states its
	// cgroup slice).
	Banner string `json:"banner,omitempty"`
}

// PeerReport is what the host adds to Results about the peers.
type PeerReport struct {
	Build *peers.BuildInfo `json:"build,omitempty"`
	Dir   string           `json:"dir,omitempty"`   // the host's cache entry
	Error string           `json:"error,omitempty"` // why there is no build
}

// guestPeerDir is where the host puts the peers in the guest.
const guestPeerDir = "/opt/peers"

// usesPeers reports whether any setup of cfg attaches a peer.
func (c Config) usesPeers() bool {
	for _, s := range c.Schedulers {
		if IsPeer(s) {
			return true
		}
	}
	return false
}

// stagePeers sets cfg.Peers and returns the files to copy: every peer the
// build has, and for the rest why not, so their cells fail with the reason
// while the matrix runs on.
func stagePeers(cfg *Config, set *peers.Set, buildErr error) ([]lab.Copy, *PeerReport, error) {
	rep := &PeerReport{}
	if set != nil {
		rep.Build, rep.Dir = &set.Info, set.Dir
	} else {
		if buildErr == nil {
			buildErr = errors.New("RunOptions.Peers is nil")
		}
		rep.Error = buildErr.Error()
	}
	cfg.Peers = map[string]PeerBinary{}
	var files []lab.Copy
	for _, n := range peers.Names {
		if set == nil {
			cfg.Peers[n] = PeerBinary{Missing: "not built: " + rep.Error}
			continue
		}
		p, ok := set.Peer(n)
		if !ok {
			cfg.Peers[n] = PeerBinary{Missing: "not in the build at " + set.Dir}
			continue
		}
		if err := peers.CheckStatic(set.Binary(n)); err != nil {
			return nil, nil, err
		}
		g := path.Join(guestPeerDir, n)
		cfg.Peers[n] = PeerBinary{Path: g, Ops: p.Ops, Slice: p.Slice}
		files = append(files, lab.Copy{Host: set.Binary(n), Guest: g})
	}
	return files, rep, nil
}

// attachedPeer is a running peer scheduler in the guest.
type attachedPeer struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returned
	out    *os.File
	ops    string
	run    PeerRun
}

// startPeer starts the setup's peer and waits until sched_ext runs it.
func (g *guest) startPeer(setup string) (*attachedPeer, error) {
	ps := peerSetups[setup]
	bin, ok := g.cfg.Peers[ps.binary]
	switch {
	case !ok:
		return nil, fmt.Errorf("%s: the host staged no %s (Config.Peers)", setup, ps.binary)
	case bin.Missing != "":
		return nil, fmt.Errorf("%s: %s %s", setup, ps.binary, bin.Missing)
	}
	out, err := os.CreateTemp("", ps.binary+"-*.log")
	if err != nil {
		return nil, err
	}
	p := &attachedPeer{out: out, ops: bin.Ops, cmd: exec.Command(bin.Path, ps.args...), exited: make(chan struct{})}
	p.run.Command, p.run.Slice = strings.Join(append([]string{bin.Path}, ps.args...), " "), bin.Slice
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting %s: %w", p.run.Command, err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		state, ops := schedExtState()
		if state == "enabled" && ops == p.ops {
			break
		}
		select {
		case <-p.exited:
			p.out.Close()
			return nil, fmt.Errorf("%s exited before attaching (%s): %s", p.run.Command, p.cmd.ProcessState, p.output())
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not attached after 30s: sched_ext state %q, ops %q, want enabled and %q; output: %s", p.run.Command, state, ops, p.ops, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p, nil
}

// check reads the ops name at the end of the window: the cell counts only
// if the peer was still the attached scheduler.
func (p *attachedPeer) check() error {
	state, ops := schedExtState()
	p.run.Ops = ops
	b, _ := os.ReadFile(p.out.Name())
	p.run.Banner, _, _ = strings.Cut(string(b), "\n")
	if state != "enabled" || ops != p.ops {
		return fmt.Errorf("%s was ejected during the cell: sched_ext state %q, ops %q; output: %s", p.run.Command, state, ops, p.output())
	}
	return nil
}

// stop ends the peer (SIGINT: it detaches and exits) and waits until
// sched_ext is disabled again.
func (p *attachedPeer) stop() error {
	defer os.Remove(p.out.Name())
	defer p.out.Close()
	p.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		err = fmt.Errorf("%s did not exit within 15s of SIGINT; killed", p.run.Command)
	}
	return errors.Join(err, waitSchedExt("disabled", 10*time.Second))
}

// output is the peer's output, its end when long: that is where a peer
// prints why the kernel ejected it ("EXIT: ...").
func (p *attachedPeer) output() string {
	b, _ := os.ReadFile(p.out.Name())
	const max = 1500
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = "…" + s[len(s)-max:]
	}
	return s
}

// schedExtState is sched_ext's state and the attached ops' name.
func schedExtState() (state, ops string) {
	b, _ := os.ReadFile("/sys/kernel/sched_ext/state")
	o, _ := os.ReadFile("/sys/kernel/sched_ext/root/ops")
	return strings.TrimSpace(string(b)), strings.TrimSpace(string(o))
}
