package labbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/peers"
)

// ConfigEnv carries the Config (JSON) to the guest side of the bench
// test binary; its presence is what tells the guest side to run.
const ConfigEnv = "SCX_SLO_BENCH_CONFIG"

// GuestConfig (guest side) returns the Config the host sent, and whether
// this process is the guest side at all.
func GuestConfig() (Config, bool, error) {
	v := os.Getenv(ConfigEnv)
	if v == "" {
		return Config{}, false, nil
	}
	var c Config
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		return c, true, fmt.Errorf("%s: %w", ConfigEnv, err)
	}
	return c, true, c.Validate()
}

// GuestOut is where the guest writes Results.
const GuestOut = "/out/bench.json"

// Host describes the machine the guest ran on.
type Host struct {
	Date     string `json:"date"`
	CPU      string `json:"cpu"`
	CPUs     int    `json:"cpus"`
	MemoryMB int    `json:"memory_mb"`
	Kernel   string `json:"kernel"`
	Qemu     string `json:"qemu"`
	Accel    string `json:"accel"`
	// QemuMaxCores is what qemu can use at most: one host thread runs
	// every vCPU under single-threaded TCG.
	QemuMaxCores float64 `json:"qemu_max_cores"`
	Load1Before  float64 `json:"load1_before"`
}

// HostSample is the host's view of one cell's measured window.
type HostSample struct {
	Load1     float64 `json:"load1"`      // /proc/loadavg at the end of the window
	BusyCores float64 `json:"busy_cores"` // host CPUs busy on average (all processes)
	QemuCores float64 `json:"qemu_cores"` // CPU qemu got on average
	Starved   bool    `json:"starved"`    // qemu got well under what it could use
}

// starvedShare flags cells where qemu got under this share of its maximum.
const starvedShare = 0.8

// RunOptions are the host side's inputs.
type RunOptions struct {
	Config Config
	// TestBinary is a static test binary (lab.BuildTest) whose TestMain
	// calls Main and workload.Main, and whose test GuestTest calls
	// GuestConfig and RunGuest.
	TestBinary string
	GuestTest  string
	Kernel     *lab.Kernel
	Console    io.Writer // guest console; nil discards it
	Timeout    time.Duration
	// CPUs and Sockets size the guest (lab.Options); 0 is the lab's default.
	CPUs, Sockets int
	// Peers are the peer schedulers (peers.Ensure) for Config's peer
	// setups; when their build failed, PeersErr says why, and those cells
	// fail with it while the rest of the matrix runs.
	Peers    *peers.Set
	PeersErr error
}

