package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the TOML loader: it must not panic, every problem it
// reports must be an ErrorList entry on a line of the input (or on none), and a configuration
// that loads must come back from ToTOML as the same Config, since `amqplb convert` of a TOML
// file relies on that.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/amqplb.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{
		"[[frontend]]\nname = \"a\"\nbind = \":5672\"\nbackend = \"b\"\n[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:5673\"\n",
		"[global]\nmax_connections = -1\ndrain_timeout = \"5x\"\nlog_level = info\n",
		"[global]\nlog = [ { address = \"/dev/log\", facility = \"local7\", level = \"info\" } ]\n",
		"[[stats]]\nname = \"s\"\nbind = \"127.0.0.1:8405\"\nuri = \"/haproxy?stats\"\nauth = [\"a:b\"]\nmetrics = \"/metrics\"\n",
		"[[frontend]]\nname = \"a\"\nbind = \":1\"\nbackend = \"b\"\nacl = { lan = [\"10.0.0.0/8\", \"192.168.0.0/255.255.0.0\"] }\ntcp_request = [ { action = \"reject\", unless = \"lan\" } ]\n",
		"[[backend]]\nname = \"b\"\nidle_timeout = \"heartbeat\"\n[backend.health_check]\ntype = \"tcp\"\ntcp_check = [ { action = \"send-binary\", data = \"41\" }, { action = \"expect\", match = \"rbinary\", pattern = \"^41\", negate = true } ]\n",
		"[[backend]]\nname = \"b\"\n[backend.health_check]\nmanagement = { port = 15672, alarms = true, eject_on_alarm = true }\n[backend.rebalance]\nenabled = true\nrate = \"2/m\"\n",
		"[[backend]]\nname = \"b\"\n[backend.health_check]\ntype = \"http\"\nhttp = { method = \"HEAD\", path = \"/api/aliveness-test/%2F\", headers = { Authorization = \"Basic Z3Vlc3Q6Z3Vlc3Q=\" }, match = \"status\", pattern = \"200-299,304\", negate = true }\n",
		"a = 1\n[a]\n",
		"[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"[::1]:5671\"\ntls = { ca = \"x\", sni = \"y\" }\nweight = 257\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := strings.Count(string(data), "\n") + 1
		c, err := Parse("f.toml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T is not a non-empty ErrorList: %v", err, err)
			}
			for _, e := range list {
				if e.Line < 0 || e.Line > lines {
					t.Errorf("error on line %d of %d: %s", e.Line, lines, e)
				}
			}
			return
		}
		out := ToTOML(c)
		back, err := Parse("f.toml", out)
		if err != nil {
			t.Fatalf("ToTOML of a loaded file does not load: %v\n%s", err, out)
		}
		back.Warnings = c.Warnings
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("ToTOML of a loaded file loads to another Config:\n got %+v\nwant %+v\n%s", back, c, out)
		}
	})
}
