package e2e

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/internal/testenv"
)

// The second way users adopt amqplb: `docker compose up` in a checkout gives a 3-node RabbitMQ
// cluster behind amqplb. These tests check what can be checked without Docker: the compose file
// loads under the Compose specification (compose-go is the loader `docker compose` itself uses)
// and its pieces agree with each other, the Dockerfile's build script yields static binaries that
// run on its distroless base, the scratch stand-in image is the Dockerfile's runtime stage, and
// the image's configuration serves real clients against a real cluster. TestComposeUp
// (compose_test.go) runs the file for real with Docker.

const composeDir = "../deploy/compose"

// loadCompose loads ../compose.yaml as `docker compose config` does, with no environment set.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"../compose.yaml"}, cli.WithWorkingDirectory(".."),
		cli.WithName("amqplb"), cli.WithEnv([]string{}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	return p
}

// composeAMQPLBConfig loads the amqplb.toml that compose.yaml mounts, as `amqplb -c` does.
func composeAMQPLBConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, _, err := config.LoadLines(filepath.Join(composeDir, "amqplb.toml"))
	if err != nil {
		t.Fatalf("deploy/compose/amqplb.toml: %v", err)
	}
	return cfg
}

func TestComposeFileIsConsistent(t *testing.T) {
	p := loadCompose(t)
	lbSvc, ok := p.Services["amqplb"]
	if !ok {
		t.Fatalf("compose.yaml has no amqplb service; services: %v", p.ServiceNames())
	}
	root, _ := filepath.Abs("..")
	if lbSvc.Build == nil || lbSvc.Build.Context != root || lbSvc.Build.Dockerfile != "Dockerfile" {
		t.Errorf("amqplb builds from %+v, want the repository's Dockerfile", lbSvc.Build)
	}

	// The mounted configuration is the one this test serves below, at the image's default path,
	// in a mounted directory so that SIGHUP sees an edited file even when the editor replaced it.
	mounted := map[string]string{} // target -> host directory
	for _, v := range lbSvc.Volumes {
		if v.Type == types.VolumeTypeBind {
			mounted[v.Target] = v.Source
		}
	}
	want, _ := filepath.Abs(composeDir)
	if mounted["/etc/amqplb"] != want || len(lbSvc.Configs) > 0 {
		t.Errorf("amqplb mounts %v (configs %v), want the directory %s at /etc/amqplb", mounted, lbSvc.Configs, want)
	}
	cfg := composeAMQPLBConfig(t)

	// Published on the host's loopback only: the frontend and the admin listener.
	published := map[uint32]string{}
	for _, port := range lbSvc.Ports {
		published[port.Target] = port.HostIP + ":" + port.Published
	}
	for _, addr := range []string{cfg.Frontends[0].Bind, cfg.Admin.Listen} {
		port := addr[strings.LastIndex(addr, ":")+1:]
		target, _ := strconv.ParseUint(port, 10, 32)
		if got := published[uint32(target)]; got != "127.0.0.1:"+port {
			t.Errorf("port %s of amqplb is published as %q, want 127.0.0.1:%s", port, got, port)
		}
	}
	// docker stop must not cut sessions that amqplb is still draining.
	if lbSvc.StopGracePeriod == nil || time.Duration(*lbSvc.StopGracePeriod) <= cfg.Global.DrainTimeout {
		t.Errorf("stop_grace_period %v does not exceed drain_timeout %v", lbSvc.StopGracePeriod, cfg.Global.DrainTimeout)
	}

	// Every server amqplb balances over is a RabbitMQ service of the file, with the host name its
	// node name uses, and that node is listed for peer discovery.
	conf, err := os.ReadFile(filepath.Join(composeDir, "rabbitmq.conf"))
	if err != nil {
		t.Fatal(err)
	}
	peers := regexp.MustCompile(`(?m)^cluster_formation\.classic_config\.nodes\.\d+\s*=\s*rabbit@(\S+)$`).FindAllStringSubmatch(string(conf), -1)
	var peerHosts []string
	for _, m := range peers {
		peerHosts = append(peerHosts, m[1])
	}
	var cookie *string
	var servers []string
	for _, s := range cfg.Backends[0].Servers {
		host := s.Address[:strings.LastIndex(s.Address, ":")]
		servers = append(servers, host)
		svc, ok := p.Services[host]
		if !ok {
			t.Errorf("server %s: no compose service %q", s.Name, host)
			continue
		}
		if svc.Hostname != host {
			t.Errorf("service %s: hostname %q, want %q (the node name is rabbit@HOSTNAME)", host, svc.Hostname, host)
		}
		if !slices.Contains(peerHosts, host) {
			t.Errorf("rabbitmq.conf does not list rabbit@%s for peer discovery (it lists %v)", host, peerHosts)
		}
		c := svc.Environment["RABBITMQ_ERLANG_COOKIE"]
		switch {
		case c == nil || *c == "":
			t.Errorf("service %s has no Erlang cookie: its node cannot join the others", host)
		case cookie == nil:
			cookie = c
		case *c != *cookie:
			t.Errorf("service %s: Erlang cookie differs from the other nodes'", host)
		}
		// A bind mount, not configs: docker-compose 1.x (Debian 12's) ignores configs.
		var clusterConf string
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind && strings.HasPrefix(v.Target, "/etc/rabbitmq/conf.d/") && v.ReadOnly {
				clusterConf = v.Source
			}
		}
		if wantConf, _ := filepath.Abs(filepath.Join(composeDir, "rabbitmq.conf")); clusterConf != wantConf || len(svc.Configs) > 0 {
			t.Errorf("service %s mounts %q read-only into conf.d (configs %v), want %s", host, clusterConf, svc.Configs, wantConf)
		}
		if img := svc.Image; img != "rabbitmq:4.2-management" {
			t.Errorf("service %s: image %q without RABBITMQ_IMAGE, want rabbitmq:4.2-management", host, img)
		}
	}
	slices.Sort(peerHosts)
	slices.Sort(servers)
	if len(servers) != 3 || !slices.Equal(servers, peerHosts) {
		t.Errorf("amqplb balances over %v, the cluster is %v; want the same three nodes", servers, peerHosts)
	}
}

