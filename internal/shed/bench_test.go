package shed

import (
	"context"

	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkAdmit is the request path's cost: classify by the default
// probe rules plus one priority rule, load the snapshot, draw, count.
func BenchmarkAdmit(b *testing.B) {
	for _, overloaded := range []bool{false, true} {
		name := "calm"
		if overloaded {
			name = "shedding"
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Interval = time.Millisecond
			cfg.Controller.EnterAfter = 0
			cfg.Rules = append([]Rule{{Class: "checkout", Action: Pass, Method: "POST", Path: "/checkout"}}, DefaultProbeRules()...)
			src := &bitSource{}
			src.on.Store(overloaded)
			s, err := New(cfg, []Source{src}, prometheus.NewRegistry(), log.NewNopLogger())
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go s.Run(ctx)
			// Until the first read the shedder fails open.
			for deadline := time.Now().Add(5 * time.Second); s.state.Load().shedding != overloaded || s.state.Load().kind != stateOK; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("the shedder never read the source")
				}
			}
			req := httptest.NewRequest("GET", "/api/items?id=1", nil)
			req.Header.Set("User-Agent", "bench/1")
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s.Admit(req)
				}
			})
		})
	}
}
