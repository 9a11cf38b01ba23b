package healthcheck

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/testenv"
)

// answer is an HTTP handler replying status and body.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func httpTarget(srv *httptest.Server) Target {
	return Target{Addr: srv.Listener.Addr().String()}
}

func TestHTTPCheck(t *testing.T) {
	alive := answer(200, `{"status":"ok"}`)
	failed := answer(503, `{"status":"failed","reason":"vhost / is down"}`)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		c       HTTPChecker
		ok      bool
		kind    string
		reason  string
	}{
		{name: "default passes 2xx", handler: alive, ok: true, reason: "HTTP GET /: 200"},
		{name: "default passes 3xx", handler: answer(302, ""), ok: true, reason: "HTTP GET /: 302"},
		{name: "default fails 5xx", handler: failed, kind: FailProtocol,
			reason: `HTTP status 503, want 2xx or 3xx: "{\"status\":\"failed\",\"reason\":\"vhost / is down\"}"`},
		{name: "status list", handler: answer(204, ""), c: HTTPChecker{Match: MatchStatus, Pattern: "200,204-206"}, ok: true,
			reason: "HTTP GET /: 204"},
		{name: "wrong status", handler: failed, c: HTTPChecker{Match: MatchStatus, Pattern: "200"}, kind: FailProtocol,
			reason: `HTTP status 503, want 200: "{\"status\":\"failed\",\"reason\":\"vhost / is down\"}"`},
		{name: "unauthorized", handler: answer(401, ""), c: HTTPChecker{Match: MatchStatus, Pattern: "200"}, kind: FailAuth,
			reason: "HTTP status 401, want 200"},
		{name: "negated status", handler: failed, c: HTTPChecker{Match: MatchStatus, Pattern: "500-599", Negate: true}, kind: FailProtocol,
			reason: `HTTP status 503, want not 500-599: "{\"status\":\"failed\",\"reason\":\"vhost / is down\"}"`},
		{name: "negated status passes", handler: alive, c: HTTPChecker{Match: MatchStatus, Pattern: "500-599", Negate: true}, ok: true,
			reason: "HTTP GET /: 200"},
		{name: "rstatus", handler: alive, c: HTTPChecker{Match: MatchRStatus, Pattern: "^2"}, ok: true, reason: "HTTP GET /: 200"},
		{name: "rstatus fails", handler: failed, c: HTTPChecker{Match: MatchRStatus, Pattern: "^2"}, kind: FailProtocol,
			reason: `HTTP status 503, want one matching "^2": "{\"status\":\"failed\",\"reason\":\"vhost / is down\"}"`},
		{name: "string", handler: alive, c: HTTPChecker{Match: MatchString, Pattern: `"ok"`}, ok: true, reason: "HTTP GET /: 200"},
		{name: "string ignores the status", handler: answer(500, "ok"), c: HTTPChecker{Match: MatchString, Pattern: "ok"}, ok: true,
			reason: "HTTP GET /: 500"},
		{name: "missing string", handler: failed, c: HTTPChecker{Match: MatchString, Pattern: `"ok"`}, kind: FailProtocol,
			reason: `HTTP body has no "\"ok\"" (HTTP status 503, body "{\"status\":\"failed\",\"reason\":\"vhost / is down\"}")`},
		{name: "rstring", handler: alive, c: HTTPChecker{Match: MatchRString, Pattern: `"status":\s*"ok"`}, ok: true, reason: "HTTP GET /: 200"},
		{name: "negated string", handler: failed, c: HTTPChecker{Match: MatchString, Pattern: "failed", Negate: true}, kind: FailProtocol,
			reason: `HTTP body has "failed" (HTTP status 503, body "{\"status\":\"failed\",\"reason\":\"vhost / is down\"}")`},
		{name: "HEAD has no body", handler: alive, c: HTTPChecker{Method: "HEAD", Path: "/x"}, ok: true, reason: "HTTP HEAD /x: 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c, err := NewHTTPChecker(tt.c)
			if err != nil {
				t.Fatal(err)
			}
			res := c.Check(context.Background(), httpTarget(srv))
			if res.OK != tt.ok || res.Kind != tt.kind || res.Reason != tt.reason {
				t.Errorf("got ok=%v kind=%q reason %q\nwant ok=%v kind=%q reason %q", res.OK, res.Kind, res.Reason, tt.ok, tt.kind, tt.reason)
			}
		})
	}
}

// TestHTTPCheckRequest checks what the server gets: the method, the path as written (escapes
// kept), Host, the configured headers, and a request that closes the connection.
func TestHTTPCheckRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
	}))
	defer srv.Close()
	h := http.Header{}
	h.Set("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
	h.Set("X-Check", "amqplb")
	c, err := NewChecker(KindHTTP, Options{Timeout: time.Second, HTTP: &HTTPChecker{
		Method: "POST", Path: "/api/aliveness-test/%2F", Host: "rabbit.example", Header: h,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res := c.Check(context.Background(), httpTarget(srv)); !res.OK {
		t.Fatalf("check failed: %s", res.Reason)
	}
	r := <-got
	if r.Method != "POST" || r.RequestURI != "/api/aliveness-test/%2F" || r.Host != "rabbit.example" || !r.Close {
		t.Errorf("got %s %s Host %s close %v", r.Method, r.RequestURI, r.Host, r.Close)
	}
	if u, p, ok := r.BasicAuth(); !ok || u != "guest" || p != "guest" {
		t.Errorf("basic auth %q %q %v", u, p, ok)
	}
	if r.Header.Get("X-Check") != "amqplb" || r.UserAgent() != httpUserAgent {
		t.Errorf("headers %v", r.Header)
	}
}

// TestHTTPCheckHostDefault: without host, Host is the address checked.
func TestHTTPCheckHostDefault(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got <- r.Host }))
	defer srv.Close()
	c, _ := NewHTTPChecker(HTTPChecker{})
	if res := c.Check(context.Background(), httpTarget(srv)); !res.OK {
		t.Fatalf("check failed: %s", res.Reason)
	}
	if h := <-got; h != srv.Listener.Addr().String() {
		t.Errorf("Host %q, want %q", h, srv.Listener.Addr().String())
	}
}

