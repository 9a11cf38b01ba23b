package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/testenv"
	"github.com/amqplb/amqplb/internal/tlsfiles"
	amqp "github.com/rabbitmq/amqp091-go"
)

// testPKI is a CA, a server certificate for 127.0.0.1, ::1 and localhost, and a client
// certificate, made for one test.
type testPKI struct {
	files testenv.TestCerts
	pool  *x509.CertPool
}

func newPKI(t testing.TB) testPKI {
	t.Helper()
	files, err := testenv.WriteTestCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return testPKI{files: files, pool: files.Pool(t)}
}

// server returns a frontend TLS configuration made by tlsfiles.
func (p testPKI) server(t testing.TB, verify string) *tls.Config {
	t.Helper()
	ca := ""
	if verify != "none" {
		ca = p.files.CA
	}
	cfg, err := tlsfiles.ServerConfig(p.files.ServerPEM, "", ca, verify)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// client returns a client configuration trusting the test CA, with the client certificate
// when withCert.
func (p testPKI) client(t testing.TB, withCert bool) *tls.Config {
	t.Helper()
	cert, key := "", ""
	if withCert {
		cert, key = p.files.ClientCert, p.files.ClientKey
	}
	cfg, err := tlsfiles.ClientConfig(p.files.CA, "required", "", cert, key, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tlsBroker returns a fake broker that terminates TLS and then serves with handle.
func tlsBroker(t testing.TB, cfg *tls.Config, handle func(net.Conn)) *testenv.FakeBroker {
	return testenv.StartFakeBroker(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		_ = tc.SetDeadline(time.Time{})
		handle(tc)
	})
}

// TestTLSTerminationWithAMQPClient: amqp091-go's DialTLS through a TLS frontend to a plain
// broker.
func TestTLSTerminationWithAMQPClient(t *testing.T) {
	pki := newPKI(t)
	fake := &testenv.FakeAMQP{Username: "guest", Password: "guest"}
	fb := testenv.StartFakeBroker(t, fake.Handle)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, TLS: pki.server(t, "none")}, Route{}, fb.Addr())
	conn, err := amqp.DialTLS("amqps://guest:guest@"+fx.addr()+"/", &tls.Config{RootCAs: pki.pool})
	if err != nil {
		t.Fatalf("DialTLS through the frontend: %v", err)
	}
	if err := conn.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	waitFor(t, "the broker saw a clean close", func() bool { return fake.CleanCloses() == 1 })
	waitFor(t, "session end", func() bool { return fx.f.Stats().Active == 0 })

	// A plain client is refused: its AMQP header is not a TLS ClientHello.
	c, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(testenv.AMQPHeader)
	expectClosed(t, c)
	waitFor(t, "refusal counted", func() bool { return fx.f.Stats().Refused["tls_handshake"] == 1 })
	waitFor(t, "session end", func() bool { return fx.f.Stats().Active == 0 })
	if fb.Accepted() != 1 {
		t.Errorf("the broker accepted %d connections, want 1", fb.Accepted())
	}
	if !strings.Contains(fx.logs.String(), "end=tls_handshake") || !strings.Contains(fx.logs.String(), "TLS handshake failed") {
		t.Errorf("the failed handshake is not logged:\n%s", fx.logs)
	}
}

// TestTLSClientCertificateRequired: with verify required, a client without a certificate is
// refused and one with a certificate from the CA is served.
func TestTLSClientCertificateRequired(t *testing.T) {
	pki := newPKI(t)
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, TLS: pki.server(t, "required")}, Route{}, fb.Addr())
	url := "amqps://guest:guest@" + fx.addr() + "/"
	if conn, err := amqp.DialTLS(url, pki.client(t, false)); err == nil {
		conn.Close()
		t.Fatal("a client without a certificate was served")
	}
	waitFor(t, "refusal counted", func() bool { return fx.f.Stats().Refused["tls_handshake"] == 1 })
	if fb.Accepted() != 0 {
		t.Errorf("a refused client reached the broker")
	}
	c, err := tls.Dial("tcp", fx.addr(), pki.client(t, true))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := clientHandshake(c); err != nil {
		t.Fatalf("a client with a certificate: %v", err)
	}
	echoes(t, c, "mutual TLS")
}