// Run boots the guest once, runs the matrix there and returns the results
// with the host's load per cell.
func Run(ctx context.Context, o RunOptions) (*Results, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.TestBinary == "" || o.GuestTest == "" || o.Kernel == nil {
		return nil, fmt.Errorf("labbench: RunOptions needs TestBinary (%q), GuestTest (%q) and Kernel", o.TestBinary, o.GuestTest)
	}
	stage, err := os.MkdirTemp("", "labbench-stage-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	if err := StageStressNG(filepath.Join(stage, "stress-ng")); err != nil {
		return nil, err
	}
	cfg := o.Config
	cfg.StressNG = "/opt/stress-ng"
	files := []lab.Copy{{Host: o.TestBinary, Guest: "/usr/local/bin/bench.test"}, {Host: filepath.Join(stage, "stress-ng"), Guest: cfg.StressNG}}
	if slices.Contains(cfg.Workloads, Wrk) {
		cfg.Wrk = "/opt/wrk"
		wdir := filepath.Join(stage, "wrk")
		if err := StageWrk(wdir); err != nil {
			return nil, err
		}
		files = append(files, lab.Copy{Host: wdir, Guest: cfg.Wrk})
	}
	var peerReport *PeerReport
	if cfg.usesPeers() {
		more, rep, err := stagePeers(&cfg, o.Peers, o.PeersErr)
		if err != nil {
			return nil, err
		}
		files, peerReport = append(files, more...), rep
	}
	cj, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	host := describeHost()
	sampler := &hostSampler{out: o.Console, maxCores: host.QemuMaxCores, hostCPUs: host.CPUs, samples: map[int]*HostSample{}}
	out, err := os.MkdirTemp("", "labbench-out-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 60 * time.Minute
	}
	res, err := lab.Run(ctx, lab.Options{
		Kernel:  o.Kernel,
		Files:   files,
		Command: []string{"/usr/local/bin/bench.test", "-test.run", o.GuestTest, "-test.v", "-test.count=1", "-test.timeout", "0"},
		Env:     map[string]string{ConfigEnv: string(cj)},
		Console: sampler,
		OutDir:  out,
		Timeout: timeout,
		CPUs:    o.CPUs,
		Sockets: o.Sockets,
	})
	sampler.flush()
	var r Results
	if err != nil {
		// The guest died: fall back on what it echoed on the console.
		r = sampler.echo
		if len(r.Cells) == 0 {
			return nil, err
		}
		r.Partial, r.Peers = true, peerReport
		sampler.addHost(&r, host)
		return &r, fmt.Errorf("%w (keeping the %d cells the guest echoed on its console)", err, len(r.Cells))
	}
	b, rerr := os.ReadFile(filepath.Join(out, "bench.json"))
	if rerr != nil {
		return nil, fmt.Errorf("the guest wrote no results (exit status %d): %w", res.ExitCode, rerr)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("guest results: %w", err)
	}
	sampler.addHost(&r, host)
	r.Peers = peerReport
	if res.ExitCode != 0 {
		return &r, fmt.Errorf("the guest side failed (exit status %d); see the [guest] console lines", res.ExitCode)
	}
	return &r, nil
}

// StageStressNG copies the host's stress-ng, its shared libraries and the
// dynamic loader into dir. The guest has no libc; stress-ng runs as
// "dir/ld.so --library-path dir/lib dir/stress-ng". Files are copied
// without execute bits (the lab refuses dynamically linked executables;
// the loader maps them anyway), the loader itself is static.
func StageStressNG(dir string) error {
	return stageWithLoader("stress-ng", "stress-ng", dir)
}

// stageWithLoader copies the program name (Debian package pkg), its
// shared libraries and the dynamic loader into dir: dir/ld.so,
// dir/lib/*, dir/<name> (see StageStressNG).
func stageWithLoader(name, pkg, dir string) error {
	bin, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%s not found in PATH: install the %s package", name, pkg)
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", bin, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		return err
	}
	loader := ""
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			if err := copyFile(f[2], filepath.Join(dir, "lib", filepath.Base(f[2])), 0o644); err != nil {
				return err
			}
		case len(f) >= 1 && strings.HasPrefix(f[0], "/") && strings.Contains(f[0], "ld-linux"):
			loader = f[0]
		}
	}
	if loader == "" {
		return fmt.Errorf("ldd %s named no dynamic loader:\n%s", bin, out)
	}
	if err := copyFile(loader, filepath.Join(dir, "ld.so"), 0o755); err != nil {
		return err
	}
	return copyFile(bin, filepath.Join(dir, name), 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src) // follows symlinks: the guest gets real files
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// hostSampler passes the guest console through and samples the host's
// load and qemu's CPU time at each cell marker.
type hostSampler struct {
	out      io.Writer
	maxCores float64
	hostCPUs int

	mu      sync.Mutex
	lines   lab.LineBuffer
	echo    Results // the guest's console echo of its results
	qemuPID int
	open    map[int]snapshot
	samples map[int]*HostSample
}

type snapshot struct {
	at         time.Time
	busy, qemu time.Duration
}

func (h *hostSampler) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines.Feed(p, h.line)
	if h.out != nil {
		return h.out.Write(p)
	}
	return len(p), nil
}

func (h *hostSampler) flush() {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, _ := h.lines.Rest()
	h.line(l)
}

