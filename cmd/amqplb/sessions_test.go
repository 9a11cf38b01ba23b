package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/admin"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/internal/testenv"
	"github.com/amqplb/amqplb/proxy"
	amqp "github.com/rabbitmq/amqp091-go"
)

// adminSession carries every field admin has: each one set in the proxy's snapshot is set in
// admin's.
func TestAdminSessionEveryField(t *testing.T) {
	in := proxy.SessionInfo{
		ID: 9, Frontend: "amqp", Client: netip.MustParseAddrPort("10.0.0.1:1000"), Via: netip.MustParseAddrPort("10.0.0.2:2000"),
		Backend: "rabbitmq", Server: "rmq1",
		Identity: proxy.Identity{Protocol: proxy.ProtoAMQP091, Mechanism: "PLAIN", User: "u", VHost: "v", ConnectionName: "c",
			ClientProduct: "p", ClientVersion: "1", ClientPlatform: "Go", ChannelMax: 2, FrameMax: 4096, Heartbeat: time.Minute, CloseCode: 403},
		BytesToServer: 5, BytesToClient: 6, Since: time.Unix(1, 0),
	}
	out := adminSession(&in)
	v := reflect.ValueOf(out)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("admin.Session.%s is not set", v.Type().Field(i).Name)
		}
	}
	if out.User != "u" || out.VHost != "v" || out.Heartbeat != time.Minute || out.Via != in.Via || out.Server != "rmq1" {
		t.Errorf("adminSession = %+v", out)
	}
}

// The admin API of a running amqplb lists its sessions and closes one by id.
func TestAdminListsAndClosesSessions(t *testing.T) {
	broker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := broker.Accept(); err == nil {
			accepted <- c
		}
	}()

	cfg := config.DefaultConfig()
	cfg.Global.DrainTimeout = time.Second
	cfg.Global.AccessLog = false
	cfg.Admin = config.Admin{Listen: "127.0.0.1:0", Token: "t0k", VHostLabels: 5, SocketLevel: "operator"}
	cfg.Frontends = []config.Frontend{{Name: "amqp", Bind: "127.0.0.1:0", Backend: "rabbitmq", Mode: "tcp"}}
	b := config.DefaultBackend()
	b.Name = "rabbitmq"
	b.HealthCheck.Type = "none"
	s := config.DefaultServer()
	s.Name, s.Address = "rmq1", broker.Addr().String()
	b.Servers = []config.Server{s}
	cfg.Backends = []config.Backend{b}
	a, err := newApp(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	h, addr := a.admin.Handler(), a.frontends[0].Addr().String() // before run, which sets a.admin again
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	client, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	up := <-accepted
	defer up.Close()
	if _, err := io.ReadFull(up, make([]byte, 5)); err != nil { // relayed: the session has its server
		t.Fatal(err)
	}

	call := func(method, path string, header ...string) (int, string) {
		req := httptest.NewRequest(method, path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	code, body := call(http.MethodGet, "/api/v1/sessions?server=rmq1")
	var list admin.SessionsResponse
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list.Sessions) != 1 {
		t.Fatalf("GET /api/v1/sessions = %d %s", code, body)
	}
	got := list.Sessions[0]
	if got.Frontend != "amqp" || got.Backend != "rabbitmq" || got.Server != "rmq1" || got.Client != client.LocalAddr().String() {
		t.Errorf("session = %+v", got)
	}
	if code, body = call(http.MethodGet, "/metrics"); !strings.Contains(body, `amqplb_vhost_sessions{vhost="_other"} 0`) {
		t.Errorf("/metrics = %d, no amqplb_vhost_sessions{vhost=\"_other\"} 0 (a tcp session has no vhost)", code)
	}

	path := "/api/v1/sessions/" + jsonID(got.ID) + "/close"
	if code, _ = call(http.MethodPost, path); code != http.StatusUnauthorized {
		t.Errorf("close without the token = %d, want 401", code)
	}
	if code, body = call(http.MethodPost, path, "Authorization", "Bearer t0k"); code != http.StatusOK {
		t.Fatalf("close = %d %s", code, body)
	}
	// The client is disconnected.
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(client); err != nil {
		t.Errorf("client read after the close: %v, want EOF", err)
	}
	if code, _ = call(http.MethodPost, "/api/v1/sessions/999999999/close", "Authorization", "Bearer t0k"); code != http.StatusNotFound {
		t.Errorf("close of an unknown id = %d, want 404", code)
	}
}

func jsonID(id uint64) string {
	b, _ := json.Marshal(id)
	return string(b)
}

// BenchmarkSessionsAPILive1000 is GET /api/v1/sessions of a running amqplb holding 1,000 real
// AMQP sessions (amqp091-go clients through an amqp-mode frontend to a fake broker), as the
// issue asked: the proxy's snapshot, the conversion and the JSON, one page of 1,000. It then
// closes one session by id (POST /api/v1/sessions/{id}/close) and waits for its client to see it.
func BenchmarkSessionsAPILive1000(b *testing.B) {
	const n = 1000
	fake := &testenv.FakeAMQP{}
	fb := testenv.StartFakeBroker(b, fake.Handle)
	cfg := oneBackend("rabbitmq")
	cfg.Frontends[0].Mode = "amqp"
	cfg.Admin.Token = "t0k"
	cfg.Backends[0].Servers[0].Address = fb.Addr()
	a, err := newApp(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	h, addr := a.admin.Handler(), a.frontends[0].Addr().String() // before run, which sets them
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, nil) }()
	conns := make([]*amqp.Connection, 0, n)
	b.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	for i := range n {
		props := amqp.NewConnectionProperties()
		props.SetClientConnectionName(fmt.Sprintf("bench-%d", i))
		c, err := amqp.DialConfig("amqp://guest:guest@"+addr+"/", amqp.Config{Properties: props, Heartbeat: time.Minute})
		if err != nil {
			b.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	get := func() admin.SessionsResponse {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/sessions?limit=1000", nil))
		var list admin.SessionsResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &list); rec.Code != http.StatusOK || err != nil {
			b.Fatalf("GET /api/v1/sessions: %d %v", rec.Code, err)
		}
		return list
	}
	if list := get(); list.Total != n || len(list.Sessions) != n || list.Sessions[0].User != "guest" {
		b.Fatalf("GET /api/v1/sessions: total %d, %d listed", list.Total, len(list.Sessions))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/sessions?limit=1000", nil))
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
	b.StopTimer()

	// Close one by id: its client sees its connection end.
	victim := get().Sessions[0]
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/api/v1/sessions/%d/close", victim.ID), nil)
	req.Header.Set("Authorization", "Bearer t0k")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("POST close: %d %s", rec.Code, rec.Body)
	}
	testenv.Eventually(b, 10*time.Second, func() error {
		closed := 0
		for _, c := range conns {
			if c.IsClosed() {
				closed++
			}
		}
		if closed != 1 {
			return fmt.Errorf("%d clients closed, want 1", closed)
		}
		return nil
	})
}
