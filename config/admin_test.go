package config

import (
	"strings"
	"testing"
)

// admin.vhost_labels: 100 when not written, a written 0 kept, negative refused with its line,
// and ToTOML writes it back.
func TestAdminVHostLabels(t *testing.T) {
	for _, tt := range []struct {
		admin string
		want  int
		err   string
	}{
		{admin: "", want: 100},
		{admin: "[admin]\nvhost_labels = 0\n", want: 0},
		{admin: "[admin]\nvhost_labels = 7\n", want: 7},
		{admin: "[admin]\nvhost_labels = -1\n", err: "a.toml:2: admin: vhost_labels -1 must not be negative"},
		{admin: "[admin]\nvhost_labels = \"many\"\n", err: "a.toml:2: admin: vhost_labels: expected an integer"},
	} {
		c, err := Parse("a.toml", []byte(tt.admin+minimal))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.admin, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.admin, err)
			continue
		}
		if c.Admin.VHostLabels != tt.want {
			t.Errorf("%q: vhost_labels = %d, want %d", tt.admin, c.Admin.VHostLabels, tt.want)
		}
		back, err := Parse("b.toml", ToTOML(c))
		if err != nil {
			t.Fatalf("ToTOML output does not parse: %v", err)
		}
		if back.Admin != c.Admin {
			t.Errorf("%q: round trip gives %+v, want %+v", tt.admin, back.Admin, c.Admin)
		}
	}
	if DefaultConfig().Admin.VHostLabels != DefaultVHostLabels {
		t.Errorf("DefaultConfig().Admin.VHostLabels = %d", DefaultConfig().Admin.VHostLabels)
	}
}

// admin.socket*: the runtime socket's keys, their defaults, errors with their lines, and the
// round trip through ToTOML.
func TestAdminSocket(t *testing.T) {
	for _, tt := range []struct {
		admin, err, warning string
		want                Admin
	}{
		{admin: "", want: Admin{SocketLevel: "operator"}},
		{admin: "[admin]\nsocket = \"/run/amqplb.sock\"\nsocket_mode = \"660\"\nsocket_group = \"amqplb\"\nsocket_level = \"admin\"\n",
			want: Admin{Socket: "/run/amqplb.sock", SocketMode: "660", SocketGroup: "amqplb", SocketLevel: "admin"}},
		{admin: "[admin]\nsocket = \"/s\"\nsocket_level = \"root\"\n", err: `a.toml:3: admin: socket_level "root" is not one of "user", "operator", "admin"`},
		{admin: "[admin]\nsocket = \"/s\"\nsocket_mode = \"rw-rw----\"\n", err: `a.toml:3: admin: socket_mode: "rw-rw----" is not a file mode`},
		{admin: "[admin]\nsocket = \"/s\"\nsocket_mode = \"1777\"\n", err: `a.toml:3: admin: socket_mode: "1777" is not a file mode`},
		{admin: "[admin]\nsocket_user = \"amqplb\"\n", want: Admin{SocketUser: "amqplb", SocketLevel: "operator"},
			warning: "a.toml:2: admin: socket_user has no effect without admin.socket"},
	} {
		c, err := Parse("a.toml", []byte(tt.admin+minimal))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.admin, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.admin, err)
			continue
		}
		got := c.Admin
		got.Listen, got.Token, got.VHostLabels = "", "", 0
		if got != tt.want {
			t.Errorf("%q: admin = %+v, want %+v", tt.admin, got, tt.want)
		}
		if w := strings.Join(c.Warnings, "\n"); w != tt.warning {
			t.Errorf("%q: warnings %q, want %q", tt.admin, w, tt.warning)
		}
		back, err := Parse("b.toml", ToTOML(c))
		if err != nil || back.Admin != c.Admin {
			t.Errorf("%q: round trip gives %+v (%v), want %+v", tt.admin, back.Admin, err, c.Admin)
		}
	}
}
