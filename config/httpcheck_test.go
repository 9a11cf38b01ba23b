package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseHTTPCheck checks the http check's keys: their defaults, a table written out, and
// that a backend without http gets none.
func TestParseHTTPCheck(t *testing.T) {
	src := strings.Replace(minimal, `name = "rabbitmq"`, `name = "rabbitmq"

[backend.health_check]
type = "http"

[backend.health_check.http]
path = "/api/aliveness-test/%2F"
headers = { Authorization = "Basic Z3Vlc3Q6Z3Vlc3Q=" }
match = "status"
pattern = "200"`, 1)
	c, err := Parse("h.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := HTTPCheck{Method: "GET", Path: "/api/aliveness-test/%2F", Headers: map[string]string{"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="},
		Match: "status", Pattern: "200"}
	if got := c.Backends[0].HealthCheck.HTTP; got == nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("http = %+v, want %+v", got, want)
	}

	c, err = Parse("h.toml", []byte(strings.Replace(minimal, `name = "rabbitmq"`, "name = \"rabbitmq\"\nhealth_check = { type = \"http\", http = {} }", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Backends[0].HealthCheck.HTTP; got == nil || !reflect.DeepEqual(*got, DefaultHTTPCheck()) || got.Method != "GET" || got.Path != "/" {
		t.Errorf("http = {} gives %+v, want the defaults", got)
	}
	c, err = Parse("h.toml", []byte(strings.Replace(minimal, `name = "rabbitmq"`, "name = \"rabbitmq\"\nhealth_check = { type = \"http\" }", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Backends[0].HealthCheck; h.Type != "http" || h.HTTP != nil {
		t.Errorf("type http alone gives %+v", h)
	}
}

func TestParseHTTPCheckErrors(t *testing.T) {
	src := `
[[backend]]
name = "a"
health_check = { type = "tcp", http = { path = "/" } }
server = [{ name = "s1", address = "h1:15672" }, { name = "s2", address = "h2:15672" }]

[[backend]]
name = "b"
server = [{ name = "s1", address = "h1:15672" }, { name = "s2", address = "h2:15672" }]

[backend.health_check]
type = "http"

[backend.health_check.http]
method = "GE T"
path = "api"
host = "a b"
headers = { "X A" = "1", host = "h", Connection = "keep-alive", X-B = "a\nb" }
match = "status"
pattern = "2xx"

[[backend]]
name = "c"
server = [{ name = "s1", address = "h1:15672" }, { name = "s2", address = "h2:15672" }]
health_check = { type = "http", http = { match = "rstring", pattern = "(" } }

[[backend]]
name = "d"
server = [{ name = "s1", address = "h1:15672" }, { name = "s2", address = "h2:15672" }]
health_check = { type = "http", http = { pattern = "ok", negate = true } }

[[backend]]
name = "e"
server = [{ name = "s1", address = "h1:15672" }, { name = "s2", address = "h2:15672" }]
health_check = { type = "http", http = { match = "binary", pattern = "00" } }

[[backend]]
name = "f"
server = [{ name = "s1", address = "h1:15672" }, { name = "s2", address = "h2:15672" }]
health_check = { type = "http", http = { match = "string" } }
`
	want := `a.toml:4: backend "a": health_check: http needs type = "http", not "tcp"
a.toml:15: backend "b": health_check: http: method "GE T" is not an HTTP method (e.g. "GET")
a.toml:16: backend "b": health_check: http: path "api" must start with / and hold no blank (write a blank as %20)
a.toml:17: backend "b": health_check: http: host "a b" must hold no blank
a.toml:18: backend "b": health_check: http: header Connection is the check's own (it sends no body and closes the connection)
a.toml:18: backend "b": health_check: http: header name "X A" is not an HTTP header name
a.toml:18: backend "b": health_check: http: header X-B has a line break
a.toml:18: backend "b": health_check: http: header Host: set host instead
a.toml:20: backend "b": health_check: http: status pattern "2xx": want codes 100..599 or ranges of them, separated by commas (e.g. "200", "200-299,304")
a.toml:25: backend "c": health_check: http: pattern "(": error parsing regexp: missing closing ): ` + "`(`" + `
a.toml:30: backend "d": health_check: http: pattern and negate need match (status, rstatus, string or rstring)
a.toml:35: backend "e": health_check: http: match "binary" is not one of "status", "rstatus", "string", "rstring"
a.toml:40: backend "f": health_check: http: match string needs pattern
a.toml: no frontend defined (add a [[frontend]] with name, bind and backend)`
	_, err := Parse("a.toml", []byte(src))
	if err == nil || err.Error() != want {
		t.Errorf("errors:\n%v\nwant:\n%s", err, want)
	}
}
