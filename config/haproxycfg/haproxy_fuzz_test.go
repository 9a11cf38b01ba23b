package haproxycfg

import (
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/amqplb/amqplb/config"
)

// fuzzSeeds are lines that stress the parser, added to the corpus files.
var fuzzSeeds = []string{
	hapListen,
	"listen x 127.0.0.1:5672\n\tserver a 127.0.0.2:5672 check\n",
	"frontend f\n\tbind :5672\n\tuse_backend b\nbackend b\n\tserver a 127.0.0.2 check\n",
	"global\n\tlog udp@[::1]:514 len 1024 format rfc5424 local7 debug info\n" + hapListen,
	"defaults\n\tmode http\n" + hapListen + "listen s\n\tbind :1\n\tstats enable\n",
	"frontend p\n\tbind :8405\n\tmode http\n\tacl m path /metrics\n\thttp-request use-service prometheus-exporter if m\n" + hapListen,
	hapListen + "\tacl a src 10.0.0.0/8\n\ttcp-request connection reject if ! a || { src ::1 } or !{ src 1.2.3.4 }\n",
	hapListen + "\toption tcp-check\n\ttcp-check send \"AMQP\\x00\\x00\\x09\\x01\"\n\ttcp-check expect ! rbinary ^00\n",
	hapListen + "\ttimeout client 99999999999999999999d\n\ttimeout server 25d\n",
	"listen \"a b\" \"${X-1.2.3.4:5}\"\n\tserver 'q' \\x41:1\n",
	"frontend a from\n\tbind :5672,:5673,ipv6@:::5674\n",
	hapListen + "\tserver s [::1]:5671 ssl verify required ca-file c sni str(x) verifyhost y crt z check-ssl check-send-proxy port 1\n",
	hapListen + "\tacl a src 10.0.0.0/8\n\ttcp-request connection accept if a\n\ttcp-request session reject if LOCALHOST\n\ttcp-request content accept if a\n\ttcp-request content reject\n",
	mgmtListen + "\toption httpchk GET /a%2F HTTP/1.0\\r\\nX:\\ y\n\thttp-check send hdr H v meth PUT\n\thttp-check expect ! string \"x y\"\n\thttp-check connect port 1\n",
	"listen l\n\tbind :5671\n\toption tcp-check\n\ttcp-check connect default linger\n\tdefault-server send-proxy check-send-proxy\n\tserver s 10.0.0.9:5671 ssl verify none no-check-ssl addr 10.0.1.9 no-check-send-proxy\n\tserver t 10.0.0.8:5671 ssl verify none check port 5672\n",
}

// FuzzHAProxy checks that no haproxy.cfg makes the importer panic, that
// every message names its line except the one about a file with nothing to
// serve, and that what imports converts to TOML that loads to the same
// Config.
func FuzzHAProxy(f *testing.F) {
	for _, path := range corpus(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	withLine := regexp.MustCompile(`^f\.cfg:[1-9][0-9]*: `)
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := strings.Count(string(data), "\n") + 1
		c, _, err := parseHAProxy("f.cfg", data)
		if err != nil {
			var list config.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList: %v", err, err)
			}
			for _, e := range list {
				switch {
				case e.Line == 0 && e.Msg == nothingToServe:
				case e.Line < 1 || e.Line > lines:
					t.Errorf("error with line %d of %d: %s", e.Line, lines, e)
				}
			}
			return
		}
		for _, w := range c.Warnings {
			if !withLine.MatchString(w) {
				t.Errorf("warning without a line: %s", w)
			}
		}
		out, c2, err := Convert("f.cfg", data)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("Convert disagrees with the import: %v", err)
		}
		back, err := config.Parse("f.toml", out)
		if err != nil {
			t.Fatalf("the converted TOML does not load: %v\n%s", err, out)
		}
		back.File, back.Warnings = c.File, c.Warnings
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("the converted TOML loads to another Config:\n got %+v\nwant %+v\n%s", back, c, out)
		}
	})
}
