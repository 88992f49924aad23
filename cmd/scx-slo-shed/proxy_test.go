package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// backend is the app behind the proxy, on loopback in the test process.
type backend struct {
	srv      *httptest.Server
	newConns atomic.Int64
	release  chan struct{} // lets /stream finish
	holding  chan struct{} // /hold has a request in its handler
	unhold   chan struct{} // lets /hold finish (closed by letGo)
	letGoOne sync.Once
}

// letGo lets /hold requests finish.
func (b *backend) letGo() { b.letGoOne.Do(func() { close(b.unhold) }) }

func newBackend(t *testing.T) *backend {
	b := &backend{release: make(chan struct{}), holding: make(chan struct{}, 1), unhold: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"proto": r.Proto, "host": r.Host,
			"xff": r.Header.Get("X-Forwarded-For"), "xfh": r.Header.Get("X-Forwarded-Host"), "xfp": r.Header.Get("X-Forwarded-Proto"),
			"custom": r.Header.Get("X-Custom"),
		})
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-b.release
		io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		select {
		case b.holding <- struct{}{}:
		default:
		}
		select {
		case <-b.unhold:
			io.WriteString(w, "held")
		case <-r.Context().Done(): // the proxy gave up
		}
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo-lines" {
			http.Error(w, "want Upgrade: echo-lines", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo-lines\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			rw.WriteString("echo: " + line)
			rw.Flush()
		}
	})
	b.srv = httptest.NewUnstartedServer(mux)
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.newConns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	t.Cleanup(b.letGo) // runs first: Close waits for handlers
	return b
}

// failOpenArgs point the state reader nowhere: the proxy admits everything.
func failOpenArgs(t *testing.T) []string {
	return []string{"--cgroup=/", "--state.pin-dir=", "--state.url=" + closedURL(t)}
}

func TestProxy(t *testing.T) {
	b := newBackend(t)
	p := startShed(t, append(failOpenArgs(t), "--upstream="+b.srv.URL, "--upstream.response-header-timeout=300ms")...)
	client := &http.Client{Timeout: 10 * time.Second}

	t.Run("keep-alive", func(t *testing.T) {
		before := b.newConns.Load()
		reused := 0
		for i := 0; i < 20; i++ {
			trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
				if ci.Reused {
					reused++
				}
			}}
			req, _ := http.NewRequest("GET", p.URL("/echo"), nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if reused < 19 {
			t.Errorf("client reused its connection to the proxy %d of 19 times", reused)
		}
		if n := b.newConns.Load() - before; n > 1 {
			t.Errorf("proxy opened %d upstream connections for 20 sequential requests, want at most 1", n)
		}
	})

	t.Run("x-forwarded and host", func(t *testing.T) {
		req, _ := http.NewRequest("GET", p.URL("/echo"), nil)
		req.Host = "shop.example"
		req.Header.Set("X-Custom", "kept")
		req.Header.Set("X-Forwarded-For", "192.0.2.7")
		var got map[string]string
		getJSON(t, client, req, &got)
		want := map[string]string{"host": "shop.example", "xff": "192.0.2.7, 127.0.0.1", "xfh": "shop.example", "xfp": "http", "custom": "kept"}
		defer func() {
			// What the edge set is kept.
			req, _ := http.NewRequest("GET", p.URL("/echo"), nil)
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Forwarded-Host", "edge.example")
			var got map[string]string
			getJSON(t, client, req, &got)
			if got["xfp"] != "https" || got["xfh"] != "edge.example" {
				t.Errorf("inbound X-Forwarded-Proto/Host replaced: %v", got)
			}
		}()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: upstream saw %q, want %q", k, got[k], v)
			}
		}
	})

	t.Run("h2c", func(t *testing.T) {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", p.URL("/echo"), nil)
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("h2c request answered %s %s", resp.Proto, resp.Status)
		}
	})

	t.Run("streaming response", func(t *testing.T) {
		resp, err := client.Get(p.URL("/stream"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		got := make(chan string, 1)
		go func() { l, _ := r.ReadString('\n'); got <- l }()
		select {
		case l := <-got:
			if l != "first\n" {
				t.Fatalf("first chunk %q", l)
			}
		case <-time.After(5 * time.Second):
			close(b.release)
			t.Fatal("first chunk not passed on before the upstream finished the response")
		}
		close(b.release)
		if rest, _ := io.ReadAll(r); string(rest) != "second\n" {
			t.Fatalf("rest %q", rest)
		}
	})

	t.Run("streaming upload", func(t *testing.T) {
		pr, pw := io.Pipe()
		h := sha256.New()
		go func() {
			chunk := make([]byte, 64<<10)
			for i := 0; i < 160; i++ { // 10 MiB, unknown length: chunked
				for j := range chunk {
					chunk[j] = byte(i + j)
				}
				h.Write(chunk)
				pw.Write(chunk)
			}
			pw.Close()
		}()
		resp, err := client.Post(p.URL("/upload"), "application/octet-stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d %x", 160*64<<10, h.Sum(nil)); string(body) != want {
			t.Fatalf("upstream got %q, want %q", body, want)
		}
	})

	t.Run("upgrade passthrough", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo-lines\r\n\r\n")
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade answered %s", resp.Status)
		}
		for _, msg := range []string{"ping\n", "pong\n"} {
			io.WriteString(c, msg)
			if l, err := r.ReadString('\n'); err != nil || l != "echo: "+msg {
				t.Fatalf("over the upgraded connection: %q, %v", l, err)
			}
		}
	})

	t.Run("upstream timeout is 504", func(t *testing.T) {
		resp, err := client.Get(p.URL("/hold"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("an upstream that never answers: %s, want 504", resp.Status)
		}
	})

	t.Run("fail open is visible", func(t *testing.T) {
		f := p.scrape(t)
		if v, _ := f.Value("scx_slo_shed_state_read_errors_total", map[string]string{"source": "http"}); v < 1 {
			t.Errorf("scx_slo_shed_state_read_errors_total{source=http} = %v with the exporter down", v)
		}
		if v, _ := f.Value("scx_slo_shed_requests_total", map[string]string{"outcome": "admitted", "reason": "fail_open"}); v < 20 {
			t.Errorf("fail_open admissions %v, want every request so far", v)
		}
		if v, _ := f.Value("scx_slo_shed_requests_total", map[string]string{"outcome": "shed"}); v != 0 {
			t.Errorf("%v requests shed while failing open", v)
		}
		for _, name := range []string{"scx_slo_shed_admitted_ratio", "scx_slo_shed_overloaded", "scx_slo_shed_state_up"} {
			if _, ok := f.Value(name, nil); !ok {
				t.Errorf("%s missing", name)
			}
		}
		if !contains(p.log.String(), "fail open", "connection refused") {
			t.Errorf("no fail-open log line naming the cause:\n%s", p.log.String())
		}
	})
}

