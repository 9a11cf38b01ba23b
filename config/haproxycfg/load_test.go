package haproxycfg

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestLoad(t *testing.T) {
	// A name ending in .toml is TOML.
	c, err := Load(filepath.Join("..", "testdata", "amqplb.toml"))
	if err != nil {
		t.Fatalf("the ARCHITECTURE.md example does not load: %v", err)
	}
	if len(c.Backends) != 1 || len(c.Backends[0].Servers) != 2 || c.Frontends[0].Bind != "127.0.0.1:5672" {
		t.Errorf("Load = %+v", c)
	}

	// Any other name is haproxy.cfg syntax (see haproxy_test.go).
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte("global\n  maxconn 100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(cfg)
	if want := cfg + ": no listen or frontend section with a bind line: nothing to serve"; err == nil || err.Error() != want {
		t.Errorf("Load(haproxy.cfg) = %v, want %s", err, want)
	}

	for _, name := range []string{"missing.toml", "missing.cfg"} {
		_, err = Load(filepath.Join("testdata", name))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load of a missing %s: %v, want fs.ErrNotExist", name, err)
		}
	}
}

func TestLoadLines(t *testing.T) {
	dir := t.TempDir()
	toml := filepath.Join(dir, "a.toml")
	if err := os.WriteFile(toml, []byte("[[frontend]]\nname = \"f\"\nbind = \":5672\"\nbackend = \"b\"\ntls = { cert = \"c.pem\" }\n\n[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"10.0.0.1:5672\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hap := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(hap, []byte("listen b\n    bind :5671 ssl crt c.pem\n    server s 10.0.0.1:5672 ssl verify none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		file string
		path string
		want int
	}{
		{toml, "frontend.0.tls", 5},
		{toml, "backend.0.server.0.tls", 9}, // not written: the server's table
		{hap, "frontend.0.tls", 2},
		{hap, "backend.0.server.0.tls", 3},
	} {
		_, lines, err := LoadLines(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		if got := lines.Of(tt.path); got != tt.want {
			t.Errorf("%s: line of %s = %d, want %d", filepath.Base(tt.file), tt.path, got, tt.want)
		}
	}
}
