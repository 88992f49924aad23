// Package shed sheds HTTP load early while the kernel says a cgroup is
// blowing its CPU latency budget: rather than queue a request it would
// answer too late, the service answers 429 (or 503) with Retry-After at
// once.
//
// A Shedder reads the cgroup's overload bit every few milliseconds in its
// own goroutine (Run) from a list of Sources, the exporter's pinned BPF map
// first (PinnedSource, two memory loads per read) and its /overload HTTP
// endpoint second (HTTPSource). A Controller turns the bit into an admitted
// fraction (AIMD with hysteresis, a floor and a budget back-off). The
// request path (Admit, Middleware) classifies the request by Rules and
// compares a random draw with the fraction held in an atomic pointer: it
// never waits for a read. When no source can be read, every request is
// admitted (fail open), counted in scx_slo_shed_state_read_errors_total and
// logged once per outage. Pins whose heartbeat stopped (an exporter killed
// without cleaning up) count as unreadable after overload.StaleAfter, and
// each such read is counted in scx_slo_shed_state_stale_total.
//
// In process:
//
//	s, err := shed.New(shed.DefaultConfig(), []shed.Source{pinned, viaHTTP}, prometheus.DefaultRegisterer, logger) // a go-kit log.Logger
//	go s.Run(ctx)
//	http.ListenAndServe(":8080", s.Middleware(mux))
//
// cmd/scx-slo-shed wraps the same Shedder around a reverse proxy.
package shed
