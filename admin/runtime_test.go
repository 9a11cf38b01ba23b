package admin

import (
	"encoding/csv"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqplb/amqplb/backend"
)

// startSocket serves a runtime socket of the given level over o in a temporary directory and
// returns its path; it is closed (and its file removed) when the test ends.
func startSocket(t *testing.T, level Level, o Options) (string, *Socket) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the runtime socket tests use UNIX socket file modes")
	}
	path := filepath.Join(t.TempDir(), "admin.sock")
	s := NewSocket(SocketOptions{Path: path, Mode: 0o660, UID: -1, GID: -1, Level: level, Options: o})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path, s
}

// cli sends input to the socket at path, as `socat stdio PATH` does with a pipe, and returns
// everything the socket answered before closing.
func cli(t *testing.T, path, input string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, input); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("%q: %v", input, err)
	}
	return string(out)
}

// hapFixture is the backend of the HAProxy 2.6 recording (testdata/haproxy26-cli.txt):
// listen rabbitmq with rabbit1 (weight 1) and rabbit2 (weight 50).
func hapFixture() *fixture {
	f := newFixture()
	f.backends = []*backend.Backend{{Name: "rabbitmq", Servers: []*backend.Server{
		backend.NewServer(backend.ServerOptions{Name: "rabbit1", Address: "127.0.0.1:23992", Weight: 1}),
		backend.NewServer(backend.ServerOptions{Name: "rabbit2", Address: "127.0.0.1:23993", Weight: 50}),
	}}}
	f.frontends = []FrontendStats{{Name: "rabbitmq"}}
	return f
}

func TestRuntimeSocketCommands(t *testing.T) {
	f := newFixture()
	var closed atomic.Int32
	o := f.options("")
	o.CloseSessions = func(s *backend.Server) int { closed.Add(1); return 3 }
	path, _ := startSocket(t, LevelAdmin, o)

	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file: %v %v, want a socket with mode 0660", fi.Mode(), err)
	}
	rmq1 := f.server("rabbitmq", "rmq1")
	for _, tc := range []struct{ in, want string }{
		{"show backend\n", "# name\nrabbitmq\nother\n\n"},
		{"disable server rabbitmq/rmq1\n", "\n"},
		{"get weight rabbitmq/rmq1\n", "10 (initial 10)\n\n"},
		{"set server rabbitmq/rmq1 weight 50%\n", "\n"},
		{"get weight rabbitmq/rmq1\n", "5 (initial 10)\n\n"},
		{"set weight rabbitmq/rmq1 7;get weight rabbitmq/rmq1\n", "\n7 (initial 10)\n\n"},
		{"set maxconn server rabbitmq/rmq1 12\n", "\n"},
		{"shutdown sessions server rabbitmq/rmq2\n", "\n"},
		{"set server rabbitmq/rmq1 addr 1.2.3.4\n", "'set server <srv> addr' is not supported by amqplb (only state and weight).\n\n"},
		{"show stat typed\n", "amqplb does not write the typed format: leave it out for the plain output.\n\n"},
		{"show info json\n", "amqplb does not write the json format: leave it out for the plain output.\n\n"},
		{"show cli level;user;show cli level;disable server rabbitmq/rmq2\n", "admin\n\n\nuser\n\nPermission denied\n\n"},
	} {
		if got := cli(t, path, tc.in); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
	if rmq1.Admin() != backend.AdminMaint || rmq1.State() != backend.StateMaint {
		t.Errorf("rmq1 after disable server: admin %v state %v, want maint", rmq1.Admin(), rmq1.State())
	}
	if rmq1.Weight() != 7 || rmq1.MaxConnections() != 12 || closed.Load() != 1 {
		t.Errorf("rmq1 weight %d maxconn %d, sessions shut %d times; want 7, 12, 1", rmq1.Weight(), rmq1.MaxConnections(), closed.Load())
	}
	cli(t, path, "set server rabbitmq/rmq1 state drain\n")
	if rmq1.State() != backend.StateDrain {
		t.Errorf("set server state drain: %v", rmq1.State())
	}
	cli(t, path, "enable server rabbitmq/rmq1\n")
	if rmq1.State() != backend.StateUp {
		t.Errorf("enable server: %v", rmq1.State())
	}

	// Interactive mode: a prompt after every answer, until quit.
	if got, want := cli(t, path, "prompt\nget weight rabbitmq/rmq2\nquit\n"), "\n> 10 (initial 10)\n\n> "; got != want {
		t.Errorf("prompt mode: got %q, want %q", got, want)
	}
	// An unknown command always gets HAProxy's help, never silence.
	got := cli(t, path, "frobnicate\n")
	if !strings.HasPrefix(got, "Unknown command, but maybe one of the following ones is a better match:\n") ||
		!strings.HasSuffix(got, "  quit                                    : disconnect\n\n") {
		t.Errorf("unknown command: %q", got)
	}
	if got := cli(t, path, "show serv\n"); !strings.Contains(got, "show servers state [<backend>]") || strings.Contains(got, "disable server") {
		t.Errorf("show serv: want the show commands that look alike:\n%s", got)
	}
}

