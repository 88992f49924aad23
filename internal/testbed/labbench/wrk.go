package labbench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// Wrk is the closed-loop HTTP workload: Debian's wrk keeps WrkConns
// connections busy against the same Go server as HTTP, both in the
// latency cgroup. A stalled server makes wrk send less, not wait longer
// (coordinated omission), so its percentiles flatter every setup; HTTP's
// open-loop figures stay the headline and wrk's requests/s say how much
// the server got through.
const Wrk = "wrk"

// WrkReport is what the wrk workload prints.
type WrkReport struct {
	Requests   int     `json:"requests"`
	Seconds    float64 `json:"seconds"`
	Errors     int     `json:"errors"` // connect, read, write, timeout and non-2xx
	P50Us      int64   `json:"p50_us"`
	P90Us      int64   `json:"p90_us"`
	P99Us      int64   `json:"p99_us"`
	MaxUs      int64   `json:"max_us"`
	OverBudget float64 `json:"over_budget"` // fraction of requests slower than WRK_BUDGET
}

// WrkRun is a wrk cell's own figures beside its Summary.
type WrkRun struct {
	Conns          int     `json:"conns"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	Errors         int     `json:"errors,omitempty"`
}

func init() {
	workload.Register("wrk", func() (any, error) { return runWrk() })
}

// wrkScript makes wrk print its result as one JSON line. The share over
// budget is found by bisecting wrk's percentiles (to 0.01 %): walking its
// histogram with latency(i) rescans it from the start for every value.
const wrkScript = `budget_us = tonumber(os.getenv("WRK_BUDGET_US"))
done = function(summary, latency, requests)
  local over = 0
  if summary.requests > 0 and latency.max > budget_us then
    local lo, hi = 0, 100
    for _ = 1, 14 do
      local mid = (lo + hi) / 2
      if latency:percentile(mid) <= budget_us then lo = mid else hi = mid end
    end
    over = (100 - lo) / 100
  end
  local e = summary.errors
  io.write(string.format('wrk-json {"requests":%d,"seconds":%f,"errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"over_budget":%f}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, over))
end
`

// runWrk serves like runHTTP and drives the server with wrk (WRK_DIR holds
// it staged with its loader) for RUN_FOR over WRK_CONNS connections.
func runWrk() (*WrkReport, error) {
	p := &workload.Params{}
	total := p.Duration("RUN_FOR")
	work := p.Duration("HTTP_WORK")
	budget := p.Duration("WRK_BUDGET")
	conns := p.Int("WRK_CONNS")
	if err := p.Err(); err != nil {
		return nil, err
	}
	dir := os.Getenv("WRK_DIR")
	if dir == "" {
		return nil, fmt.Errorf("WRK_DIR is empty: the directory with wrk, ld.so and lib/")
	}
	url, stop, err := serveSpin(work)
	if err != nil {
		return nil, err
	}
	defer stop()
	script := filepath.Join(os.TempDir(), fmt.Sprintf("wrk-%d.lua", os.Getpid()))
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, err
	}
	defer os.Remove(script)
	// wrk takes whole seconds.
	secs := max(1, int(total.Round(time.Second).Seconds()))
	cmd := exec.Command(filepath.Join(dir, "ld.so"), "--library-path", filepath.Join(dir, "lib"), filepath.Join(dir, "wrk"),
		"-t1", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(secs)+"s", "--timeout", "2s", "-s", script, url)
	cmd.Env = append(os.Environ(), "WRK_BUDGET_US="+strconv.FormatInt(budget.Microseconds(), 10))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("wrk: %w: %s", err, out.String())
	}
	return parseWrk(out.String())
}

// parseWrk finds the script's JSON line in wrk's output.
func parseWrk(out string) (*WrkReport, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wrk-json "); ok {
			var r WrkReport
			if err := json.Unmarshal([]byte(v), &r); err != nil {
				return nil, fmt.Errorf("wrk's result line %q: %w", v, err)
			}
			return &r, nil
		}
	}
	return nil, fmt.Errorf("wrk printed no result line: %s", out)
}

// summary turns wrk's figures into the cell's Summary.
func (r *WrkReport) summary() Summary {
	s := Summary{N: r.Requests, P50Ns: r.P50Us * 1000, P90Ns: r.P90Us * 1000, P99Ns: r.P99Us * 1000, MaxNs: r.MaxUs * 1000}
	s.OverBudget = r.OverBudget
	return s
}

// StageWrk copies the host's wrk with its libraries and loader into dir,
// like StageStressNG.
func StageWrk(dir string) error {
	return stageWithLoader("wrk", "wrk", dir)
}

// wrkCell runs the wrk workload in the latency cgroup and fills the cell.
func (g *guest) wrkCell(c *Cell) error {
	if g.cfg.Wrk == "" {
		return fmt.Errorf("Config.Wrk is empty: the host must copy wrk into the guest")
	}
	cmd, err := command("wrk", g.lat.fd, 2, map[string]string{"RUN_FOR": g.cfg.Cell.String(), "HTTP_WORK": g.cfg.HTTPWork.String(),
		"WRK_BUDGET": g.cfg.HTTPBudget.String(), "WRK_CONNS": strconv.Itoa(g.cfg.WrkConns), "WRK_DIR": g.cfg.Wrk})
	if err != nil {
		return err
	}
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("wrk workload: %w", err)
	}
	var r WrkReport
	if err := json.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("wrk report: %w", err)
	}
	c.Latency, c.Errors = r.summary(), r.Errors
	c.Wrk = &WrkRun{Conns: g.cfg.WrkConns, Errors: r.Errors}
	if r.Seconds > 0 {
		c.Wrk.RequestsPerSec = float64(r.Requests) / r.Seconds
	}
	return nil
}