// dockerfile is what the tests read of a Dockerfile: its final base image (global ARGs replaced by
// their defaults), the script its build stage runs, and the settings of the image it makes.
type dockerfile struct {
	finalFrom, buildRun, entrypoint, cmd, user, expose string
	copies                                             []string
	args                                               map[string]string // global ARG defaults
}

func readDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := dockerfile{args: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "ARG":
			if d.finalFrom == "" { // before the first FROM: usable in FROM lines
				name, def, _ := strings.Cut(rest, "=")
				d.args[name] = def
			}
		case "FROM":
			d.finalFrom = os.Expand(strings.Fields(rest)[0], func(k string) string { return d.args[k] })
			d.copies, d.entrypoint, d.cmd, d.user, d.expose = nil, "", "", "", ""
		case "USER":
			d.user = rest
		case "EXPOSE":
			d.expose = rest
		case "RUN":
			if strings.Contains(rest, "build-static.sh") {
				d.buildRun = rest
			}
		case "COPY":
			d.copies = append(d.copies, rest)
		case "ENTRYPOINT":
			d.entrypoint = rest
		case "CMD":
			d.cmd = rest
		}
	}
	return d
}

func TestDockerfileBuildsStaticBinariesThatRun(t *testing.T) {
	d := readDockerfile(t, "../Dockerfile")
	// Both base images are build arguments (compose.yaml passes them), defaulting to the public ones.
	if d.args["BUILDER_IMAGE"] != "golang:1.26-bookworm" || d.args["RUNTIME_IMAGE"] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("Dockerfile ARG defaults %v, want BUILDER_IMAGE=golang:1.26-bookworm, RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot", d.args)
	}
	if !strings.HasPrefix(d.finalFrom, "gcr.io/distroless/static") {
		t.Fatalf("final image %q: this test assumes distroless/static, which has no C library", d.finalFrom)
	}
	if !strings.Contains(d.buildRun, "sh ./scripts/build-static.sh /out") {
		t.Fatalf("the build stage does not run scripts/build-static.sh /out: %q", d.buildRun)
	}
	if !slices.Contains(d.copies, "--from=build /out/amqplb /out/amqplb-bench /usr/local/bin/") ||
		d.entrypoint != `["/usr/local/bin/amqplb"]` || d.cmd != `["-f", "/etc/amqplb/amqplb.toml"]` {
		t.Fatalf("the image does not run /usr/local/bin/amqplb -f /etc/amqplb/amqplb.toml: COPY %q, ENTRYPOINT %s, CMD %s",
			d.copies, d.entrypoint, d.cmd)
	}
	// distroless's nonroot user, by number: Kubernetes' runAsNonRoot cannot check a name.
	if d.user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", d.user)
	}

	// The build stage, run here: both binaries must be static, or distroless cannot start them.
	out := t.TempDir()
	build := exec.Command("../scripts/build-static.sh", out)
	build.Env = append(os.Environ(), "VERSION=e2e-static")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build-static.sh: %v\n%s", err, b)
	}
	for _, name := range []string{"amqplb", "amqplb-bench"} {
		f, err := elf.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s has a program interpreter: it is dynamically linked and will not start on distroless/static", name)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", name, libs)
		}
		f.Close()
	}
	// The image's default command, checked the way `docker run amqplb -c -f ...` would.
	b, err := exec.Command(filepath.Join(out, "amqplb"), "-version").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "e2e-static") {
		t.Errorf("amqplb -version = %q, %v; want the VERSION the build was given", b, err)
	}
	b, err = exec.Command(filepath.Join(out, "amqplb"), "-c", "-f", filepath.Join(composeDir, "amqplb.toml")).CombinedOutput()
	if err != nil {
		t.Errorf("amqplb -c -f deploy/compose/amqplb.toml: %v\n%s", err, b)
	}
}