func getJSON(t *testing.T, c *http.Client, req *http.Request, v any) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestUpstreamDown(t *testing.T) {
	p := startShed(t, append(failOpenArgs(t), "--upstream="+closedURL(t))...)
	for i := 0; i < 3; i++ {
		resp, err := http.Get(p.URL("/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("upstream down answered %s, want 502", resp.Status)
		}
	}
	if !contains(p.log.String(), "upstream request failed", "connection refused") {
		t.Errorf("no log line for the dead upstream:\n%s", p.log.String())
	}
	// One line a second, not one per request.
	if n := strings.Count(p.log.String(), "upstream request failed"); n != 1 {
		t.Errorf("%d log lines for 3 failures within a second", n)
	}
}

// TestOneLogger: every line the sidecar writes, from main, the shedder,
// the proxy and exporter-toolkit alike, comes from the one go-kit logger
// its --log flags configure.
func TestOneLogger(t *testing.T) {
	p := startShed(t, append(failOpenArgs(t), "--upstream="+closedURL(t), "--log.format=json")...)
	resp, err := http.Get(p.URL("/")) // the proxy logs the dead upstream
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	p.stop()
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(p.log.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["level"] == nil || rec["msg"] == nil {
			t.Errorf("not a go-kit JSON line with level and msg: %q", line)
			continue
		}
		msgs = append(msgs, fmt.Sprint(rec["msg"]))
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"following the overload state", "proxying", "cannot read the overload state", "upstream request failed", "Listening on", "drained"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q line among:\n%s", want, all)
		}
	}
}

