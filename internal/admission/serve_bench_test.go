package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
)

type fixedPolicies []v1alpha1.SLOPolicy

func (f fixedPolicies) In(string) []v1alpha1.SLOPolicy { return f }

// What keep-alives off costs: a mutating request over loopback on a fresh
// TLS connection each time (as Serve runs) against the same request on
// one reused connection (the baseline), measured alternately in one run.
// Reported: ns per request of each and their ratio.
func BenchmarkAdmissionFreshConnection(b *testing.B) {
	ca := newTestCA(b)
	dir := b.TempDir()
	ca.issue(b, dir, 7)
	certs, err := LoadCerts(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), nil)
	if err != nil {
		b.Fatal(err)
	}
	h := &Handler{Policies: fixedPolicies{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"},
		Spec: v1alpha1.SLOPolicySpec{LatencyBudget: "2ms"}}}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, certs, h) }()
	defer func() { cancel(); <-done }()
	// The baseline: the same handler and certificate, keep-alives on.
	lb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	base := &http.Server{Handler: h, TLSConfig: &tls.Config{GetCertificate: certs.GetCertificate}}
	go func() { _ = base.ServeTLS(lb, "", "") }()
	defer base.Close()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	pod, _ := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api"}}}})
	body, _ := json.Marshal(&admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID("u"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Namespace: "shop", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: pod}}})
	call := func(addr string) time.Duration {
		start := time.Now()
		resp, err := client.Post("https://"+addr+MutatePath, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var out admissionv1.AdmissionReview
		err = json.NewDecoder(resp.Body).Decode(&out)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || out.Response == nil || len(out.Response.Patch) == 0 {
			b.Fatalf("no patch: %v %+v", err, out.Response)
		}
		return time.Since(start)
	}
	var fresh, reused time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fresh += call(l.Addr().String())
		reused += call(lb.Addr().String())
	}
	b.ReportMetric(float64(fresh.Nanoseconds())/float64(b.N), "ns/fresh-req")
	b.ReportMetric(float64(reused.Nanoseconds())/float64(b.N), "ns/reused-req")
	b.ReportMetric(float64(fresh)/float64(reused), "fresh/reused")
}
