package labbench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/loadgen"
	"github.com/scx-slo/scx-slo/internal/testbed/pingpong"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// LatencyReport is what the latency workloads print: one sample per
// wakeup or request, in nanoseconds.
type LatencyReport struct {
	SamplesNs []int64 `json:"samples_ns"`
	Errors    int     `json:"errors,omitempty"` // failed requests (http)
}

// SpawnReport is the fork/exec job's output.
type SpawnReport struct {
	Spawns  int     `json:"spawns"`
	Seconds float64 `json:"seconds"`
}

// PipeReport is one ping-pong measurement.
type PipeReport struct {
	RoundTripNs int64 `json:"round_trip_ns"`
}

// The guest re-runs its test binary as these workloads; the 1 ms probe
// is internal/workload's own.
func init() {
	workload.Register("http", func() (any, error) { return runHTTP() })
	workload.Register("msg", func() (any, error) { return runMsg() })
	workload.Register("forkexec", func() (any, error) { return runForkExec() })
	workload.Register("pipe", func() (any, error) { return runPipe() })
}

// command re-runs this binary as the named workload (see
// workload.CommandWith).
var command = workload.CommandWith

// runHTTP serves on loopback and drives itself with the open-loop
// generator (HTTP_RATE requests/s for RUN_FOR, HTTP_WORK of CPU per
// request). Latency runs from each request's scheduled send time, so a
// stalled server or client counts as latency, not as fewer requests.
func runHTTP() (*LatencyReport, error) {
	p := &workload.Params{}
	total := p.Duration("RUN_FOR")
	work := p.Duration("HTTP_WORK")
	rate := p.Int("HTTP_RATE")
	if err := p.Err(); err != nil {
		return nil, err
	}
	url, stop, err := serveSpin(work)
	if err != nil {
		return nil, err
	}
	defer stop()
	client := loadgen.NewClient(64)
	defer client.CloseIdleConnections()
	// Open the connections before the clock starts: a handshake is not
	// what the benchmark measures.
	warm, _ := loadgen.Run(context.Background(), loadgen.Config{URL: url, Rate: 100, Count: 8, Timeout: 5 * time.Second, Client: client})
	if ok := loadgen.Count(warm, func(r loadgen.Result) bool { return r.Err == nil }); ok == 0 {
		return nil, fmt.Errorf("warm-up: no request to %s succeeded: %v", url, warm[0].Err)
	}
	rs, err := loadgen.Run(context.Background(), loadgen.Config{URL: url, Rate: float64(rate),
		Count: max(1, int(total.Seconds()*float64(rate))), Timeout: 2 * time.Second, Client: client})
	if err != nil {
		return nil, err
	}
	rep := &LatencyReport{SamplesNs: make([]int64, 0, len(rs))}
	for _, r := range rs {
		if r.Err != nil || r.Status != http.StatusOK {
			rep.Errors++
			continue
		}
		rep.SamplesNs = append(rep.SamplesNs, int64(r.Latency))
	}
	return rep, nil
}

// serveSpin serves HTTP on loopback, spending work of CPU per request;
// it returns the URL and a function that stops the server.
func serveSpin(work time.Duration) (string, func() error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		spin(work)
		w.Write([]byte("ok\n"))
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/", srv.Close, nil
}

// runMsg is a message-passing wakeup workload in the manner of schbench:
// a message thread wakes MSG_WORKERS worker threads every MSG_PERIOD
// through pipes; each worker records how long after the post it ran,
// spins MSG_WORK and answers; the message thread waits for every answer.
func runMsg() (*LatencyReport, error) {
	p := &workload.Params{}
	total := p.Duration("RUN_FOR")
	period := p.Duration("MSG_PERIOD")
	work := p.Duration("MSG_WORK")
	workers := p.Int("MSG_WORKERS")
	if err := p.Err(); err != nil {
		return nil, err
	}
	var reply [2]int
	if err := syscall.Pipe(reply[:]); err != nil {
		return nil, err
	}
	type worker struct {
		in      [2]int
		samples []int64
		done    chan struct{}
	}
	ws := make([]*worker, workers)
	for i := range ws {
		w := &worker{done: make(chan struct{})}
		if err := syscall.Pipe(w.in[:]); err != nil {
			return nil, err
		}
		ws[i] = w
		go func() {
			// One OS thread per worker, blocked in read(2): every message
			// is a real wakeup for the kernel scheduler.
			runtime.LockOSThread()
			defer close(w.done)
			var buf [8]byte
			for {
				if n, err := syscall.Read(w.in[0], buf[:]); err != nil || n != 8 {
					return
				}
				posted := int64(binary.LittleEndian.Uint64(buf[:]))
				if posted == 0 {
					return // stop message
				}
				w.samples = append(w.samples, monotonic()-posted)
				spin(work)
				syscall.Write(reply[1], buf[:1])
			}
		}()
	}
	runtime.LockOSThread()
	var buf [8]byte
	ack := make([]byte, workers)
	pace := workload.NewPacer(period)
	for end := monotonic() + int64(total); monotonic() < end; {
		pace.Wait()
		binary.LittleEndian.PutUint64(buf[:], uint64(monotonic()))
		for _, w := range ws {
			if _, err := syscall.Write(w.in[1], buf[:]); err != nil {
				return nil, err
			}
		}
		for got := 0; got < workers; {
			n, err := syscall.Read(reply[0], ack[:workers-got])
			if err != nil {
				return nil, err
			}
			got += n
		}
	}
	rep := &LatencyReport{}
	binary.LittleEndian.PutUint64(buf[:], 0)
	for _, w := range ws {
		syscall.Write(w.in[1], buf[:])
		<-w.done
		rep.SamplesNs = append(rep.SamplesNs, w.samples...)
	}
	return rep, nil
}

// runForkExec spawns FORKEXEC_BIN back to back, paced to at most
// FORKEXEC_RATE per second, until SIGTERM or RUN_FOR. Its throughput
// (spawns per second) drops when the batch cgroup is starved.
func runForkExec() (*SpawnReport, error) {
	p := &workload.Params{}
	total := p.Duration("RUN_FOR")
	rate := p.Int("FORKEXEC_RATE")
	if err := p.Err(); err != nil {
		return nil, err
	}
	bin := os.Getenv("FORKEXEC_BIN")
	if bin == "" {
		return nil, fmt.Errorf("FORKEXEC_BIN is empty: want the program to spawn, e.g. /bin/true")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	rep := &SpawnReport{}
	start := time.Now()
	// A stop arrives at most one interval (1/FORKEXEC_RATE) late.
	pace := workload.NewPacer(time.Second / time.Duration(rate))
	for ctx.Err() == nil {
		if err := exec.Command(bin).Run(); err != nil {
			return nil, fmt.Errorf("running %s: %w", bin, err)
		}
		rep.Spawns++
		pace.Wait()
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// runPipe is one ping-pong measurement of PIPE_ROUNDS round trips.
func runPipe() (*PipeReport, error) {
	n, err := workload.IntParam("PIPE_ROUNDS")
	if err != nil {
		return nil, err
	}
	rt, err := pingpong.Run(n)
	if err != nil {
		return nil, err
	}
	return &PipeReport{RoundTripNs: int64(rt)}, nil
}

var monotonic = workload.MonotonicNs

// spin burns CPU for d of wall time; the result only keeps the loop alive.
func spin(d time.Duration) uint64 {
	end := monotonic() + int64(d)
	x := uint64(d)
	for monotonic() < end {
		for i := 0; i < 100; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	return x
}
