package admin

import (
	"bytes"
	"slices"
	"testing"

	"github.com/amqplb/amqplb/backend"
)

// FuzzRuntimeCommand: no command line, however malformed, panics the runtime socket; a
// user-level session never changes a server and always answers something (but to prompt,
// quit and user, which answer nothing in HAProxy either).
func FuzzRuntimeCommand(f *testing.F) {
	for _, seed := range []string{"help", "show stat -1 4 -1", "set server rabbitmq/rmq1 weight 50%", "disable server rabbitmq/rmq1",
		"show servers state other", "get weight rabbitmq/rmq1\\;", "set maxconn server rabbitmq/rmq1 -9", "show sess 0x1",
		"shutdown session 0", "frobnicate the server", "", "\\", "set server /", "show stat nosuch 1 2 typed"} {
		f.Add(seed)
	}
	fx := newFixture()
	s := NewSocket(SocketOptions{Options: fx.options("")})
	f.Fuzz(func(t *testing.T, line string) {
		for _, b := range fx.backends {
			for _, srv := range b.Servers {
				srv.SetAdmin(backend.AdminReady)
				srv.SetWeight(srv.InitialWeight())
			}
		}
		var out bytes.Buffer
		user := &cliSession{s: s, level: LevelUser}
		user.run(line, &out)
		for _, b := range fx.backends {
			for _, srv := range b.Servers {
				if srv.Admin() != backend.AdminReady || srv.Weight() != srv.InitialWeight() {
					t.Fatalf("%q at level user changed %s", line, srv.Name())
				}
			}
		}
		if args := splitArgs(line); out.Len() == 0 && !(len(args) == 1 && slices.Contains([]string{"prompt", "quit", "user"}, args[0])) {
			t.Fatalf("%q at level user: no answer", line)
		}
		(&cliSession{s: s, level: LevelAdmin}).run(line, &out)
	})
}
