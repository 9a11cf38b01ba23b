package admin

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/haproxy26-cli.txt from the installed HAProxy 2.6")

// hapGolden is HAProxy 2.6's own answers to the commands of hapCommands, recorded by
// TestHAProxy26RuntimeRecord from Debian 12's haproxy.
const hapGolden = "testdata/haproxy26-cli.txt"

// hapCommand is one exchange of the recording and how amqplb's answer is compared with
// HAProxy's: "exact" byte for byte; "edges" the first line and the last four (the help
// lists differ: amqplb answers fewer commands); "csv" the show stat header (its columns);
// "state" the first two lines of show servers state (version and columns).
type hapCommand struct {
	level, compare, input string
}

var hapCommands = []hapCommand{
	{"admin", "exact", "show backend\n"},
	{"admin", "exact", "get weight rabbitmq/rabbit2\n"},
	{"admin", "exact", "get weight rabbitmq\n"},
	{"admin", "exact", "get weight rabbitmq/nosuch\n"},
	{"admin", "exact", "disable server nosuch/rabbit1\n"},
	{"admin", "exact", "disable server rabbit1\n"},
	{"admin", "exact", "disable server rabbitmq/rabbit1;get weight rabbitmq/rabbit1;enable server rabbitmq/rabbit1\n"},
	{"admin", "exact", "set server rabbitmq/rabbit1 state drain;set server rabbitmq/rabbit1 state ready\n"},
	{"admin", "exact", "set server rabbitmq/rabbit1 state foo\n"},
	{"admin", "exact", "set server rabbitmq/rabbit1 foo\n"},
	{"admin", "exact", "set server rabbitmq/rabbit1 weight 300\n"},
	{"admin", "exact", "set server rabbitmq/rabbit1 weight abc\n"},
	{"admin", "exact", "set server rabbitmq/rabbit1 weight 10x\n"},
	{"admin", "exact", "set server rabbitmq/rabbit2 weight 50%;get weight rabbitmq/rabbit2;set weight rabbitmq/rabbit2 50\n"},
	{"admin", "exact", "set maxconn server rabbitmq/rabbit1\n"},
	{"admin", "exact", "set maxconn server rabbitmq/rabbit1 abc\n"},
	{"admin", "exact", "set maxconn server rabbitmq/rabbit1 10x\n"},
	{"admin", "exact", "shutdown sessions server rabbitmq/rabbit1\n"},
	{"admin", "exact", "shutdown session 0\n"},
	{"admin", "exact", "show servers state nosuch\n"},
	{"admin", "exact", "show stat nosuch -1 -1\n"},
	{"admin", "exact", "show cli level\n"},
	{"admin", "exact", "prompt\nget weight rabbitmq/rabbit2\nquit\n"},
	{"admin", "exact", "get weight rabbitmq/rabbit2\\; ;show backend\n"},
	{"admin", "edges", "help\n"},
	{"admin", "edges", "frobnicate\n"},
	{"admin", "edges", "\n"},
	{"admin", "csv", "show stat\n"},
	{"admin", "csv", "show stat -1 -1 -1\n"},
	{"admin", "state", "show servers state\n"},
	{"admin", "state", "show servers state rabbitmq\n"},
	{"user", "exact", "disable server rabbitmq/rabbit1\n"},
	{"user", "exact", "set server rabbitmq/rabbit1 state maint\n"},
	{"user", "exact", "set server rabbitmq/rabbit1 weight 0\n"},
	{"user", "exact", "shutdown sessions server rabbitmq/rabbit1\n"},
	{"user", "exact", "show sess\n"},
	{"user", "exact", "show cli level\n"},
	{"user", "exact", "get weight rabbitmq/rabbit1\n"},
}

// hapEnd ends each answer in the recording (an answer in prompt mode ends without a newline).
const hapEnd = "<<END\n"

func hapHeader(c hapCommand) string {
	return fmt.Sprintf("=== %s %s %s\n", c.level, c.compare, strconv.Quote(c.input))
}

// TestHAProxy26RuntimeRecord runs Debian 12's HAProxy 2.6 with two stats sockets (levels admin
// and user) on a listen section like hapFixture's, asks it hapCommands, and compares its
// answers with testdata/haproxy26-cli.txt (-update rewrites it), which
// TestRuntimeMatchesHAProxy26 holds amqplb to.
func TestHAProxy26RuntimeRecord(t *testing.T) {
	required := os.Getenv("AMQPLB_REQUIRE_BROKERS") == "1"
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if required {
			t.Fatal("haproxy is not installed (scripts/install-test-deps.sh installs it)")
		}
		t.Skip("haproxy is not installed: cannot record HAProxy 2.6's runtime API")
	}
	if v, err := exec.Command(bin, "-v").Output(); err != nil || !bytes.Contains(v, []byte("version 2.6.")) {
		if required {
			t.Fatalf("haproxy is not 2.6 (%s, %v): %s records Debian 12's 2.6", bytes.SplitN(v, []byte("\n"), 2)[0], err, hapGolden)
		}
		t.Skipf("haproxy is not 2.6: %s records 2.6", hapGolden)
	}
	dir := t.TempDir()
	sock := func(level string) string { return filepath.Join(dir, level+".sock") }
	// The frontend listens on a UNIX socket too (no port to pick); no server is checked or
	// ever dialed, so every answer is the same from run to run.
	cfg := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
    stats socket %s mode 600 level user
defaults
    mode tcp
    timeout connect 1s
    timeout client 10s
    timeout server 10s
