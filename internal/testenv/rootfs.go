package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RabbitMQ versions a cluster can run (ClusterOptions.RabbitMQ).
const (
	// RabbitMQ310 is the host's own rabbitmq-server: Debian 12's 3.10 on Erlang 25. The default.
	RabbitMQ310 = "3.10"
	// RabbitMQ40 is Debian 13's rabbitmq-server (4.0.5 on Erlang 27), run from a cached trixie
	// root (see EnsureRoot) with chroot, on the same loopback ports and keepers as 3.10.
	RabbitMQ40 = "4.0"
)

// EnvRootCache names the directory the roots are built and cached in (default
// /var/cache/amqplb/rootfs); each root is a directory in it, with a lock file next to it.
const EnvRootCache = "AMQPLB_TEST_ROOTFS"

// rootReadyFile is written last into a root once it is complete: a root without it is a
// half-built one, removed and built again.
const rootReadyFile = ".amqplb-root-ready"

// rootSpec says how to build the root of a RabbitMQ version.
type rootSpec struct {
	suite string // the Debian suite debootstrap installs
	name  string // the root's directory name in the cache
	// serverVersion is the prefix of the rabbitmq-server package version the root must hold.
	serverVersion string
}

var rootSpecs = map[string]rootSpec{
	RabbitMQ40: {suite: "trixie", name: "trixie-rabbitmq", serverVersion: "4.0."},
}

// normVersion maps "" to the default version and rejects versions testenv cannot run.
func normVersion(v string) (string, error) {
	switch v {
	case "", RabbitMQ310, "3":
		return RabbitMQ310, nil
	case RabbitMQ40, "4":
		return RabbitMQ40, nil
	}
	return "", fmt.Errorf("RabbitMQ version %q: testenv runs %s (the host's package) or %s (a trixie root)", v, RabbitMQ310, RabbitMQ40)
}

// DefaultRoot returns where the root for RabbitMQ version is cached: $AMQPLB_TEST_ROOTFS/NAME,
// by default /var/cache/amqplb/rootfs/trixie-rabbitmq for 4.0. It is "" for 3.10, which runs
// from the host.
func DefaultRoot(version string) (string, error) {
	v, err := normVersion(version)
	if err != nil {
		return "", err
	}
	spec, ok := rootSpecs[v]
	if !ok {
		return "", nil
	}
	cache := os.Getenv(EnvRootCache)
	if cache == "" {
		cache = "/var/cache/amqplb/rootfs"
	}
	return filepath.Join(cache, spec.name), nil
}

// RootReady reports whether root is a complete root (its ready marker was written).
func RootReady(root string) bool {
	_, err := os.Stat(filepath.Join(root, rootReadyFile))
	return err == nil
}

// aptMirror returns the URI of the Debian archive in this machine's apt sources: the first deb
// entry whose suites include a release suite (no "-security", "-updates", ...), from deb822
// /etc/apt/sources.list.d/*.sources files, then one-line /etc/apt/sources.list{,.d/*.list}. The
// mirror is never hard-coded: the machine's own sources say what is reachable.
func aptMirror() (string, error) {
	deb822, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range deb822 {
		if uri := mirrorFromDeb822(readLines(f)); uri != "" {
			return uri, nil
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, lists...) {
		if uri := mirrorFromOneLine(readLines(f)); uri != "" {
			return uri, nil
		}
	}
	return "", errors.New("no Debian archive in /etc/apt/sources.list or /etc/apt/sources.list.d/")
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// debianSuite reports whether the suites include a release suite of Debian's archive (bookworm,
// trixie, stable; not bookworm-security nor a third party's "nodistro").
func debianSuite(suites []string) bool {
	for _, s := range suites {
		switch {
		case strings.Contains(s, "-"), strings.Contains(s, "/"), s == "nodistro":
		default:
			return true
		}
	}
	return false
}

func mirrorFromDeb822(lines []string) string {
	var uris, suites []string
	types, enabled := "", true
	flush := func() string {
		defer func() { uris, suites, types, enabled = nil, nil, "", true }()
		if enabled && strings.Contains(" "+types+" ", " deb ") && len(uris) > 0 && debianSuite(suites) {
			return uris[0]
		}
		return ""
	}
	for _, l := range append(lines, "") {
		if strings.TrimSpace(l) == "" {
			if uri := flush(); uri != "" {
				return uri
			}
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		key, val, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "types":
			types = strings.TrimSpace(val)
		case "uris":
			uris = strings.Fields(val)
		case "suites":
			suites = strings.Fields(val)
		case "enabled":
			enabled = strings.TrimSpace(strings.ToLower(val)) != "no"
		}
	}
	return ""
}

func mirrorFromOneLine(lines []string) string {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		i := 1
		if strings.HasPrefix(f[i], "[") { // options: [arch=amd64 signed-by=...]
			for i < len(f) && !strings.HasSuffix(f[i], "]") {
				i++
			}
			i++
		}
		if i+1 < len(f) && debianSuite(f[i+1:i+2]) {
			return f[i]
		}
	}
	return ""
}

// rootIDs returns the uid and gid of the rabbitmq user in root's /etc/passwd: inside the root
// the package created its own user, whose ids need not match the host's.
func rootIDs(root string) (uid, gid int, err error) {
	for _, l := range readLines(filepath.Join(root, "etc", "passwd")) {
		f := strings.Split(l, ":")
		if len(f) >= 4 && f[0] == nodeUser {
			if _, err := fmt.Sscan(f[2], &uid); err != nil {
				break
			}
			if _, err := fmt.Sscan(f[3], &gid); err != nil {
				break
			}
			return uid, gid, nil
		}
	}
	return 0, 0, fmt.Errorf("root %s: no user %s in its /etc/passwd", root, nodeUser)
}
