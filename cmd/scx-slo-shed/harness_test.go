package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
)

// shedBinary builds ./cmd/scx-slo-shed once per test process.
func shedBinary(t testing.TB) string {
	t.Helper()
	if labtest.InGuest() {
		return guestShed // placed there by the host; no Go toolchain here
	}
	return exportertest.BuildPackage(t, "./cmd/scx-slo-shed")
}

type lockedBuffer = exportertest.SyncBuffer

// shedProc is a running scx-slo-shed.
type shedProc struct {
	Addr, MetricsAddr string
	cmd               *exec.Cmd
	log               *lockedBuffer
	done              chan error
}

// runShed runs the binary to completion (for start-up errors).
func runShed(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(shedBinary(t), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startShed starts the proxy on free loopback ports and waits until it
// accepts connections.
func startShed(t testing.TB, args ...string) *shedProc { return startShedIn(t, "", args...) }

// startShedIn starts the proxy inside the cgroup whose cgroup.procs file
// is procs (if not empty): a shell moves itself there and execs the
// binary, so the proxy runs in the cgroup from its first instruction.
func startShedIn(t testing.TB, procs string, args ...string) *shedProc {
	t.Helper()
	p := &shedProc{Addr: exportertest.FreeAddr(t), MetricsAddr: exportertest.FreeAddr(t), log: &lockedBuffer{}, done: make(chan error, 1)}
	argv := append([]string{shedBinary(t), "--listen=" + p.Addr, "--web.listen-address=" + p.MetricsAddr}, args...)
	if procs != "" {
		argv = append([]string{"/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, procs}, argv...)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range []string{p.Addr, p.MetricsAddr} {
		for {
			select {
			case err := <-p.done:
				p.done <- err
				t.Fatalf("scx-slo-shed exited early: %v\n%s", err, p.log.String())
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("scx-slo-shed did not listen on %s\n%s", addr, p.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p
}

func (p *shedProc) URL(path string) string { return "http://" + p.Addr + path }

func (p *shedProc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

// wait returns the exit error, or fails after d.
func (p *shedProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("scx-slo-shed still running after %v\n%s", d, p.log.String())
		return nil
	}
}

// scrape reads the proxy's own /metrics.
func (p *shedProc) scrape(t testing.TB) exportertest.Families {
	t.Helper()
	resp, err := http.Get("http://" + p.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// closedURL is an http URL on a loopback port nobody listens on.
func closedURL(t *testing.T) string { return "http://" + exportertest.FreeAddr(t) }

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
