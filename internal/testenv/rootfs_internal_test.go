package testenv

import "testing"

func TestMirrorFromAptSources(t *testing.T) {
	deb822 := []string{
		"Types: deb",
		"# a snapshot, commented out",
		"URIs: http://security.example/debian-security",
		"Suites: bookworm-security",
		"Components: main",
		"",
		"Types: deb-src",
		"URIs: http://src.example/debian",
		"Suites: bookworm",
		"",
		"Types: deb",
		"URIs: http://off.example/debian",
		"Suites: bookworm",
		"Enabled: no",
		"",
		"Types: deb",
		"URIs: http://archive.example/debian http://second.example/debian",
		"Suites: bookworm bookworm-updates",
		"Components: main",
	}
	if got := mirrorFromDeb822(deb822); got != "http://archive.example/debian" {
		t.Errorf("deb822: %q", got)
	}
	if got := mirrorFromDeb822([]string{"Types: deb", "URIs: https://deb.nodesource.example/node_20.x", "Suites: nodistro"}); got != "" {
		t.Errorf("deb822 third party: %q", got)
	}
	oneLine := []string{
		"# deb http://commented.example/debian bookworm main",
		"deb http://security.example/debian-security bookworm-security main",
		"deb-src http://src.example/debian bookworm main",
		"deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://archive.example/debian bookworm main",
	}
	if got := mirrorFromOneLine(oneLine); got != "http://archive.example/debian" {
		t.Errorf("one-line: %q", got)
	}
}

func TestNormVersion(t *testing.T) {
	for in, want := range map[string]string{"": RabbitMQ310, "3.10": RabbitMQ310, "4.0": RabbitMQ40, "4": RabbitMQ40} {
		if got, err := normVersion(in); err != nil || got != want {
			t.Errorf("normVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := normVersion("3.13"); err == nil {
		t.Error("normVersion(3.13) succeeded")
	}
}
