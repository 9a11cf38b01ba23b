package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseServerManagementPort checks [[backend.server]] management_port:
// 0 (the backend's) unless written, its range, its warning without
// health_check.management, and the round trip (not written when 0).
func TestParseServerManagementPort(t *testing.T) {
	src := strings.Replace(minimal, `name = "rabbitmq"
`, `name = "rabbitmq"
health_check = { management = { port = 15672 } }
`, 1)
	src = strings.Replace(src, `address = "10.0.0.2:5672"`, `address = "10.0.0.2:5672"
management_port = 15673`, 1)
	c, err := Parse("m.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := []int{c.Backends[0].Servers[0].ManagementPort, c.Backends[0].Servers[1].ManagementPort}; !reflect.DeepEqual(got, []int{0, 15673}) {
		t.Errorf("management_port = %v, want [0 15673]", got)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings %q", c.Warnings)
	}
	out := string(ToTOML(c))
	if n := strings.Count(out, "management_port"); n != 1 {
		t.Errorf("ToTOML wrote management_port %d times, want once (0 is left out):\n%s", n, out)
	}
	back, err := Parse("m.toml", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	back.Warnings, c.Warnings = nil, nil
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, c)
	}

	for _, tt := range []struct{ value, want string }{
		{"0", `m.toml:18: backend "rabbitmq": server "rmq2": management_port 0 out of range 1..65535`},
		{"65536", `m.toml:18: backend "rabbitmq": server "rmq2": management_port 65536 out of range 1..65535`},
		{"-1", `m.toml:18: backend "rabbitmq": server "rmq2": management_port -1 out of range 1..65535`},
	} {
		bad := strings.Replace(src, "management_port = 15673", "management_port = "+tt.value, 1)
		if _, err := Parse("m.toml", []byte(bad)); err == nil || err.Error() != tt.want {
			t.Errorf("management_port = %s: %v, want %s", tt.value, err, tt.want)
		}
	}

	noMgmt := strings.Replace(minimal, `address = "10.0.0.2:5672"`, `address = "10.0.0.2:5672"
management_port = 15673`, 1)
	c, err = Parse("m.toml", []byte(noMgmt))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`m.toml:17: backend "rabbitmq": server "rmq2": management_port has no effect without health_check.management`}
	if !reflect.DeepEqual(c.Warnings, want) {
		t.Errorf("warnings %q, want %q", c.Warnings, want)
	}
}
