package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/healthcheck"
)

// TestCheckerHTTP: a backend's http check becomes an HTTP checker that sends the configured
// request and judges the response by its match.
func TestCheckerHTTP(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	bc := config.DefaultBackend()
	bc.Name = "mgmt"
	bc.HealthCheck.Type = "http"
	bc.HealthCheck.Timeout = 5 * time.Second
	bc.HealthCheck.HTTP = &config.HTTPCheck{Method: "GET", Path: "/api/aliveness-test/%2F",
		Headers: map[string]string{"authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}, Match: "status", Pattern: "200"}
	c, err := checker(bc, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := c.Check(context.Background(), healthcheck.Target{Addr: srv.Listener.Addr().String()})
	if res.OK || res.Reason != "HTTP status 503, want 200" {
		t.Errorf("got %+v, want a failure \"HTTP status 503, want 200\"", res)
	}
	r := <-got
	if u, p, ok := r.BasicAuth(); r.RequestURI != "/api/aliveness-test/%2F" || !ok || u != "guest" || p != "guest" {
		t.Errorf("request %s with auth %q %q %v", r.RequestURI, u, p, ok)
	}

	bc.HealthCheck.Type = "tcp"
	if _, err := checker(bc, nil); err == nil {
		t.Error("an http request with type tcp: no error")
	}
}
