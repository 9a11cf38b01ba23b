package healthcheck

import (
	"strconv"
	"strings"

	"github.com/amqplb/amqplb/internal/amqpwire"
)

// brokerVersion returns the "version" server property of a Connection.Start, or "" if there
// is none or it is not a string.
func brokerVersion(props amqpwire.Table) string {
	switch v := props["version"].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// supportsProxyLocal reports whether a RabbitMQ node of the given version ("3.12.4", as its
// Connection.Start says) accepts a PROXY protocol v2 header with the LOCAL command, which it
// does from 3.11.19 on the 3.11 line and from 3.12.1 on (every later minor and major version
// too); earlier nodes (Debian 12 ships 3.10.8) drop such a connection. A version that cannot
// be parsed (anything but MAJOR.MINOR.PATCH, optionally followed by -PRERELEASE or +BUILD)
// does not: LOCAL is an optimisation, and a header with addresses works everywhere. A
// pre-release of 3.11.19 or 3.12.1 precedes it, and does not either.
func supportsProxyLocal(version string) bool {
	v, ok := parseVersion(version)
	if !ok {
		return false
	}
	switch {
	case v.major != 3:
		return v.major > 3
	case v.minor >= 13:
		return true
	case v.minor == 12:
		return v.atLeast(3, 12, 1)
	case v.minor == 11:
		return v.atLeast(3, 11, 19)
	}
	return false
}

// semver is a parsed MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] version.
type semver struct {
	major, minor, patch int
	pre                 bool
}

// atLeast reports whether v is major.minor.patch or later; a pre-release of exactly that
// version is earlier.
func (v semver) atLeast(major, minor, patch int) bool {
	a, b := [3]int{v.major, v.minor, v.patch}, [3]int{major, minor, patch}
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return !v.pre
}

func parseVersion(s string) (semver, bool) {
	s, _, _ = strings.Cut(s, "+")
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 || (hasPre && pre == "") {
		return semver{}, false
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" || len(p) > 9 {
			return semver{}, false
		}
		n[i], _ = strconv.Atoi(p)
	}
	return semver{major: n[0], minor: n[1], patch: n[2], pre: hasPre}, true
}
