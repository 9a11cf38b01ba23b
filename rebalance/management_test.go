package rebalance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeManagement lists conns and records the DELETEs.
type fakeManagement struct {
	mu      sync.Mutex
	conns   []map[string]any
	deleted []string
	reasons []string
	users   []string
}

func (f *fakeManagement) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	user, pass, _ := r.BasicAuth()
	f.users = append(f.users, user+":"+pass)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/connections":
		if r.URL.Query().Get("columns") != "name,peer_host,peer_port,port" {
			http.Error(w, "bad columns", http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(f.conns)
	case r.Method == http.MethodDelete:
		name := r.URL.Path[len("/api/connections/"):]
		for i, c := range f.conns {
			if c["name"] == name {
				f.conns = append(f.conns[:i], f.conns[i+1:]...)
				f.deleted = append(f.deleted, name)
				f.reasons = append(f.reasons, r.Header.Get("X-Reason"))
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

func TestManagementFindAndDelete(t *testing.T) {
	f := &fakeManagement{conns: []map[string]any{
		{"name": "127.0.0.1:40000 -> 127.0.0.1:5673", "peer_host": "127.0.0.1", "peer_port": 40000, "port": 5673},
		{"name": "127.0.0.1:40001 -> 127.0.0.1:5674", "peer_host": "127.0.0.1", "peer_port": 40001, "port": 5674},
		{"name": "127.0.0.1:40001 -> 127.0.0.1:5673", "peer_host": "127.0.0.1", "peer_port": 40001, "port": 5673},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	dead := "http://127.0.0.1:1" // a node whose API does not answer comes first
	m := NewManagement("", "", 0)
	ctx := context.Background()

	c, err := m.Find(ctx, []string{dead, srv.URL}, netip.MustParseAddrPort("127.0.0.1:40001"), 5673)
	if err != nil || c.Name != "127.0.0.1:40001 -> 127.0.0.1:5673" || c.Base != srv.URL {
		t.Fatalf("Find = %+v, %v", c, err)
	}
	if err := m.Delete(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, c); !errors.Is(err, ErrGone) {
		t.Errorf("second Delete: %v, want ErrGone", err)
	}
	if _, err := m.Find(ctx, []string{srv.URL}, netip.MustParseAddrPort("127.0.0.1:40001"), 5673); !errors.Is(err, ErrNotListed) {
		t.Errorf("Find after the delete: %v, want ErrNotListed", err)
	}
	if _, err := m.Find(ctx, []string{dead}, netip.MustParseAddrPort("127.0.0.1:40000"), 0); err == nil || errors.Is(err, ErrNotListed) {
		t.Errorf("Find with no API answering: %v, want the API's error", err)
	}
	if _, err := m.Find(ctx, []string{srv.URL}, netip.AddrPort{}, 0); !errors.Is(err, ErrNotListed) {
		t.Errorf("Find without an upstream: %v, want ErrNotListed", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reasons) != 1 || f.reasons[0] != Reason {
		t.Errorf("X-Reason %q, want %q", f.reasons, Reason)
	}
	for _, u := range f.users {
		if u != "guest:guest" {
			t.Errorf("credentials %q, want guest:guest by default", u)
		}
	}
}

// Sticky joins /api/consumers with /api/queues: consumers of exclusive or auto-delete queues
// make their connection's peer sticky; others do not. A consumer whose channel details are []
// (RabbitMQ 4.0 lists it so while the channel opens or closes) is skipped, not an error.
func TestManagementSticky(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/consumers":
			fmt.Fprint(w, `[{"channel_details":{"peer_host":"127.0.0.1","peer_port":4001},"queue":{"name":"amq.gen-x","vhost":"/"}},
				{"channel_details":{"peer_host":"::ffff:127.0.0.1","peer_port":4002},"queue":{"name":"ad","vhost":"v"}},
				{"channel_details":{"peer_host":"127.0.0.1","peer_port":4003},"queue":{"name":"durable","vhost":"/"}},
				{"channel_details":{"peer_host":"127.0.0.1","peer_port":4004},"queue":{"name":"ad","vhost":"/"}},
				{"channel_details":[],"queue":{"name":"amq.gen-x","vhost":"/"}}]`)
		case "/api/queues":
			fmt.Fprint(w, `[{"name":"amq.gen-x","vhost":"/","exclusive":true,"auto_delete":false},
				{"name":"ad","vhost":"v","exclusive":false,"auto_delete":true},
				{"name":"durable","vhost":"/","exclusive":false,"auto_delete":false},
				{"name":"ad","vhost":"/","exclusive":false,"auto_delete":false}]`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	m := NewManagement("", "", time.Second)
	got, err := m.Sticky(context.Background(), []string{"http://127.0.0.1:1", srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.AddrPort]bool{netip.MustParseAddrPort("127.0.0.1:4001"): true, netip.MustParseAddrPort("127.0.0.1:4002"): true}
	if !maps.Equal(got, want) {
		t.Errorf("Sticky = %v, want %v", got, want)
	}
	if _, err := m.Sticky(context.Background(), []string{"http://127.0.0.1:1"}); err == nil {
		t.Error("no management API answered, and no error")
	}
}