func TestRuntimeSocketUserLevel(t *testing.T) {
	f := newFixture()
	path, _ := startSocket(t, LevelUser, f.options(""))
	for _, in := range []string{"disable server rabbitmq/rmq1", "set server rabbitmq/rmq1 state maint",
		"set server rabbitmq/rmq1 weight 0", "shutdown sessions server rabbitmq/rmq1", "show sess", "operator"} {
		if got := cli(t, path, in+"\n"); got != "Permission denied\n\n" {
			t.Errorf("%s at level user: got %q, want HAProxy's permission message", in, got)
		}
	}
	if s := f.server("rabbitmq", "rmq1"); s.Admin() != backend.AdminReady || s.Weight() != 10 {
		t.Errorf("a user-level socket changed rmq1: admin %v weight %d", s.Admin(), s.Weight())
	}
	if got := cli(t, path, "get weight rabbitmq/rmq1\n"); got != "10 (initial 10)\n\n" {
		t.Errorf("get weight at level user: %q", got)
	}
}

// csvRows reads "show stat" output as a CSV, the header's "# " dropped and each line's trailing
// comma giving an empty last field.
func csvRows(t *testing.T, out string) (header []string, rows [][]string) {
	t.Helper()
	out = strings.TrimPrefix(strings.TrimSuffix(out, "\n\n"), "# ")
	recs, err := csv.NewReader(strings.NewReader(out + "\n")).ReadAll()
	if err != nil {
		t.Fatalf("show stat is not CSV: %v\n%s", err, out)
	}
	for _, r := range recs {
		if r[len(r)-1] != "" {
			t.Fatalf("show stat line without its trailing comma: %q", r)
		}
	}
	header = recs[0][:len(recs[0])-1]
	for _, r := range recs[1:] {
		rows = append(rows, r[:len(r)-1])
	}
	return header, rows
}

func TestRuntimeShowStatCSV(t *testing.T) {
	f := newFixture()
	path, _ := startSocket(t, LevelUser, f.options(""))
	f.server("rabbitmq", "rmq2").SetAdmin(backend.AdminMaint)
	header, rows := csvRows(t, cli(t, path, "show stat\n"))
	if !slices.Equal(header, StatColumns) {
		t.Fatalf("columns:\n got %v\nwant %v", header, StatColumns)
	}
	col := func(r []string, name string) string { return r[slices.Index(header, name)] }
	var got []string
	for _, r := range rows {
		if len(r) != len(header) {
			t.Fatalf("row of %d fields for %d columns: %v", len(r), len(header), r)
		}
		got = append(got, col(r, "pxname")+"/"+col(r, "svname")+"="+col(r, "status")+":"+col(r, "weight"))
	}
	want := []string{"amqp/FRONTEND=OPEN:", "rabbitmq/rmq1=UP:10", "rabbitmq/rmq2=MAINT:10", "rabbitmq/rmq3=UP:5",
		"rabbitmq/BACKEND=UP:15", "other/o1=UP:1", "other/BACKEND=UP:1"}
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n got %v\nwant %v", got, want)
	}
	// -1 -1 -1 is everything; "rabbitmq 4 -1" its servers; 2 the backend row; up and no-maint filter.
	for in, want := range map[string][]string{
		"show stat -1 -1 -1":         got,
		"show stat rabbitmq 4 -1":    {"rabbitmq/rmq1=UP:10", "rabbitmq/rmq2=MAINT:10", "rabbitmq/rmq3=UP:5"},
		"show stat 3 2 -1":           {"rabbitmq/BACKEND=UP:15"},
		"show stat rabbitmq 4 3":     {"rabbitmq/rmq3=UP:5"},
		"show stat -1 4 -1 no-maint": {"rabbitmq/rmq1=UP:10", "rabbitmq/rmq3=UP:5", "other/o1=UP:1"},
	} {
		_, rows := csvRows(t, cli(t, path, in+"\n"))
		var names []string
		for _, r := range rows {
			names = append(names, col(r, "pxname")+"/"+col(r, "svname")+"="+col(r, "status")+":"+col(r, "weight"))
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s:\n got %v\nwant %v", in, names, want)
		}
	}
}

