package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/balancer"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/proxy"
)

// app is one running configuration: its backends and frontends.
type app struct {
	cfg       *config.Config
	log       *slog.Logger
	backends  map[string]*backend.Backend
	frontends []*proxy.Frontend
}

// supported rejects settings this build parses but does not implement yet, so that a
// configuration is never silently run without a feature it asks for (TLS above all).
func supported(cfg *config.Config) error {
	var errs []string
	for _, f := range cfg.Frontends {
		if f.TLS != nil {
			errs = append(errs, fmt.Sprintf("%s: frontend %q: tls is not supported yet", cfg.File, f.Name))
		}
		if f.AcceptProxy {
			errs = append(errs, fmt.Sprintf("%s: frontend %q: accept_proxy is not supported yet", cfg.File, f.Name))
		}
	}
	for _, b := range cfg.Backends {
		if b.SendProxy != "" {
			errs = append(errs, fmt.Sprintf("%s: backend %q: send_proxy is not supported yet", cfg.File, b.Name))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// newApp builds backends and frontends from cfg and binds every frontend, so a bind error is
// reported before anything serves.
func newApp(cfg *config.Config, log *slog.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log, backends: make(map[string]*backend.Backend)}
	routes := make(map[string]*proxy.Route)
	for _, bc := range cfg.Backends {
		b := &backend.Backend{Name: bc.Name}
		for _, sc := range bc.Servers {
			b.Servers = append(b.Servers, backend.NewServer(backend.ServerOptions{
				Name: sc.Name, Address: sc.Address, Weight: sc.Weight, Backup: sc.Backup, MaxConnections: sc.MaxConnections,
			}))
		}
		policy, err := balancer.New(bc.Balance)
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		a.backends[bc.Name] = b
		routes[bc.Name] = &proxy.Route{
			Backend:        b,
			Policy:         policy,
			ConnectTimeout: bc.ConnectTimeout,
			Retries:        bc.Retries,
			Redispatch:     bc.Redispatch,
			IdleTimeout:    bc.IdleTimeout,
			KeepAlive:      bc.TCPKeepalive,
		}
		if bc.HealthCheck.Type != "none" {
			log.Warn("health checks are not implemented in this build yet: servers are always up, failed dials are retried",
				"backend", bc.Name, "health_check", bc.HealthCheck.Type)
		}
	}
	global := proxy.NewLimiter(cfg.Global.MaxConnections)
	for _, fc := range cfg.Frontends {
		mode, err := proxy.ParseMode(fc.Mode)
		if err != nil {
			return nil, fmt.Errorf("frontend %s: %w", fc.Name, err)
		}
		f := proxy.NewFrontend(proxy.FrontendOptions{
			Name:           fc.Name,
			Bind:           fc.Bind,
			Mode:           mode,
			MaxConnections: fc.MaxConnections,
			Global:         global,
			Logger:         log,
			AccessLog:      cfg.Global.AccessLog,
		}, routes[fc.Backend])
		if err := f.Listen(); err != nil {
			a.closeAll()
			return nil, err
		}
		a.frontends = append(a.frontends, f)
	}
	return a, nil
}

func (a *app) closeAll() {
	for _, f := range a.frontends {
		_ = f.Close()
	}
}

// describe lists "name=addr" for the log.
func (a *app) describe() string {
	var parts []string
	for _, f := range a.frontends {
		parts = append(parts, fmt.Sprintf("%s=%s", f.Name(), f.Addr()))
	}
	return strings.Join(parts, " ")
}

// run serves until ctx is cancelled (SIGTERM/SIGINT), then drains: frontends stop accepting and
// sessions get up to drain_timeout before they are closed.
func (a *app) run(ctx context.Context, hup <-chan os.Signal) error {
	var g errgroup.Group
	for _, f := range a.frontends {
		g.Go(f.Serve)
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			a.log.Warn("SIGHUP received: configuration reload is not implemented in this build yet; keeping the running configuration")
		}
	}
	drain := a.cfg.Global.DrainTimeout
	a.log.Info("stopping: no new connections; draining sessions", "drain_timeout", drain)
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	start := time.Now()
	var sg errgroup.Group
	for _, f := range a.frontends {
		sg.Go(func() error {
			if err := f.Shutdown(dctx); err != nil {
				a.log.Warn("drain timed out; remaining sessions closed", "frontend", f.Name())
			}
			return nil
		})
	}
	_ = sg.Wait()
	if err := g.Wait(); err != nil {
		return err
	}
	a.log.Info("stopped", "drained_in", time.Since(start).Round(time.Millisecond))
	return nil
}
