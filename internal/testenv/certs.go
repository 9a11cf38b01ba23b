package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Pool returns a certificate pool holding the CA, for clients that verify the server.
func (c TestCerts) Pool(t testing.TB) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(c.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", c.CA)
	}
	return pool
}

// ServerTLS returns a TLS 1.2+ server configuration with the server certificate.
func (c TestCerts) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(c.ServerCert, c.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// TestCerts are PEM files made by WriteTestCerts: a CA, a server certificate
// for 127.0.0.1, ::1 and localhost signed by it, and a client certificate
// signed by it.
type TestCerts struct {
	// CA is the CA certificate, to verify the others with.
	CA string
	// ServerCert and ServerKey are the server's certificate and key.
	ServerCert, ServerKey string
	// ServerPEM holds the server's certificate followed by its key, as
	// HAProxy's "crt" wants them.
	ServerPEM string
	// ClientCert and ClientKey are a client certificate (CN "amqplb-test-client")
	// and its key.
	ClientCert, ClientKey string
}

// WriteTestCerts makes a fresh CA, server and client certificate valid for a
// day and writes them as PEM files into dir (world-readable, so a RabbitMQ node
// running as its own user can read copies of them).
func WriteTestCerts(dir string) (TestCerts, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TestCerts{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "amqplb test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return TestCerts{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return TestCerts{}, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, server bool) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
	}
	srvCert, srvKey, err := leaf(2, "localhost", x509.ExtKeyUsageServerAuth, true)
	if err != nil {
		return TestCerts{}, err
	}
	cliCert, cliKey, err := leaf(3, "amqplb-test-client", x509.ExtKeyUsageClientAuth, false)
	if err != nil {
		return TestCerts{}, err
	}
	tc := TestCerts{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ServerPEM:  filepath.Join(dir, "server.pem"),
		ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey:  filepath.Join(dir, "client.key"),
	}
	files := map[string][]byte{
		tc.CA:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tc.ServerCert: srvCert,
		tc.ServerKey:  srvKey,
		tc.ServerPEM:  append(append([]byte(nil), srvCert...), srvKey...),
		tc.ClientCert: cliCert,
		tc.ClientKey:  cliKey,
	}
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return TestCerts{}, fmt.Errorf("write test certificate: %w", err)
		}
	}
	return tc, nil
}
