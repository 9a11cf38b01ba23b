package tlsfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// leafFor writes a certificate for names, signed by a fresh CA, and returns the cert and key PEM
// and the CA's PEM.
func leafFor(t *testing.T, names ...string) (certPEM, keyPEM, caPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA " + names[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

func write(t *testing.T, path string, parts ...[]byte) string {
	t.Helper()
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// handshake runs a TLS handshake between the two configurations over a pipe and returns the
// server's error, the client's error and the certificate the client was shown.
func handshake(t *testing.T, server, client *tls.Config) (leaf *x509.Certificate, serr, cerr error) {
	t.Helper()
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	_ = a.SetDeadline(time.Now().Add(5 * time.Second))
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	sc := tls.Server(a, server)
	done := make(chan error, 1)
	go func() {
		err := sc.Handshake()
		if err == nil {
			// TLS 1.3: a refused client certificate shows when the client reads.
			_, err = sc.Write([]byte("x"))
		}
		done <- err
		_ = a.Close()
	}()
	cc := tls.Client(b, client)
	cerr = cc.Handshake()
	if cerr == nil {
		_, cerr = io.ReadFull(cc, make([]byte, 1))
		if s := cc.ConnectionState().PeerCertificates; len(s) > 0 {
			leaf = s[0]
		}
	}
	_ = b.Close()
	serr = <-done
	return leaf, serr, cerr
}

// tcpPair returns the two ends of a loopback TCP connection (a net.Pipe would deadlock when
// both sides write at once, as when a client sends an alert in the middle of the server's
// flight).
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestServerConfigForms(t *testing.T) {
	dir := t.TempDir()
	certs, err := testenv.WriteTestCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, _ := os.ReadFile(certs.ServerCert)
	srvKey, _ := os.ReadFile(certs.ServerKey)
	beside := write(t, filepath.Join(dir, "beside.pem"), srvCert)
	write(t, beside+".key", srvKey)
	client, err := ClientConfig(certs.CA, "required", "", "", "", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cert, key string }{
		{"chain and key in one PEM", certs.ServerPEM, ""},
		{"separate key file", certs.ServerCert, certs.ServerKey},
		{"key in CERT.key", beside, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ServerConfig(tc.cert, tc.key, "", "none")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
			}
			_, serr, cerr := handshake(t, cfg, client)
			if serr != nil || cerr != nil {
				t.Fatalf("handshake: server %v, client %v", serr, cerr)
			}
		})
	}
	// TLS 1.1 and older are refused.
	cfg, _ := ServerConfig(certs.ServerPEM, "", "", "")
	old := client.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, _, cerr := handshake(t, cfg, old); cerr == nil {
		t.Error("a TLS 1.1 client was served")
	}
}

