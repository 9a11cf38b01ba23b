package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amqplb/amqplb/proxy"

	"go.uber.org/goleak"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture is a backend set, the health checks' statuses of its servers and frontend stats that
// a test can change between requests.
type fixture struct {
	mu        sync.Mutex
	backends  []*backend.Backend
	checks    *healthcheck.Statuses
	frontends []FrontendStats
	ready     bool
}

// newFixture returns backend "rabbitmq" with servers rmq1..rmq3 (rmq3 a backup) and
// backend "other" with one server, all up, and frontend "amqp".
func newFixture() *fixture {
	mk := func(name, addr string, w int, backup bool) *backend.Server {
		return backend.NewServer(backend.ServerOptions{Name: name, Address: addr, Weight: w, Backup: backup})
	}
	return &fixture{
		ready:  true,
		checks: healthcheck.NewStatuses(),
		backends: []*backend.Backend{
			{Name: "rabbitmq", Servers: []*backend.Server{
				mk("rmq1", "127.0.0.1:5673", 10, false),
				mk("rmq2", "127.0.0.1:5674", 10, false),
				mk("rmq3", "127.0.0.1:5675", 5, true),
			}},
			{Name: "other", Servers: []*backend.Server{mk("o1", "10.0.0.1:5672", 1, false)}},
		},
		frontends: []FrontendStats{{Name: "amqp", Active: 2, Total: 40, Refused: map[string]uint64{"maxconn": 3}}},
	}
}

func (f *fixture) server(b, s string) *backend.Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, bk := range f.backends {
		if bk.Name == b {
			return bk.Server(s)
		}
	}
	return nil
}

func (f *fixture) options(token string) Options {
	return Options{
		Token: token,
		Backends: func() []*backend.Backend {
			f.mu.Lock()
			defer f.mu.Unlock()
			return append([]*backend.Backend(nil), f.backends...)
		},
		Frontends: func() []FrontendStats {
			f.mu.Lock()
			defer f.mu.Unlock()
			return append([]FrontendStats(nil), f.frontends...)
		},
		Checks:        f.checks.Status,
		RefuseReasons: proxy.RefuseReasons(),
		Ready: func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.ready
		},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Version: "v0.0.0-test",
	}
}

// do sends a request to h and returns the status and body.
func do(t testing.TB, h http.Handler, method, path, body string, header ...string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// lifecycle is what Server and StatsServer both offer.
type lifecycle interface {
	Listen() error
	Addr() net.Addr
	Serve() error
	Shutdown(context.Context) error
}

// testLifecycle checks that s refuses Serve before Listen, then listens, calls use with the
// base URL and a client while it serves, and shuts it down cleanly.
func testLifecycle(t *testing.T, s lifecycle, use func(base string, client *http.Client)) {
	t.Helper()
	if s.Addr() != nil {
		t.Fatal("Addr before Listen is not nil")
	}
	if err := s.Serve(); err == nil {
		t.Fatal("Serve before Listen succeeded")
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()

	client := &http.Client{Timeout: 5 * time.Second}
	use("http://"+s.Addr().String(), client)
	client.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve returned %v after Shutdown, want nil", err)
	}
}

func TestListenServeShutdown(t *testing.T) {
	o := newFixture().options("")
	o.Listen = "127.0.0.1:0"
	testLifecycle(t, New(o), func(base string, client *http.Client) {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
			t.Errorf("/healthz = %d %q, want 200 ok", resp.StatusCode, body)
		}
	})
}

func TestListenBusyPort(t *testing.T) {
	a := New(Options{Listen: "127.0.0.1:0"})
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	b := New(Options{Listen: a.Addr().String()})
	if err := b.Listen(); err == nil {
		b.Shutdown(context.Background())
		t.Fatal("second Listen on a busy port succeeded")
	}
}

func TestDefaultListenIsLoopback(t *testing.T) {
	s := New(Options{})
	if s.opts.Listen != DefaultListen || !strings.HasPrefix(DefaultListen, "127.0.0.1:") {
		t.Errorf("default listen = %q, want loopback %q", s.opts.Listen, DefaultListen)
	}
}

// decode unmarshals body into a generic JSON value.
func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	return m
}