// The image's configuration, with the compose service names replaced by the test cluster's nodes
// and the listeners moved to free loopback ports, serves real clients.
func TestComposeConfigServesRealClients(t *testing.T) {
	c := testenv.RequireCluster(t)
	src, err := os.ReadFile(filepath.Join(composeDir, "amqplb.toml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	addr := testenv.FreeAddr(t)
	replace := map[string]string{`"0.0.0.0:5672"`: `"` + addr + `"`}
	for i, n := range c.Nodes {
		replace[`"rabbitmq`+string(rune('1'+i))+`:5672"`] = `"` + n.AMQPAddr() + `"`
	}
	for from, to := range replace {
		if !strings.Contains(text, from) {
			t.Fatalf("deploy/compose/amqplb.toml has no %s", from)
		}
		text = strings.ReplaceAll(text, from, to)
	}
	// The admin listener moves with -admin; the file's own (0.0.0.0:8404) is not bound.
	l := startLBFile(t, "amqplb.toml", text, addr)
	waitUp(t, l, 3)
	for range 3 {
		roundTrip(t, l.dial(t))
	}
	// `docker compose logs` gets one JSON object per line (log_format = "json").
	for _, line := range strings.Split(strings.TrimSpace(l.log.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log_format = json, but this log line is not JSON: %s", line)
		}
	}
}

// The image TestComposeUp runs (deploy/docker/amqplb-scratch, built where nothing can be pulled)
// is the Dockerfile's runtime stage: the same binaries, configuration, user, ports and command.
func TestScratchImageMatchesDockerfile(t *testing.T) {
	real := readDockerfile(t, "../Dockerfile")
	standIn := readDockerfile(t, "../deploy/docker/amqplb-scratch/Dockerfile")
	if standIn.finalFrom != "scratch" {
		t.Errorf("the stand-in is FROM %q, want scratch (nothing to pull)", standIn.finalFrom)
	}
	for _, f := range []struct{ name, real, standIn string }{
		{"ENTRYPOINT", real.entrypoint, standIn.entrypoint},
		{"CMD", real.cmd, standIn.cmd},
		{"USER", real.user, standIn.user},
		{"EXPOSE", real.expose, standIn.expose},
	} {
		if f.real != f.standIn {
			t.Errorf("%s: Dockerfile %q, stand-in %q", f.name, f.real, f.standIn)
		}
	}
	dest := func(copies []string) []string {
		var out []string
		for _, c := range copies {
			fields := strings.Fields(c)
			to := fields[len(fields)-1]
			for _, src := range fields[:len(fields)-1] {
				switch {
				case strings.HasPrefix(src, "--"):
				case strings.HasSuffix(to, "/"):
					out = append(out, to+filepath.Base(src))
				default:
					out = append(out, to)
				}
			}
		}
		return out
	}
	realFiles, standInFiles := dest(real.copies), dest(standIn.copies)
	for _, f := range realFiles {
		if !slices.Contains(standInFiles, f) {
			t.Errorf("the Dockerfile installs %s, the stand-in does not (it installs %v)", f, standInFiles)
		}
	}
}