listen rabbitmq
    bind unix@%s
    server rabbit1 127.0.0.1:23992
    server rabbit2 127.0.0.1:23993 weight 50
`, sock("admin"), sock("user"), filepath.Join(dir, "fe.sock"))
	if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
	var stderr testenv.Buffer // written by exec's copier while the test reads it
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, l := range []string{"admin", "user"} {
			c, err := net.Dial("unix", sock(l))
			if err != nil {
				return fmt.Errorf("haproxy's %s socket: %v (stderr: %s)", l, err, stderr.String())
			}
			c.Close()
		}
		return nil
	})
	var out bytes.Buffer
	out.WriteString("# HAProxy 2.6's answers on its stats sockets (levels admin and user), recorded by TestHAProxy26RuntimeRecord.\n")
	for _, c := range hapCommands {
		out.WriteString(hapHeader(c))
		out.WriteString(timeless(c, cli(t, sock(c.level), c.input)))
		out.WriteString(hapEnd)
	}
	if *update {
		if err := os.WriteFile(hapGolden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(hapGolden)
	if err != nil {
		t.Fatalf("%v (go test ./admin -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("HAProxy 2.6 answers differently from %s (go test ./admin -run '%s' -update rewrites it):\n%s", hapGolden, t.Name(), out.String())
	}
}

// timeless writes the fields that count seconds (show stat's lastchg and downtime, show
// servers state's srv_time_since_last_change) as 0, so that the recording is the same from run
// to run.
func timeless(c hapCommand, answer string) string {
	lines := strings.Split(answer, "\n")
	switch c.compare {
	case "csv":
		cols := strings.Split(strings.TrimPrefix(lines[0], "# "), ",")
		for i := 1; i < len(lines); i++ {
			f := strings.Split(lines[i], ",")
			for _, name := range []string{"lastchg", "downtime"} {
				if j := slices.Index(cols, name); j >= 0 && j < len(f) && f[j] != "" {
					f[j] = "0"
				}
			}
			lines[i] = strings.Join(f, ",")
		}
	case "state":
		for i := 2; i < len(lines); i++ {
			if f := strings.Split(lines[i], " "); len(f) > 9 {
				f[9] = "0"
				lines[i] = strings.Join(f, " ")
			}
		}
	}
	return strings.Join(lines, "\n")
}

// TestRuntimeMatchesHAProxy26 asks amqplb's runtime socket what the recording asked HAProxy 2.6
// (testdata/haproxy26-cli.txt), on the same backend, and compares the answers.
func TestRuntimeMatchesHAProxy26(t *testing.T) {
	data, err := os.ReadFile(hapGolden)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]string{}
	rest := string(data[bytes.IndexByte(data, '\n')+1:])
	for rest != "" {
		head, body, ok := strings.Cut(rest, "\n")
		answer, after, ok2 := strings.Cut(body, hapEnd)
		if !ok || !ok2 {
			t.Fatalf("%s: malformed near %q", hapGolden, head)
		}
		recorded[head+"\n"] = answer
		rest = after
	}
	f := hapFixture()
	admin, _ := startSocket(t, LevelAdmin, f.options(""))
	user, _ := startSocket(t, LevelUser, f.options(""))
	paths := map[string]string{"admin": admin, "user": user}
	for _, c := range hapCommands {
		want, ok := recorded[hapHeader(c)]
		if !ok {
			t.Errorf("%s has no answer to %q at level %s (run TestHAProxy26RuntimeRecord with -update)", hapGolden, c.input, c.level)
			continue
		}
		got := cli(t, paths[c.level], c.input)
		switch c.compare {
		case "exact":
			if got != want {
				t.Errorf("level %s, %q:\n got %q\nwant %q (HAProxy 2.6)", c.level, c.input, got, want)
			}
		case "edges":
			g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
			if g[0] != w[0] || !slices.Equal(g[len(g)-5:], w[len(w)-5:]) {
				t.Errorf("level %s, %q: first and last lines differ:\n got %q\nwant %q (HAProxy 2.6)", c.level, c.input, got, want)
			}
		case "csv":
			gh, grows := csvRows(t, got)
			wh, wrows := csvRows(t, want)
			if !slices.Equal(gh, wh) || !slices.Equal(gh, StatColumns) {
				t.Errorf("%q: columns differ:\n got %v\nwant %v (HAProxy 2.6)", c.input, gh, wh)
			}
			if len(grows) != len(wrows) {
				t.Errorf("%q: %d rows, HAProxy 2.6 has %d", c.input, len(grows), len(wrows))
			}
			for i := range min(len(grows), len(wrows)) {
				for _, col := range []string{"pxname", "svname", "weight", "act", "bck", "iid", "sid", "type", "addr", "mode", "uweight"} {
					j := slices.Index(wh, col)
					if grows[i][j] != wrows[i][j] {
						t.Errorf("%q row %d, %s: got %q, HAProxy 2.6 %q", c.input, i, col, grows[i][j], wrows[i][j])
					}
				}
			}
		case "state":
			g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
			if !slices.Equal(g[:2], w[:2]) || len(g) != len(w) {
				t.Errorf("%q: got %q, HAProxy 2.6 %q", c.input, got, want)
			}
			for i := 2; i < len(g) && i < len(w); i++ {
				gf, wf := strings.Fields(g[i]), strings.Fields(w[i])
				// be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight
				if len(gf) != len(wf) || len(gf) > 8 && !slices.Equal(gf[1:9], wf[1:9]) {
					t.Errorf("%q line %d: got %q, HAProxy 2.6 %q", c.input, i, g[i], w[i])
				}
			}
		}
	}
}
