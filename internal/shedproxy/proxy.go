// Package shedproxy is the reverse proxy of scx-slo-shed: HTTP/1.1 with
// keep-alive and h2c towards clients, streaming in both directions,
// Upgrade (websocket) passthrough, X-Forwarded-* headers, and errors
// mapped to 502/504 without leaking upstream details.
package shedproxy

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// Options configure the proxy towards the upstream.
type Options struct {
	Upstream *url.URL
	// PreserveHost passes the client's Host header on (a sidecar is
	// invisible to the app); otherwise the upstream's host is sent.
	PreserveHost bool
	// H2C speaks cleartext HTTP/2 to the upstream (no Upgrade passthrough
	// then: HTTP/2 has no Upgrade).
	H2C                   bool
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration // 0: wait as long as the client does
	IdleConnTimeout       time.Duration
	MaxIdleConns          int
	Log                   log.Logger // nil: no logging
}

// ParseUpstream checks --upstream: an absolute http(s) URL with a host,
// no query or fragment.
func ParseUpstream(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		return nil, fmt.Errorf("--upstream=%q: scheme must be http or https, e.g. http://127.0.0.1:8081", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--upstream=%q: %v", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("--upstream=%q: scheme must be http or https", s)
	case u.Host == "":
		return nil, fmt.Errorf("--upstream=%q: needs a host, e.g. http://127.0.0.1:8081", s)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("--upstream=%q: must not have a query or fragment", s)
	case u.User != nil:
		return nil, fmt.Errorf("--upstream=%q: must not carry credentials", s)
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil && port == "" {
		return nil, fmt.Errorf("--upstream=%q: empty port", s)
	}
	return u, nil
}

// New returns the reverse proxy.
func New(o Options) *httputil.ReverseProxy {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // never route a sidecar's traffic through $HTTP_PROXY
		DialContext:           d.DialContext,
		MaxIdleConns:          o.MaxIdleConns,
		MaxIdleConnsPerHost:   o.MaxIdleConns,
		IdleConnTimeout:       o.IdleConnTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// Pass compressed bodies through as they are.
		DisableCompression: true,
	}
	if o.H2C {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	el := &errorLog{log: o.Log}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(o.Upstream)
			// The sidecar sits behind the pod's ingress: append to the
			// client chain it reports, and keep the host and scheme the
			// edge saw.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
			for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v := pr.In.Header.Get(h); v != "" {
					pr.Out.Header.Set(h, v)
				}
			}
			if o.PreserveHost {
				pr.Out.Host = pr.In.Host
			}
		},
		Transport:    tr,
		ErrorHandler: el.handle,
		// Streams (unknown length, event streams) are flushed on every
		// write by ReverseProxy itself; bodies of known length are not.
		FlushInterval: 0,
	}
}

// errorLog answers upstream failures and logs at most one line a second,
// so a dead upstream does not flood the log.
type errorLog struct {
	log        log.Logger
	last       atomic.Int64
	suppressed atomic.Int64
}

func (e *errorLog) handle(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	var ne net.Error
	switch {
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		status = 499
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		status = http.StatusGatewayTimeout
	}
	if e.log != nil {
		now := time.Now().UnixNano()
		last := e.last.Load()
		if now-last >= int64(time.Second) && e.last.CompareAndSwap(last, now) {
			level.Warn(e.log).Log("msg", "upstream request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err, "suppressed", e.suppressed.Swap(0))
		} else {
			e.suppressed.Add(1)
		}
	}
	w.WriteHeader(status)
}

// ServerOptions are the client-facing timeouts.
type ServerOptions struct {
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	Log               log.Logger // nil: net/http's default
}

// NewServer serves h with HTTP/1.1 and prior-knowledge h2c on one port.
// It sets no read or write timeout on bodies: streams and upgraded
// connections may last as long as the client wants.
func NewServer(h http.Handler, o ServerOptions) *http.Server {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		Protocols:         p,
	}
	if o.Log != nil {
		s.ErrorLog = stdlog.New(log.NewStdlibAdapter(level.Warn(o.Log)), "", 0)
	}
	return s
}
