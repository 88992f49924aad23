package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/loadgen"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// nginxConf is the configuration docs/shedding.md shows, with the test's
// addresses: auth_request asks the sidecar's /admit, a refusal becomes
// 429 with the sidecar's Retry-After, and an unreachable sidecar fails
// open.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path {{dir}}/body;
    proxy_temp_path {{dir}}/proxy;
    fastcgi_temp_path {{dir}}/fastcgi;
    uwsgi_temp_path {{dir}}/uwsgi;
    scgi_temp_path {{dir}}/scgi;
    server {
        listen {{listen}};
        location / {
            auth_request /_scx_slo_admit;
            auth_request_set $scx_slo_retry_after $upstream_http_retry_after;
            error_page 403 = @scx_slo_shed;
            error_page 500 = @scx_slo_fail_open;
            proxy_pass {{upstream}};
        }
        location = /_scx_slo_admit {
            internal;
            proxy_pass {{admit}}/admit?deny=403;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_connect_timeout 100ms;
            proxy_read_timeout 100ms;
        }
        location @scx_slo_shed {
            add_header Retry-After $scx_slo_retry_after always;
            return 429 "overloaded, retry later\n";
        }
        location @scx_slo_fail_open {
            proxy_pass {{upstream}};
        }
    }
}
`

func startNginx(t *testing.T, upstream, admit string) string {
	t.Helper()
	bin := needs.Command(t, "nginx", "nginx-light")
	dir := t.TempDir()
	addr := exportertest.FreeAddr(t)
	conf := strings.NewReplacer("{{dir}}", dir, "{{listen}}", addr, "{{upstream}}", upstream, "{{admit}}", admit).Replace(nginxConf)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-e", "stderr", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not come up:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNginxAuthRequest wires the sidecar's decisions into NGINX by
// configuration alone, with the real exporter's overload bit.
func TestNginxAuthRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the exporter")
	}
	exportertest.RequireRoot(t)
	needs.BPFFS(t, "/sys/fs/bpf")
	needs.Command(t, "nginx", "nginx-light")
	cg := exportertest.NewCgroups(t, "auto")
	app := cg.Make(t, "app")
	pins := fmt.Sprintf("/sys/fs/bpf/scx-slo-shed-nginx-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.RemoveAll(pins) })
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeAtomic(t, cfg, "slos:\n  - cgroup: "+app+"\n    latencyBudget: 1ns\n    target: 0.9\n")
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--overload.pin-dir="+pins, "--slo.resync-interval=100ms")
	cg.StartWorkload(t, app, "probe", 1)
	b := newBackend(t)
	// The sidecar runs in a child of the SLO cgroup and finds it with
	// --cgroup=auto, as in a pod (container cgroup under the pod's).
	sidecar := cg.Make(t, "app/sidecar")
	side := startShedIn(t, filepath.Join(cg.H.Dir(sidecar), "cgroup.procs"), "--upstream="+b.srv.URL, "--cgroup=auto",
		"--state.pin-dir="+pins, "--state.url="+e.URL, "--shed.floor=0.2", "--shed.decrease=0.5", "--shed.step=50ms")
	waitMetric(t, side, "scx_slo_shed_admitted_ratio", nil, "shedding to reach its floor", func(v float64) bool { return v == 0.2 })
	if !contains(side.log.String(), "cgroups="+sidecar+","+app) {
		t.Errorf("--cgroup=auto did not resolve to %s then %s:\n%s", sidecar, app, side.log.String())
	}
	front := startNginx(t, b.srv.URL, "http://"+side.MetricsAddr)

	run := func(path string) runStats {
		rs, err := loadgen.Run(context.Background(), loadgen.Config{URL: front + path, Rate: 200, Count: 200, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return summarize(t, rs, http.StatusTooManyRequests)
	}
	s := run("/echo")
	t.Logf("through nginx while overloaded: %+v", s)
	if s.failed != 0 || s.ok+s.shed != 200 || s.shed < 100 {
		t.Errorf("nginx with auth_request while overloaded: %+v; want about 160 of 200 shed, all answered", s)
	}
	if p := run("/healthz"); p.ok != 200 {
		t.Errorf("probes through nginx: %+v", p)
	}
	// The sidecar goes away: nginx fails open.
	side.stop()
	if s := run("/echo"); s.ok != 200 {
		t.Errorf("nginx with the sidecar down: %+v, want all admitted", s)
	}
}
