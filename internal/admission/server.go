package admission

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"
)

// Serve answers admission requests on l over TLS until ctx ends, then
// finishes the requests in flight. Keep-alives and HTTP/2 are off: each
// request is one TLS handshake, which is what lets a rotated certificate
// take effect at the very next request; admission traffic (pod
// creations) is light enough for that.
func Serve(ctx context.Context, l net.Listener, certs *Certs, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // no HTTP/2
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.GetCertificate,
			NextProtos:     []string{"http/1.1"},
		},
	}
	srv.SetKeepAlivesEnabled(false)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		case <-done:
		}
	}()
	err := srv.ServeTLS(l, "", "")
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
