package haproxycfg

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/amqplb/amqplb/config"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/haproxy")

// corpusDir holds haproxy.cfg files in the styles RabbitMQ users have. Each
// X.cfg has X.golden, what amqplb -c says about it (its warnings, one per
// line), and converted/X.toml, what amqplb convert prints.
const corpusDir = "testdata/haproxy"

func corpus(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 12 {
		t.Fatalf("the corpus has %d files, want at least 12", len(files))
	}
	return files
}

// checkGolden compares got with the golden file path, or rewrites it with
// -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./config/haproxycfg -run %s -update to write it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./config/haproxycfg -run '%s' -update rewrites it):\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

// TestHAProxyCorpus checks that every corpus file runs (amqplb -c exits 0)
// with the expected warnings, that each warning names its line, and that
// the converted TOML loads to the same Config.
func TestHAProxyCorpus(t *testing.T) {
	for _, path := range corpus(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Named as amqplb -c -f NAME names it when run in corpusDir.
			c, _, err := parseHAProxy(name, data)
			if err != nil {
				t.Fatalf("the file does not run:\n%v", err)
			}
			var out bytes.Buffer
			for _, w := range c.Warnings {
				if !regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `:[1-9][0-9]*: `).MatchString(w) {
					t.Errorf("warning without a line: %s", w)
				}
				fmt.Fprintln(&out, w)
			}
			checkGolden(t, strings.TrimSuffix(path, ".cfg")+".golden", out.Bytes())

			toml, c2, err := Convert(name, data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, c2) {
				t.Errorf("Convert's Config differs from Load's")
			}
			checkGolden(t, filepath.Join(corpusDir, "converted", strings.TrimSuffix(name, ".cfg")+".toml"), toml)
			back, err := config.Parse(name+".toml", toml)
			if err != nil {
				t.Fatalf("the converted TOML does not load:\n%v\n%s", err, toml)
			}
			back.File, back.Warnings = c.File, c.Warnings
			if !reflect.DeepEqual(back, c) {
				t.Errorf("the converted TOML loads to another Config:\n got %+v\nwant %+v", back, c)
			}
		})
	}
}

// TestHAProxy26 runs haproxy -c on every corpus file and compares which
// ones HAProxy 2.6 rejects, and its first error, with haproxy26.txt.
func TestHAProxy26(t *testing.T) {
	// CI (AMQPLB_REQUIRE_BROKERS=1) installs Debian 12's haproxy 2.6: there, not finding it fails.
	required := os.Getenv("AMQPLB_REQUIRE_BROKERS") == "1"
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if required {
			t.Fatal("haproxy is not installed (scripts/install-test-deps.sh installs it)")
		}
		t.Skip("haproxy is not installed: cannot record which corpus files HAProxy 2.6 rejects")
	}
	v, err := exec.Command(bin, "-v").Output()
	if err != nil {
		t.Fatalf("haproxy -v: %v", err)
	}
	if !bytes.Contains(v, []byte("version 2.6.")) {
		if required {
			t.Fatalf("haproxy is not 2.6 (%s): haproxy26.txt records Debian 12's 2.6", bytes.SplitN(v, []byte("\n"), 2)[0])
		}
		t.Skipf("haproxy is not 2.6 (%s): haproxy26.txt records 2.6", bytes.SplitN(v, []byte("\n"), 2)[0])
	}
	pid := regexp.MustCompile(`^\[ALERT\]\s+\(\d+\) : `)
	var out bytes.Buffer
	out.WriteString("# haproxy -c -f FILE (HAProxy 2.6), run in testdata/haproxy: valid, or rejected and the first alert.\n")
	for _, path := range corpus(t) {
		name := filepath.Base(path)
		cmd := exec.Command(bin, "-c", "-f", name)
		cmd.Dir = corpusDir
		got, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			fmt.Fprintf(&out, "%s: valid\n", name)
		case errors.As(err, &exit):
			first := "(no alert)"
			for _, l := range strings.Split(string(got), "\n") {
				if pid.MatchString(l) {
					first = pid.ReplaceAllString(l, "")
					break
				}
			}
			fmt.Fprintf(&out, "%s: rejected: %s\n", name, first)
		default:
			t.Fatalf("haproxy -c -f %s: %v", name, err)
		}
	}
	checkGolden(t, filepath.Join(corpusDir, "haproxy26.txt"), out.Bytes())
}