// TestBadUpstream: an upstream that answers garbage or hangs up mid-way
// gets a 502 per request, and the proxy keeps serving.
func TestBadUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn, n int) {
				defer c.Close()
				bufio.NewReader(c).ReadString('\n')
				if n%2 == 0 {
					io.WriteString(c, "SMTP ready\r\n\r\n") // not HTTP
				} // odd: hang up without a word
			}(c, n)
		}
	}()
	p := startShed(t, append(failOpenArgs(t), "--upstream=http://"+ln.Addr().String())...)
	for i := 0; i < 4; i++ {
		resp, err := http.Get(p.URL("/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("bad upstream answered %s, want 502", resp.Status)
		}
	}
	if v, _ := p.scrape(t).Value("scx_slo_shed_requests_total", map[string]string{"outcome": "admitted"}); v != 4 {
		t.Errorf("%v admissions counted, want 4", v)
	}
}

func TestDrainOnSIGTERM(t *testing.T) {
	b := newBackend(t)
	p := startShed(t, append(failOpenArgs(t), "--upstream="+b.srv.URL, "--drain-timeout=10s")...)
	done := make(chan string, 1)
	go func() {
		resp, err := http.Get(p.URL("/hold"))
		if err != nil {
			done <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- resp.Status + " " + string(body)
	}()
	select {
	case <-b.holding: // the request is in flight, in the backend
	case got := <-done:
		t.Fatalf("request ended before the drain: %s", got)
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the backend")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	// The listener closes at once, while the request is still running.
	refused := false
	for deadline := time.Now().Add(10 * time.Second); !refused && time.Now().Before(deadline); {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err != nil {
			refused = true
			break
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if !refused {
		t.Errorf("still accepting connections while draining")
	}
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("exited with a request in flight: %v\n%s", err, p.log.String())
	default:
	}
	b.letGo() // the in-flight request finishes during the drain
	if got := <-done; got != "200 OK held" {
		t.Fatalf("in-flight request during drain: %s", got)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit after drain: %v\n%s", err, p.log.String())
	}
	if !contains(p.log.String(), "draining", "drained") {
		t.Errorf("log does not show the drain:\n%s", p.log.String())
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	badRules := filepath.Join(dir, "rules.yaml")
	os.WriteFile(badRules, []byte("rules:\n  - class: checkout\n    method: post\n    path: /checkout\n"), 0o644)
	up := "--upstream=http://127.0.0.1:1"
	cases := []struct {
		args []string
		want string
	}{
		{nil, "required flag(s) '--upstream' not provided"},
		{[]string{"--upstream=127.0.0.1:8081"}, `--upstream="127.0.0.1:8081": scheme must be http or https`},
		{[]string{"--upstream=http://"}, `--upstream="http://": needs a host`},
		{[]string{"--upstream=http://h:1/?a=b"}, `--upstream="http://h:1/?a=b": must not have a query`},
		{[]string{up, "--status=500"}, "--status=500: must be 429 or 503"},
		{[]string{up, "--dry-run=maybe"}, `--dry-run="maybe": a boolean flag takes true or false`},
		{[]string{up, "--dry-run=false", "--status=500"}, "--status=500"}, // =false parses
		{[]string{up, "--shed.floor=1.5"}, "--shed.floor 1.5: must be between 0 and 1"},
		{[]string{up, "--shed.decrease=1"}, "--shed.decrease 1:"},
		{[]string{up, "--rules.file=" + badRules}, badRules + `:2: rules[0].method: "post": methods are case-sensitive; write "POST"`},
		{[]string{up, "--rules.file=" + filepath.Join(dir, "missing.yaml")}, "reading rules file"},
		{[]string{up, "--rule=class=a,path=api"}, `--rule: path: "api": must start with /`},
		{[]string{up, "--cgroup=kubepods/pod1"}, `--cgroup="kubepods/pod1": must be auto or a cgroup path starting with /`},
		{[]string{up, "--cgroup=/no/such/cgroup/here"}, `--cgroup="/no/such/cgroup/here": cgroup /no/such/cgroup/here`},
		{[]string{up, "--cgroup=/", "--state.pin-dir=", "--state.url="}, "nothing to read the overload state from"},
		{[]string{up, "--cgroup=/", "--state.url=localhost:9817"}, `--state.url="localhost:9817"`},
		{[]string{up, "--cgroup=/", "--state.pin-dir=", "--listen=127.0.0.1:99999"}, `--listen="127.0.0.1:99999"`},
	}
	for _, tc := range cases {
		out, err := runShed(t, tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%v: want failure mentioning %q, got %v:\n%s", tc.args, tc.want, err, out)
		}
	}
}