func TestServerConfigDirectoryPicksBySNI(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	aCert, aKey, aCA := leafFor(t, "a.example")
	bCert, bKey, bCA := leafFor(t, "b.example")
	write(t, filepath.Join(certDir, "a.pem"), aCert, aKey)
	write(t, filepath.Join(certDir, "b.pem"), bCert)
	write(t, filepath.Join(certDir, "b.pem.key"), bKey) // HAProxy's companion file, skipped as a certificate
	write(t, filepath.Join(certDir, "b.pem.ocsp"), []byte("not PEM"))
	write(t, filepath.Join(certDir, ".hidden"), []byte("not PEM"))
	cfg, err := ServerConfig(certDir, "", "", "none")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 2 {
		t.Fatalf("loaded %d certificates, want 2", len(cfg.Certificates))
	}
	for name, ca := range map[string][]byte{"a.example": aCA, "b.example": bCA} {
		caFile := write(t, filepath.Join(dir, name+".ca"), ca)
		client, err := ClientConfig(caFile, "required", name, "", "", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		leaf, serr, cerr := handshake(t, cfg, client)
		if serr != nil || cerr != nil {
			t.Fatalf("SNI %s: server %v, client %v", name, serr, cerr)
		}
		if leaf.Subject.CommonName != name {
			t.Errorf("SNI %s got the certificate of %s", name, leaf.Subject.CommonName)
		}
	}
	if _, err := ServerConfig(certDir, filepath.Join(certDir, "b.pem.key"), "", ""); err == nil {
		t.Error("a directory with a key file was accepted")
	}
}

func TestClientCertificateVerification(t *testing.T) {
	dir := t.TempDir()
	certs, err := testenv.WriteTestCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	anon, err := ClientConfig(certs.CA, "required", "localhost", "", "", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	withCert, err := ClientConfig(certs.CA, "required", "localhost", certs.ClientCert, certs.ClientKey, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	required, err := ServerConfig(certs.ServerPEM, "", certs.CA, "required")
	if err != nil {
		t.Fatal(err)
	}
	if required.ClientAuth != tls.RequireAndVerifyClientCert || required.ClientCAs == nil {
		t.Fatalf("verify required: ClientAuth %v, ClientCAs %v", required.ClientAuth, required.ClientCAs)
	}
	if _, serr, cerr := handshake(t, required, withCert); serr != nil || cerr != nil {
		t.Errorf("required, with a certificate: server %v, client %v", serr, cerr)
	}
	if _, serr, _ := handshake(t, required, anon); serr == nil {
		t.Error("required: a client without a certificate was served")
	}
	optional, err := ServerConfig(certs.ServerPEM, "", certs.CA, "optional")
	if err != nil {
		t.Fatal(err)
	}
	if optional.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("verify optional: ClientAuth %v", optional.ClientAuth)
	}
	if _, serr, cerr := handshake(t, optional, anon); serr != nil || cerr != nil {
		t.Errorf("optional, without a certificate: server %v, client %v", serr, cerr)
	}
	// A certificate from another CA is refused even when optional.
	other, otherKey, _ := leafFor(t, "intruder")
	otherFile := write(t, filepath.Join(dir, "other.pem"), other, otherKey)
	intruder, err := ClientConfig(certs.CA, "required", "localhost", otherFile, "", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// Go's client only offers a certificate from a CA the server named; make it offer this one.
	offered := intruder.Certificates[0]
	intruder.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &offered, nil }
	if _, serr, _ := handshake(t, optional, intruder); serr == nil {
		t.Error("optional: a certificate from an unknown CA was accepted")
	}
}

func TestClientConfigVerifiesTheServer(t *testing.T) {
	dir := t.TempDir()
	certs, err := testenv.WriteTestCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ServerConfig(certs.ServerPEM, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	// ServerName defaults to the address's host; an IP literal is checked against IP SANs.
	for _, host := range []string{"127.0.0.1", "[::1]", "localhost"} {
		c, err := ClientConfig(certs.CA, "", "", "", "", host)
		if err != nil {
			t.Fatal(err)
		}
		if _, serr, cerr := handshake(t, srv, c); serr != nil || cerr != nil {
			t.Errorf("host %s: server %v, client %v", host, serr, cerr)
		}
	}
	wrongName, _ := ClientConfig(certs.CA, "required", "rabbit.example", "", "", "127.0.0.1")
	if _, _, cerr := handshake(t, srv, wrongName); cerr == nil {
		t.Error("a certificate for another name was accepted")
	}
	systemPool, _ := ClientConfig("", "required", "", "", "", "127.0.0.1")
	if systemPool.RootCAs != nil || systemPool.InsecureSkipVerify {
		t.Error(`ca "" does not mean the system pool`)
	}
	if _, _, cerr := handshake(t, srv, systemPool); cerr == nil {
		t.Error("the test CA is trusted by the system pool")
	}
	none, _ := ClientConfig("", "none", "", "", "", "127.0.0.1")
	if !none.InsecureSkipVerify || none.MinVersion != tls.VersionTLS12 {
		t.Errorf("verify none: InsecureSkipVerify %v, MinVersion %x", none.InsecureSkipVerify, none.MinVersion)
	}
	if _, serr, cerr := handshake(t, srv, none); serr != nil || cerr != nil {
		t.Errorf("verify none: server %v, client %v", serr, cerr)
	}
	// chain: any name, but the chain must lead to the CA.
	chain, err := ClientConfig(certs.CA, "chain", "rabbit.example", "", "", "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if _, serr, cerr := handshake(t, srv, chain); serr != nil || cerr != nil {
		t.Errorf("verify chain with a name the certificate lacks: server %v, client %v", serr, cerr)
	}
	other, err := testenv.WriteTestCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	strangerChain, err := ClientConfig(other.CA, "chain", "", "", "", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, cerr := handshake(t, srv, strangerChain); cerr == nil {
		t.Error("verify chain accepted a certificate from another CA")
	}
}

func TestErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	certs, err := testenv.WriteTestCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, _ := os.ReadFile(certs.ServerCert)
	noKey := write(t, filepath.Join(dir, "nokey.pem"), srvCert)
	garbage := write(t, filepath.Join(dir, "garbage.pem"), []byte("hello\n"))
	cliKey, _ := os.ReadFile(certs.ClientKey)
	mismatch := write(t, filepath.Join(dir, "mismatch.pem"), srvCert, cliKey)
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		call func() error
		want []string
	}{
		{"missing cert", func() error { _, err := ServerConfig(missing, "", "", ""); return err }, []string{missing}},
		{"no key anywhere", func() error { _, err := ServerConfig(noKey, "", "", ""); return err }, []string{noKey, noKey + ".key"}},
		{"not PEM", func() error { _, err := ServerConfig(garbage, "", "", ""); return err }, []string{garbage, "CERTIFICATE"}},
		{"key not PEM", func() error { _, err := ServerConfig(certs.ServerCert, garbage, "", ""); return err }, []string{garbage, "PRIVATE KEY"}},
		{"key mismatch", func() error { _, err := ServerConfig(mismatch, "", "", ""); return err }, []string{mismatch}},
		{"empty dir", func() error { _, err := ServerConfig(empty, "", "", ""); return err }, []string{empty}},
		{"verify without ca", func() error { _, err := ServerConfig(certs.ServerPEM, "", "", "required"); return err }, []string{"CA file"}},
		{"bad ca", func() error { _, err := ServerConfig(certs.ServerPEM, "", garbage, "optional"); return err }, []string{garbage}},
		{"missing ca", func() error { _, err := ClientConfig(missing, "required", "", "", "", "h"); return err }, []string{missing}},
		{"unknown verify", func() error { _, err := ServerConfig(certs.ServerPEM, "", "", "maybe"); return err }, []string{"maybe"}},
		{"client verify optional", func() error { _, err := ClientConfig("", "optional", "", "", "", "h"); return err }, []string{"optional"}},
		{"client key without cert", func() error { _, err := ClientConfig("", "none", "", "", certs.ClientKey, "h"); return err }, []string{certs.ClientKey}},
	} {
		err := tc.call()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
	if _, err := ServerConfig(missing, "", "", ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file's error does not unwrap to ErrNotExist: %v", err)
	}
}