func TestRuntimeShowServersState(t *testing.T) {
	f := newFixture()
	path, _ := startSocket(t, LevelUser, f.options(""))
	f.server("rabbitmq", "rmq1").SetAdmin(backend.AdminMaint)
	out := cli(t, path, "show servers state rabbitmq\n")
	lines := strings.Split(strings.TrimSuffix(out, "\n\n"), "\n")
	if lines[0] != "1" || lines[1] != "# "+strings.Join(ServersStateColumns, " ") {
		t.Fatalf("version and header: %q", lines[:2])
	}
	r := csv.NewReader(strings.NewReader(strings.Join(lines[2:], "\n")))
	r.Comma = ' '
	recs, err := r.ReadAll()
	if err != nil || len(recs) != 3 {
		t.Fatalf("rows: %v %v", recs, err)
	}
	if got := strings.Join(recs[0][:9], " "); got != "3 rabbitmq 1 rmq1 127.0.0.1 2 1 10 10" {
		t.Errorf("rmq1: %q", got)
	}
	if got := cli(t, path, "show servers state nosuch\n"); got != "Can't find backend.\n\n" {
		t.Errorf("unknown backend: %q", got)
	}
}

func TestRuntimeShowSess(t *testing.T) {
	f := newFixture()
	o := f.options("")
	o.Sessions = func() []Session {
		return []Session{{ID: 7, Frontend: "amqp", Backend: "rabbitmq", Server: "rmq1", Protocol: "amqp-0-9-1",
			User: "guest", VHost: "/", ConnectionName: "orders api", Since: time.Now().Add(-75 * time.Second)}}
	}
	var shut uint64
	o.CloseSession = func(id uint64) bool { shut = id; return id == 7 }
	path, _ := startSocket(t, LevelAdmin, o)
	got := cli(t, path, "show sess\n")
	for _, want := range []string{"0x7: proto=tcpv4 ", "fe=amqp be=rabbitmq srv=rmq1 age=1m15s", `user="guest" vhost="/" name="orders api"`} {
		if !strings.Contains(got, want) {
			t.Errorf("show sess: %q lacks %q", got, want)
		}
	}
	if got := cli(t, path, "shutdown session 0x7\n"); got != "\n" || shut != 7 {
		t.Errorf("shutdown session 0x7: %q (closed %d)", got, shut)
	}
	if got := cli(t, path, "shutdown session 0x8\n"); got != "No such session (use 'show sess').\n\n" {
		t.Errorf("shutdown session 0x8: %q", got)
	}
}

func TestRuntimeSocketReplacedAndRemoved(t *testing.T) {
	f := newFixture()
	path, first := startSocket(t, LevelAdmin, f.options(""))
	// A second socket on the same path (a reload) takes it over; the first one's Close then
	// leaves the file alone.
	second := NewSocket(SocketOptions{Path: path, UID: -1, GID: -1, Options: f.options("")})
	if err := second.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.Serve() }()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if got := cli(t, path, "show cli level\n"); got != "operator\n\n" {
		t.Errorf("the new socket (default level operator) answers %q", got)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
	bad := NewSocket(SocketOptions{Path: filepath.Join(t.TempDir(), "no", "such", "dir.sock"), UID: -1, GID: -1})
	if err := bad.Listen(); err == nil {
		t.Error("Listen in a missing directory succeeded")
	}
}

func TestSplitArgsAndReadCommand(t *testing.T) {
	if got := splitArgs(`set  server a\ b/c\\d` + "\tstate"); !slices.Equal(got, []string{"set", "server", `a b/c\d`, "state"}) {
		t.Errorf("splitArgs: %q", got)
	}
	path, _ := startSocket(t, LevelAdmin, hapFixture().options(""))
	if got := cli(t, path, "get weight rabbitmq/rabbit2\\; ;show backend\n"); got != "No such server.\n\n# name\nrabbitmq\n\n" {
		t.Errorf("escaped semicolon: %q", got)
	}
}