func (h *hostSampler) line(l string) {
	for marker, dst := range map[string]any{headerJSONMarker: &h.echo, cellJSONMarker: &Cell{}, pipeJSONMarker: &Pipe{}} {
		i := strings.Index(l, marker)
		if i < 0 {
			continue
		}
		if json.Unmarshal([]byte(l[i+len(marker):]), dst) != nil {
			return // a line mangled by interleaved kernel messages: /out has it
		}
		switch v := dst.(type) {
		case *Cell:
			h.echo.Cells = append(h.echo.Cells, *v)
		case *Pipe:
			h.echo.Pipe = append(h.echo.Pipe, *v)
		}
		return
	}
	i := strings.Index(l, cellMarker)
	if i < 0 {
		return
	}
	f := strings.Fields(l[i+len(cellMarker):])
	if len(f) != 2 {
		return
	}
	idx, err := strconv.Atoi(f[0])
	if err != nil {
		return
	}
	if h.qemuPID == 0 {
		h.qemuPID = findQemu()
	}
	now := snapshot{at: time.Now(), busy: hostBusy(), qemu: procCPU(h.qemuPID)}
	switch f[1] {
	case "start":
		if h.open == nil {
			h.open = map[int]snapshot{}
		}
		h.open[idx] = now
	case "end":
		s, ok := h.open[idx]
		if !ok {
			return
		}
		wall := now.at.Sub(s.at).Seconds()
		if wall <= 0 {
			return
		}
		hs := &HostSample{Load1: load1(), BusyCores: (now.busy - s.busy).Seconds() / wall, QemuCores: (now.qemu - s.qemu).Seconds() / wall}
		// Starved: qemu got well under what it can use while the host was
		// saturated (an idle guest leaves qemu idle too: not starved).
		hs.Starved = h.qemuPID != 0 && hs.QemuCores < starvedShare*h.maxCores && hs.BusyCores > 0.9*float64(h.hostCPUs)
		h.samples[idx] = hs
	}
}

func (h *hostSampler) addHost(r *Results, host Host) {
	r.Host = &host
	for i := range r.Cells {
		r.Cells[i].Host = h.get(r.Cells[i].Index)
	}
}

func (h *hostSampler) get(idx int) *HostSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.samples[idx]
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports here.
const clockTick = 10 * time.Millisecond

// findQemu returns the pid of our qemu child, 0 if none.
func findQemu() int {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, f := procStat(pid)
		if strings.HasPrefix(comm, "qemu-system") && len(f) > 1 && f[1] == strconv.Itoa(self) {
			return pid
		}
	}
	return 0
}

// procStat returns a process's comm and the /proc/pid/stat fields after
// it (state first).
func procStat(pid int) (string, []string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", nil
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", nil
	}
	return s[open+1 : closing], strings.Fields(s[closing+1:])
}

// procCPU is utime+stime of pid (fields 14 and 15 of /proc/pid/stat).
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	_, f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * clockTick
}

// hostBusy is the CPU time all host CPUs spent not idle (/proc/stat).
func hostBusy() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fields := strings.Fields(sc.Text())
	var busy int64
	for i, v := range fields[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 7 { // idle, iowait, steal; guest time is already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick
}

func load1() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func describeHost() Host {
	h := Host{Date: time.Now().UTC().Format(time.RFC3339), Load1Before: load1(), Accel: os.Getenv("SCX_SLO_LAB_ACCEL")}
	if h.Accel == "" {
		h.Accel = "tcg,thread=single"
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				h.CPUs++
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
		h.MemoryMB = kb / 1024
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := exec.Command("qemu-system-x86_64", "--version").Output(); err == nil {
		h.Qemu, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	}
	h.QemuMaxCores = 1
	if strings.Contains(h.Accel, "thread=multi") || strings.HasPrefix(h.Accel, "kvm") {
		h.QemuMaxCores = 2 // the lab's default vCPU count
	}
	return h
}
