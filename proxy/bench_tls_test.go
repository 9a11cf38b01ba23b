package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/amqplb/amqplb/internal/testenv"
)

// BenchmarkTLSTermination compares amqplb terminating TLS (a tcp-mode frontend with
// FrontendOptions.TLS from tlsfiles) with HAProxy terminating TLS (bind ... ssl crt, mode tcp,
// one server), both in front of the plain loopback sink or echo server BenchmarkThroughput uses.
// Both sides keep their TLS 1.3 defaults and the same ECDSA P-256 certificate; the client is
// crypto/tls trusting the test CA, without a session cache (so every handshake is a full one).
// The negotiated version, cipher suite and key exchange of each are logged (run with -v, or
// see the benchmark's log lines).
//
//   - large: 256 KiB writes to the sink, MB/s client to server.
//   - 128B: 128-byte writes to the sink (AMQP's small frames), as in BenchmarkThroughput.
//   - 128B-rtt: a 128-byte message to the echo server and back, one at a time.
//   - handshakes: connect, TLS handshake, one 128-byte round trip through to the echo server,
//     close; reported as handshakes/s.
//   - handshakes-x25519: the same with the client offering X25519 alone. By default Go offers
//     X25519MLKEM768 first, which amqplb (crypto/tls) takes and HAProxy's OpenSSL 3.0 does not
//     know (it takes X25519), so this case compares the two on the same key exchange.
//
// The client runs in the benchmark's process, as does amqplb, so both share its CPUs; HAProxy
// is another process on the same CPUs. Compare the two figures of one run.
func BenchmarkTLSTermination(b *testing.B) {
	pki := newPKI(b)
	for _, shape := range []string{"large", "128B", "128B-rtt", "handshakes", "handshakes-x25519"} {
		for _, via := range []string{"amqplb", "haproxy"} {
			b.Run(shape+"/"+via, func(b *testing.B) {
				handle := testenv.Echo
				if shape == "large" || shape == "128B" {
					handle = sink
				}
				fb := testenv.StartFakeBroker(b, handle)
				var addr string
				switch via {
				case "amqplb":
					fx := start(b, FrontendOptions{Mode: ModeTCP, TLS: pki.server(b, "none")}, Route{}, fb.Addr())
					addr = fx.addr()
				case "haproxy":
					addr = startHAProxyBind(b, fb.Addr(), "ssl crt "+pki.files.ServerPEM)
				}
				cfg := pki.client(b, false)
				if shape == "handshakes-x25519" {
					cfg.CurvePreferences = []tls.CurveID{tls.X25519}
				}
				logTLSParams(b, addr, cfg)
				switch shape {
				case "large":
					benchTLSWrites(b, addr, cfg, 256<<10)
				case "128B":
					benchTLSWrites(b, addr, cfg, 128)
				case "128B-rtt":
					benchTLSRoundTrips(b, addr, cfg)
				case "handshakes", "handshakes-x25519":
					benchTLSHandshakes(b, addr, cfg)
				}
			})
		}
	}
}

// tlsParamsLogged holds the sub-benchmarks whose negotiated parameters were logged.
var tlsParamsLogged sync.Map

// logTLSParams connects once and logs what was negotiated (once per sub-benchmark).
func logTLSParams(b *testing.B, addr string, cfg *tls.Config) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cs := c.ConnectionState()
	line := tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite) + " " + cs.CurveID.String()
	if _, seen := tlsParamsLogged.LoadOrStore(b.Name(), line); !seen {
		b.Logf("negotiated %s", line)
	}
}

// benchTLSWrites writes n-byte buffers over one TLS connection to the sink, then closes its
// side (close_notify and FIN) and waits for the sink's one-byte answer, as BenchmarkThroughput.
func benchTLSWrites(b *testing.B, addr string, cfg *tls.Config, n int) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, n)
	b.SetBytes(int64(n))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		b.Fatal(err)
	}
	_ = c.NetConn().(*net.TCPConn).CloseWrite()
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatal(err)
	}
}

// benchTLSRoundTrips sends 128 bytes to the echo server and reads them back, one at a time.
func benchTLSRoundTrips(b *testing.B, addr string, cfg *tls.Config) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 128)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTLSHandshakes opens one new TLS connection per iteration: connect, full handshake, one
// 128-byte round trip (so the proxy has connected to the echo server), close.
func benchTLSHandshakes(b *testing.B, addr string, cfg *tls.Config) {
	buf := make([]byte, 128)
	b.ResetTimer()
	for b.Loop() {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}
