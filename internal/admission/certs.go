package admission

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
)

// Certs serves the certificate and key in two PEM files and picks up a
// replacement at the next TLS handshake: it rereads both small files on
// every handshake, and the server makes every request its own connection,
// so the next request after a rotation uses the new certificate. A pair
// that does not load (a half-written rotation) keeps the old one in
// service until it does.
type Certs struct {
	certFile, keyFile string
	log               func(msg string, kv ...any)

	mu        sync.Mutex
	certPEM   []byte
	keyPEM    []byte
	cert      *tls.Certificate
	serial    string
	handshake map[string]int // handshakes served, by certificate serial
}

// LoadCerts loads the pair once; a bad pair at start is an error.
func LoadCerts(certFile, keyFile string, log func(msg string, kv ...any)) (*Certs, error) {
	c := &Certs{certFile: certFile, keyFile: keyFile, log: log, handshake: map[string]int{}}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Certs) reload() error {
	certPEM, err := os.ReadFile(c.certFile)
	if err != nil {
		return fmt.Errorf("--tls.cert-file %s: %w", c.certFile, err)
	}
	keyPEM, err := os.ReadFile(c.keyFile)
	if err != nil {
		return fmt.Errorf("--tls.key-file %s: %w", c.keyFile, err)
	}
	if bytes.Equal(certPEM, c.certPEM) && bytes.Equal(keyPEM, c.keyPEM) {
		return nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("--tls.cert-file %s with --tls.key-file %s: %w", c.certFile, c.keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("--tls.cert-file %s: %w", c.certFile, err)
	}
	pair.Leaf = leaf
	if c.cert != nil && c.log != nil {
		c.log("serving a new certificate", "serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter)
	}
	c.certPEM, c.keyPEM, c.cert, c.serial = certPEM, keyPEM, &pair, leaf.SerialNumber.String()
	return nil
}

// GetCertificate is for tls.Config.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reload(); err != nil && c.log != nil {
		c.log("keeping the current certificate", "err", err)
	}
	c.handshake[c.serial]++
	return c.cert, nil
}

// Serial is the serial number of the certificate in service.
func (c *Certs) Serial() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.serial
}

// Handshakes is how many TLS handshakes the certificate with this serial
// number served.
func (c *Certs) Handshakes(serial string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handshake[serial]
}