// TestTLSOnBothSides: a TLS client through a TLS frontend to a TLS broker, bulk data both
// ways, and the same through a plain frontend to the TLS broker.
func TestTLSOnBothSides(t *testing.T) {
	pki := newPKI(t)
	fb := tlsBroker(t, pki.server(t, "none"), echoAfterAMQP)
	toBroker := pki.client(t, false)
	srv := backend.ServerOptions{Address: fb.Addr(), TLS: toBroker}
	tlsFE := startServers(t, FrontendOptions{Mode: ModeAMQP, TLS: pki.server(t, "none")}, Route{}, srv)
	plainFE := startServers(t, FrontendOptions{Mode: ModeAMQP}, Route{}, srv)
	big := strings.Repeat("z", 300<<10)

	c, err := tls.Dial("tcp", tlsFE.addr(), pki.client(t, false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := clientHandshake(c)
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, c, "hello")
	echoes(t, c, big)
	p := amqpConnect(t, plainFE.addr())
	echoes(t, p, "plain to TLS")
	echoes(t, p, big)
	c.Close()
	waitFor(t, "session end", func() bool { return tlsFE.f.Stats().Active == 0 })
	if got, want := tlsFE.servers[0].BytesToServer(), uint64(h.sent+5+len(big)); got != want {
		t.Errorf("bytes to server = %d, want %d", got, want)
	}
	if !strings.Contains(tlsFE.logs.String(), "end=client_closed") {
		t.Errorf("access log lacks end=client_closed:\n%s", tlsFE.logs)
	}
}

// TestTLSHalfClose: in TCP mode over TLS, the client's close_notify is passed on as the end of
// its stream while the echo keeps flowing back, and the server's end reaches the client.
func TestTLSHalfClose(t *testing.T) {
	const size = 4 << 20
	pki := newPKI(t)
	serverGot := make(chan []byte, 1)
	fb := tlsBroker(t, pki.server(t, "none"), func(c net.Conn) {
		h := sha256.New()
		_, err := io.CopyBuffer(io.MultiWriter(c, h), c, make([]byte, 32<<10))
		if err == nil {
			err = c.(*tls.Conn).CloseWrite()
		}
		if err != nil {
			t.Errorf("echo server: %v", err)
		}
		serverGot <- h.Sum(nil)
		_, _ = io.Copy(io.Discard, c)
	})
	fx := startServers(t, FrontendOptions{Mode: ModeTCP, TLS: pki.server(t, "none")}, Route{},
		backend.ServerOptions{Address: fb.Addr(), TLS: pki.client(t, false)})
	c, err := tls.Dial("tcp", fx.addr(), pki.client(t, false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := sha256.New()
	writeErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(c, sent), io.LimitReader(rand.Reader, size))
		if err == nil {
			err = c.CloseWrite()
		}
		writeErr <- err
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("client write: %v", err)
	}
	if n != size {
		t.Fatalf("client received %d bytes, want %d", n, size)
	}
	if !bytes.Equal(<-serverGot, sent.Sum(nil)) || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Errorf("the bytes differ")
	}
}

// TestTLSIdleTimeout: the idle timeout applies to TLS sessions too.
func TestTLSIdleTimeout(t *testing.T) {
	pki := newPKI(t)
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, TLS: pki.server(t, "none")}, Route{IdleTimeout: 700 * time.Millisecond}, fb.Addr())
	c, err := tls.Dial("tcp", fx.addr(), pki.client(t, false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := clientHandshake(c); err != nil {
		t.Fatal(err)
	}
	for t0 := time.Now(); time.Since(t0) < 1500*time.Millisecond; { // busy past the idle period
		echoes(t, c, "tick")
		time.Sleep(100 * time.Millisecond) // workload: the busy client's pace, not a wait
	}
	expectClosed(t, c)
	waitFor(t, "session end", func() bool { return fx.f.Stats().Active == 0 })
	if !strings.Contains(fx.logs.String(), "end=idle_timeout") {
		t.Errorf("access log lacks end=idle_timeout:\n%s", fx.logs)
	}
}

// TestTLSConfigChangesOnUpdate: a reload's TLS configuration (a renewed certificate) serves the
// next connections.
func TestTLSConfigChangesOnUpdate(t *testing.T) {
	first, second := newPKI(t), newPKI(t)
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, TLS: first.server(t, "none")}, Route{}, fb.Addr())
	c, err := tls.Dial("tcp", fx.addr(), first.client(t, false))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	fx.f.Update(FrontendOptions{Name: "fe", Mode: ModeAMQP, TLS: second.server(t, "none"), Logger: fx.f.opts.Logger, AccessLog: true}, fx.f.Route())
	if c, err := tls.Dial("tcp", fx.addr(), first.client(t, false)); err == nil {
		c.Close()
		t.Error("after the update the old certificate is still served")
	}
	c, err = tls.Dial("tcp", fx.addr(), second.client(t, false))
	if err != nil {
		t.Fatalf("the new certificate is not served: %v", err)
	}
	c.Close()
}

// TestTLSAfterProxyHeader: a PROXY header, then TLS, with the ClientHello in the same write.
func TestTLSAfterProxyHeader(t *testing.T) {
	pki := newPKI(t)
	fb := echoBroker(t)
	fx := start(t, FrontendOptions{Mode: ModeAMQP, AcceptProxy: true, TLS: pki.server(t, "none")}, Route{}, fb.Addr())
	raw, err := net.Dial("tcp", fx.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// The header is held back and sent with the first TLS record.
	c := tls.Client(&headerFirstConn{Conn: raw, hdr: proxyHeader(t, 2, "192.0.2.44:4444", "192.0.2.1:5671")}, pki.client(t, false))
	if _, err := clientHandshake(c); err != nil {
		t.Fatal(err)
	}
	echoes(t, c, "proxied TLS")
	c.Close()
	waitFor(t, "session end", func() bool { return fx.f.Stats().Active == 0 })
	if !strings.Contains(fx.logs.String(), "client=192.0.2.44:4444 via=") {
		t.Errorf("access log lacks the original client:\n%s", fx.logs)
	}
}

// headerFirstConn prepends hdr to its first write.
type headerFirstConn struct {
	net.Conn
	hdr []byte
}

func (c *headerFirstConn) Write(p []byte) (int, error) {
	if c.hdr != nil {
		b := append(c.hdr, p...)
		c.hdr = nil
		n, err := c.Conn.Write(b)
		return max(n-(len(b)-len(p)), 0), err
	}
	return c.Conn.Write(p)
}
