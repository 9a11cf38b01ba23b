package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/resolve"
)

// template is a [[backend.server_template]]'s running resolution and the settings it was built
// from: a reload keeps it when they are unchanged.
type template struct {
	key templateKey
	t   *resolve.Template
}

// templateKey is what makes two [[backend.server_template]] the same resolution.
type templateKey struct {
	address, nameservers string
	count                int
	interval, timeout    time.Duration
}

func templateKeyOf(st config.ServerTemplate) templateKey {
	return templateKey{address: st.Address, nameservers: strings.Join(st.Nameservers, ","), count: st.Count,
		interval: st.ResolveInterval, timeout: st.ResolveTimeout}
}

// templateID names a template among all backends': backend and prefix (unique in a backend).
func templateID(backend, prefix string) string { return backend + "/" + prefix }

func (a *app) newTemplate(backend string, st config.ServerTemplate, initial []string) (*template, error) {
	t, err := resolve.New(resolve.Options{Name: templateID(backend, st.Prefix), Address: st.Address, Count: st.Count,
		Interval: st.ResolveInterval, Timeout: st.ResolveTimeout, Lookup: resolve.NewLookup(st.Nameservers), Initial: initial,
		// After every resolution: applyDiscovered compares with what runs.
		OnResolve: a.rediscovered, Logger: a.log})
	if err != nil {
		return nil, err
	}
	return &template{key: templateKeyOf(st), t: t}, nil
}

// startTemplates builds the templates of cfg's backends and resolves each name once, so that
// the first generation has their servers (HAProxy's init-addr libc: a name that does not
// resolve now leaves the template with no servers until it does, as init-addr none).
func (a *app) startTemplates(cfg *config.Config) error {
	a.templates = map[string]*template{}
	for _, bc := range cfg.Backends {
		for _, st := range bc.ServerTemplates {
			t, err := a.newTemplate(bc.Name, st, nil)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), st.ResolveTimeout+time.Second)
			if err := t.t.Resolve(ctx); err == nil {
				a.log.Info("server_template: resolved", "backend", bc.Name, "prefix", st.Prefix, "address", st.Address,
					"servers", slices.DeleteFunc(t.t.Slots(), func(s string) bool { return s == "" }))
			}
			cancel()
			a.templates[templateID(bc.Name, st.Prefix)] = t
		}
	}
	return nil
}

// syncTemplates makes the templates those of cfg after a reload: unchanged ones keep running,
// changed ones are replaced (keeping the slots of the old one when the address is the same),
// removed ones stop.
func (a *app) syncTemplates(cfg *config.Config) {
	next := map[string]*template{}
	for _, bc := range cfg.Backends {
		for _, st := range bc.ServerTemplates {
			id := templateID(bc.Name, st.Prefix)
			old := a.templates[id]
			k := templateKeyOf(st)
			if old != nil && old.key == k {
				next[id] = old
				continue
			}
			var initial []string
			if old != nil && old.key.address == k.address {
				initial = old.t.Slots()
			}
			t, err := a.newTemplate(bc.Name, st, initial)
			if err != nil { // validated by config; never reached
				a.log.Error("reload: server_template not started", "backend", bc.Name, "prefix", st.Prefix, "err", err)
				continue
			}
			t.t.Start()
			next[id] = t
		}
	}
	a.discMu.Lock()
	var stop []*template
	for id, t := range a.templates {
		if next[id] != t {
			stop = append(stop, t)
		}
	}
	a.templates = next
	a.discMu.Unlock()
	for _, t := range stop {
		t.t.Stop()
	}
}

// stopTemplates stops every template.
func (a *app) stopTemplates() {
	a.discMu.Lock()
	ts := a.templates
	a.templates = nil
	a.discMu.Unlock()
	for _, t := range ts {
		t.t.Stop()
	}
}

// templateServers returns the servers bc's templates resolved to now, slot by slot: prefixN
// at the address in slot N.
func (a *app) templateServers(bc config.Backend) []config.Server {
	var out []config.Server
	for _, st := range bc.ServerTemplates {
		a.discMu.Lock()
		t := a.templates[templateID(bc.Name, st.Prefix)]
		a.discMu.Unlock()
		if t == nil || t.key != templateKeyOf(st) {
			// None yet, or the running one resolves another name or count (a reload that
			// changed the template): its slots are not this template's.
			continue
		}
		for i, addr := range t.t.Slots() {
			if addr != "" {
				out = append(out, st.Server(bc, i+1, addr))
			}
		}
	}
	return out
}