func TestHTTPCheckFailures(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		addr := testenv.StartFakeBroker(t, testenv.Silent).Addr()
		c, _ := NewHTTPChecker(HTTPChecker{Timeout: 100 * time.Millisecond})
		res := c.Check(context.Background(), Target{Addr: addr})
		if res.OK || res.Kind != FailTimeout || res.Reason != "timeout after 100ms waiting for the HTTP response" {
			t.Errorf("got %+v", res)
		}
	})
	t.Run("not HTTP", func(t *testing.T) {
		addr := testenv.StartFakeBroker(t, func(c net.Conn) {
			_, _ = io.WriteString(c, "AMQP\x00\x00\x09\x01")
			_, _ = io.Copy(io.Discard, c)
		}).Addr()
		c, _ := NewHTTPChecker(HTTPChecker{})
		res := c.Check(context.Background(), Target{Addr: addr})
		if res.OK || res.Kind != FailProtocol || res.Reason != `not an HTTP response: server sent "AMQP\x00\x00\t\x01"` {
			t.Errorf("got %+v", res)
		}
	})
	t.Run("closed", func(t *testing.T) {
		addr := testenv.StartFakeBroker(t, testenv.Hangup).Addr()
		c, _ := NewHTTPChecker(HTTPChecker{})
		res := c.Check(context.Background(), Target{Addr: addr})
		if res.OK || res.Kind != FailReset || !strings.HasPrefix(res.Reason, "connection ") {
			t.Errorf("got %+v", res)
		}
	})
	t.Run("refused", func(t *testing.T) {
		c, _ := NewHTTPChecker(HTTPChecker{})
		res := c.Check(context.Background(), Target{Addr: testenv.FreeAddr(t)})
		if res.OK || res.Kind != FailRefused || res.Reason != "connection refused" {
			t.Errorf("got %+v", res)
		}
	})
}

// TestHTTPCheckOverTLS: a server whose checks speak TLS gets the request over it (HTTPS),
// through backend.Server's dial as the Monitor's targets do.
func TestHTTPCheckOverTLS(t *testing.T) {
	pool, srvCfg := testPKI(t)
	srv := httptest.NewUnstartedServer(answer(200, "ok"))
	srv.TLS = srvCfg
	srv.StartTLS()
	defer srv.Close()
	s := tlsServer(srv.Listener.Addr().String(), pool, "127.0.0.1")
	c, _ := NewHTTPChecker(HTTPChecker{Timeout: testTimeout, Match: MatchString, Pattern: "ok"})
	if res := checkTarget(t, c, serverTarget(s, false), testTimeout); !res.OK || res.Reason != "HTTP GET /: 200" {
		t.Errorf("over TLS: %+v", res)
	}
	// In plain TCP, the TLS listener answers no HTTP.
	plain := backend.NewServer(backend.ServerOptions{Name: "rmq1", Address: srv.Listener.Addr().String(), Weight: 1})
	if res := checkTarget(t, c, serverTarget(plain, false), testTimeout); res.OK || res.Kind != FailProtocol {
		t.Errorf("plain HTTP to a TLS listener: %+v", res)
	}
}

func TestNewHTTPCheckerErrors(t *testing.T) {
	for _, tt := range []struct {
		c    HTTPChecker
		want string
	}{
		{HTTPChecker{Method: "GE T"}, `http check: method "GE T" is not an HTTP method`},
		{HTTPChecker{Path: "/a b"}, `http check: path "/a b" has a blank or a line break`},
		{HTTPChecker{Header: http.Header{"X-A": {"a\r\nb"}}}, "http check: header X-A has a line break"},
		{HTTPChecker{Header: http.Header{"Host": {"x"}}}, "http check: header Host is the checker's to write (use host for Host)"},
		{HTTPChecker{Match: MatchStatus}, "http check: match status needs a pattern"},
		{HTTPChecker{Match: MatchStatus, Pattern: "2xx"}, `http check: status "2xx": want codes 100..599 or ranges of them, separated by commas (e.g. "200", "200-299,304")`},
		{HTTPChecker{Match: MatchRString, Pattern: "("}, "http check: bad rstring pattern: error parsing regexp: missing closing ): `(`"},
		{HTTPChecker{Match: "binary", Pattern: "00"}, `http check: unknown match "binary" (want status, rstatus, string or rstring)`},
		{HTTPChecker{Pattern: "x"}, "http check: a pattern or negate needs a match"},
	} {
		if _, err := NewHTTPChecker(tt.c); err == nil || err.Error() != tt.want {
			t.Errorf("%+v: got %v, want %s", tt.c, err, tt.want)
		}
	}
	if _, err := NewChecker(KindTCP, Options{HTTP: &HTTPChecker{}}); err == nil {
		t.Error("an HTTP request with type tcp: no error")
	}
}
