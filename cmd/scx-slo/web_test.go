package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// TestWebConfigTLSAndBasicAuth starts the exporter with a real
// --web.config.file and checks that every path it serves (metrics,
// status, overload, the landing page) needs TLS and credentials.
func TestWebConfigTLSAndBasicAuth(t *testing.T) {
	exportertest.RequireRoot(t)
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webCfg, []byte("tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+
		"\nbasic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := exportertest.StartNoWait(t, "--web.config.file="+webCfg)
	e.WaitReady(t, "https")
	e.Client = exportertest.InsecureTLS()

	get := func(path, user, pass string) (int, string) {
		req, _ := http.NewRequest("GET", e.URL+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := e.Client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, e.Log())
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// What each path serves once authenticated, to tell it from an error page.
	for path, want := range map[string]string{
		"/metrics":  "scx_slo_build_info",
		"/status":   `"mode"`,
		"/overload": "null", // no SLO config: no cgroups, but the state is known
		"/":         "scx-slo",
	} {
		if code, _ := get(path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: status %d, want 401", path, code)
		}
		if code, _ := get(path, "prom", "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: status %d, want 401", path, code)
		}
		if code, body := get(path, "prom", "s3cret"); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s with the right credentials: status %d, body lacks %q:\n%.300s", path, code, want, body)
		}
		// Plain HTTP on the TLS port serves nothing.
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + e.Addr + path)
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				t.Errorf("plain HTTP served %s on a TLS listener", path)
			}
			resp.Body.Close()
		}
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scx-slo-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
