package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amqplb/amqplb/internal/testenv"
	"github.com/amqplb/amqplb/internal/testenv/chrome"
)

// managementConfig is amqplb in front of the management UI of the cluster's nodes: a mode tcp
// frontend, and a backend whose servers are checked with RabbitMQ's aliveness test over HTTP
// as guest. Besides the nodes it has a server where nothing listens and one that is a node's
// AMQP port, which answers no HTTP: both must go down.
func managementConfig(c *testenv.Cluster, bind, adminAddr, dead string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[global]
log_level = "debug"
drain_timeout = "5s"

[admin]
listen = %q

[[frontend]]
name = "management"
bind = %q
backend = "management"
mode = "tcp"

[[backend]]
name = "management"
connect_timeout = "2s"

[backend.health_check]
type = "http"
interval = "1s"
down_interval = "1s"
timeout = "5s"
rise = 1
fall = 1

[backend.health_check.http]
path = "/api/aliveness-test/%%2F"
headers = { Authorization = "Basic Z3Vlc3Q6Z3Vlc3Q=" }
match = "status"
pattern = "200"
`, adminAddr, bind)
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\n[[backend.server]]\nname = %q\naddress = \"127.0.0.1:%d\"\n", n.Name, n.ManagementPort)
	}
	fmt.Fprintf(&b, "\n[[backend.server]]\nname = \"dead\"\naddress = %q\n", dead)
	fmt.Fprintf(&b, "\n[[backend.server]]\nname = \"amqp-port\"\naddress = %q\n", c.Nodes[0].AMQPAddr())
	return b.String()
}

// TestManagementUIThroughAMQPLB checks the http health check against the real management API
// and that the management UI works through amqplb: its API answers through the frontend,
// spread over the nodes, and a browser logs in and shows the overview.
func TestManagementUIThroughAMQPLB(t *testing.T) {
	c := testenv.RequireCluster(t)
	bind, adminAddr, dead := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	path := filepath.Join(t.TempDir(), "amqplb.toml")
	if err := os.WriteFile(path, []byte(managementConfig(c, bind, adminAddr, dead)), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &lb{addr: bind, adminAddr: adminAddr, path: path, log: &testenv.Buffer{}, done: make(chan error, 1)}
	l.start(t)

	// The nodes pass the aliveness test; the dead address and the AMQP port fail, each with
	// its reason.
	testenv.Eventually(t, 30*time.Second, func() error {
		servers := l.backendServers(t)["management"]
		for _, n := range c.Nodes {
			s := servers[n.Name]
			if s.State != "up" || s.Check.Reason != "HTTP GET /api/aliveness-test/%2F: 200" {
				return fmt.Errorf("node %s: %s, check %q", n.Name, s.State, s.Check.Reason)
			}
		}
		if s := servers["dead"]; s.State != "down" || s.Check.Reason != "connection refused" {
			return fmt.Errorf("dead server: %s, check %q", s.State, s.Check.Reason)
		}
		if s := servers["amqp-port"]; s.State != "down" || !strings.HasPrefix(s.Check.Reason, "not an HTTP response: server sent \"AMQP") {
			return fmt.Errorf("AMQP port: %s, check %q", s.State, s.Check.Reason)
		}
		return nil
	})

	// The API through amqplb: a connection each, so round robin takes every node in turn.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	nodes := map[string]bool{}
	for range 2 * len(c.Nodes) {
		var overview struct {
			Node            string `json:"node"`
			RabbitMQVersion string `json:"rabbitmq_version"`
			ClusterName     string `json:"cluster_name"`
		}
		getJSONAuth(t, client, "http://"+bind+"/api/overview", &overview)
		if overview.RabbitMQVersion == "" || overview.ClusterName == "" || overview.Node == "" {
			t.Fatalf("/api/overview through amqplb: %+v", overview)
		}
		nodes[overview.Node] = true
	}
	if len(nodes) != len(c.Nodes) {
		t.Errorf("/api/overview through amqplb was answered by %v, want all %d nodes", nodes, len(c.Nodes))
	}
	var listed []struct {
		Name    string `json:"name"`
		Running bool   `json:"running"`
	}
	getJSONAuth(t, client, "http://"+bind+"/api/nodes", &listed)
	if len(listed) != len(c.Nodes) {
		t.Errorf("/api/nodes through amqplb lists %d nodes, want %d", len(listed), len(c.Nodes))
	}

	// The UI in a browser: the login page, then the overview as guest.
	ctx := chrome.Tab(t, chrome.Options{Timeout: 2 * time.Minute})
	if err := chromedp.Do(ctx,
		chromedp.Navigate("http://"+bind+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
	); err != nil {
		t.Fatalf("login page through amqplb: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	chrome.Artifact(t, "management-ui-login.png", shot)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), "guest"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "guest"),
		chromedp.Click(chromedp.CSS(`input[type="submit"]`)),
	); err != nil {
		t.Fatalf("logging in: %v", err)
	}
	// The overview lists the cluster's nodes once the UI has read them through amqplb.
	want := c.Nodes[len(c.Nodes)-1].NodeName
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		fmt.Sprintf(`document.querySelector('h1') !== null && document.querySelector('h1').textContent.includes('Overview') && document.body.innerText.includes(%q)`, want),
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("overview with node %s after logging in: %v\npage:\n%s", want, err, text)
	}
	shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	chrome.Artifact(t, "management-ui-overview.png", shot)
}

// getJSONAuth GETs url as guest and decodes its 200 reply into out.
func getJSONAuth(t *testing.T, client *http.Client, url string, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
}

// TestManagementHAProxyCfg runs the corpus files with a management UI section in mode http
// beside AMQP: amqplb imports each as a tcp passthrough whose servers pass the aliveness test
// over HTTP (HAProxy 2.2+'s http-check send hdr Authorization and expect status; the legacy
// option httpchk with the header after the version and expect string), serves the API
// through it, and still serves AMQP beside it.
func TestManagementHAProxyCfg(t *testing.T) {
	c := testenv.RequireCluster(t)
	for _, tt := range []struct {
		file    string
		section string // the management proxy that binds
		backend string
		servers int // per section, AMQP and management alike
	}{
		{"26-management-ui.cfg", "listen rabbitmq_management", "rabbitmq_management", 3},
		{"27-management-legacy.cfg", "frontend management", "management_nodes", 2},
	} {
		t.Run(tt.file, func(t *testing.T) {
			var servers []string
			for _, n := range c.Nodes[:tt.servers] {
				servers = append(servers, n.AMQPAddr())
			}
			for _, n := range c.Nodes[:tt.servers] {
				servers = append(servers, fmt.Sprintf("127.0.0.1:%d", n.ManagementPort))
			}
			text, amqpBind := corpusFile(t, tt.file, servers)
			// The management proxy's bind, as corpusFile rewrote it.
			var mgmtBind string
			in := false
			for _, line := range strings.Split(text, "\n") {
				f := strings.Fields(line)
				switch {
				case len(f) > 1 && isSectionKeyword(f[0]):
					in = f[0]+" "+f[1] == tt.section
				case in && len(f) > 1 && f[0] == "bind":
					mgmtBind = f[1]
				}
			}
			if mgmtBind == "" {
				t.Fatalf("%s has no bind in %s:\n%s", tt.file, tt.section, text)
			}
			l := startLBFile(t, tt.file, text, amqpBind.addr)
			testenv.Eventually(t, 30*time.Second, func() error {
				b := l.backendServers(t)[tt.backend]
				if len(b) != tt.servers {
					return fmt.Errorf("backend %s has %d servers, want %d", tt.backend, len(b), tt.servers)
				}
				for name, s := range b {
					if s.State != "up" || s.Check.Reason != "HTTP GET /api/aliveness-test/%2F: 200" {
						return fmt.Errorf("server %s: %s, check %q", name, s.State, s.Check.Reason)
					}
				}
				return nil
			})
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
			var overview struct {
				RabbitMQVersion string `json:"rabbitmq_version"`
			}
			getJSONAuth(t, client, "http://"+mgmtBind+"/api/overview", &overview)
			if overview.RabbitMQVersion == "" {
				t.Errorf("/api/overview through the imported section has no rabbitmq_version")
			}
			roundTrip(t, amqpBind.dial(t, nil))
		})
	}
}
