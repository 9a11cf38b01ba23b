package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/amqplb/amqplb/backend"
)

// DefaultManagementPort is RabbitMQ's management API port, used when ManagementOptions.Port is 0.
const DefaultManagementPort = 15672

// alarmsPath is RabbitMQ's health check of the node's own resource alarms: 200 when there is
// none, 503 with the alarms in effect otherwise.
const alarmsPath = "/api/health/checks/local-alarms"

// ManagementOptions configure the optional check of a node's RabbitMQ management API, which
// runs alongside the main check of every server, on the host of the server's address, in plain
// HTTP (the server's TLS, PROXY header and check port are for the main check only).
//
// RabbitMQ's resource alarms (memory, disk) block publishers on every node of a cluster, so a
// node in alarm still serves and ejecting it helps nobody: by default an alarm is only shown in
// the check's reason. A management API that does not answer never fails the check either.
type ManagementOptions struct {
	// Port is the management API's HTTP port; 0 means DefaultManagementPort.
	Port int
	// ServerPorts holds the servers whose management API listens on a port of their own
	// (nodes sharing a host, NodePorts); the others use Port.
	ServerPorts map[*backend.Server]int
	// Alarms reads /api/health/checks/local-alarms. Without it the management API is asked
	// only for maintenance mode: a server's own /api/overview (its node name) once a minute
	// while its checks pass, and the other servers' /api/nodes after one of its checks failed
	// (see KindMaintenance).
	Alarms bool
	// EjectOnAlarm fails the check (Kind FailAlarm) while the node has an alarm, so
	// the server goes down after Policy.Fall checks.
	EjectOnAlarm bool
	// Username and Password authenticate (HTTP basic); both empty mean guest/guest.
	Username, Password string
}

// port returns the management API port of the target: its own, else Port, else the default.
func (o *ManagementOptions) port(t Target) int {
	switch {
	case t.ManagementPort > 0:
		return t.ManagementPort
	case o.Port > 0:
		return o.Port
	}
	return DefaultManagementPort
}

// serverPort returns s's own management API port, 0 if it has none (Port applies).
func (o *ManagementOptions) serverPort(s *backend.Server) int { return o.ServerPorts[s] }

func (o *ManagementOptions) credentials() (user, pass string) {
	if o.Username == "" && o.Password == "" {
		return "guest", "guest"
	}
	return o.Username, o.Password
}

// managementChecker runs a checker and, alongside it, reads the node's alarms from the
// management API; the alarms (or the API's failure) are added to the checker's reason.
type managementChecker struct {
	checker Checker
	opts    ManagementOptions
	timeout time.Duration
	// client has no keep-alives (a check every few seconds needs no pool, and a check leaves
	// no connection open behind it) and ignores HTTP_PROXY: the node is reached directly.
	client *http.Client
}

func newManagementChecker(c Checker, o ManagementOptions, timeout time.Duration) *managementChecker {
	return &managementChecker{
		checker: c,
		opts:    o,
		timeout: timeoutOr(timeout),
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:                  nil,
				DialContext:            (&net.Dialer{}).DialContext,
				DisableKeepAlives:      true,
				MaxResponseHeaderBytes: 64 << 10,
			},
			// The API answers directly; a redirect means something else answers.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Check implements Checker.
func (mc *managementChecker) Check(ctx context.Context, t Target) Result {
	if !mc.opts.Alarms {
		return mc.checker.Check(ctx, t)
	}
	ctx, cancel := context.WithTimeout(ctx, mc.timeout)
	defer cancel()
	type alarmsResult struct {
		alarms, partitions []string
		err                error
	}
	done := make(chan alarmsResult, 1)
	go func() {
		alarms, err := mc.alarms(ctx, t)
		var partitions []string
		if err == nil {
			partitions = mc.partitions(ctx, t)
		}
		done <- alarmsResult{alarms, partitions, err}
	}()
	res := mc.checker.Check(ctx, t)
	ar := <-done
	switch {
	case ar.err != nil:
		res.Reason += "; management API: " + ar.err.Error()
	case len(ar.alarms) > 0:
		res.Reason += "; alarm: " + strings.Join(ar.alarms, ", ")
		if res.OK && mc.opts.EjectOnAlarm {
			res.OK, res.Kind = false, FailAlarm
		}
	}
	if len(ar.partitions) > 0 {
		// Shown, never ejecting: which side of a partition should serve is the cluster's call
		// (cluster_partition_handling), not the load balancer's.
		res.Reason += "; partitioned from " + strings.Join(ar.partitions, ", ")
	}
	// The check lasted as long as the slower of the two.
	if d := time.Since(res.At); d > res.Duration {
		res.Duration = d
	}
	return res
}

// alarmsReply is the body of a 503 from /api/health/checks/local-alarms.
type alarmsReply struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
	Alarms []struct {
		Node     string `json:"node"`
		Resource string `json:"resource"`
	} `json:"alarms"`
}

// alarms returns the resources ("memory", "disk") in alarm on the node of t, none if there is
// no alarm, or an error saying why the API gave no answer.
func (mc *managementChecker) alarms(ctx context.Context, t Target) ([]string, error) {
	base, err := mc.baseURL(t)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+alarmsPath, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(mc.opts.credentials())
	resp, err := mc.client.Do(req)
	if err != nil {
		return nil, httpFailure(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, httpFailure(ctx, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return nil, nil
	case http.StatusServiceUnavailable:
		var r alarmsReply
		if err := json.Unmarshal(body, &r); err != nil || r.Status != "failed" {
			return nil, fmt.Errorf("%s with an unexpected body", resp.Status)
		}
		var alarms []string
		for _, a := range r.Alarms {
			if a.Resource != "" && !slices.Contains(alarms, a.Resource) {
				alarms = append(alarms, a.Resource)
			}
		}
		if len(alarms) == 0 {
			// Failed without naming an alarm: say what it said.
			return nil, fmt.Errorf("%s: %s", resp.Status, r.Reason)
		}
		return alarms, nil
	}
	return nil, errors.New(resp.Status)
}

// partitions reads the node's own record (GET /api/overview for its name, then
// /api/nodes/NAME) and returns the nodes it is partitioned from. A failure gives none: the
// alarms request already reports an API that does not answer.
func (mc *managementChecker) partitions(ctx context.Context, t Target) []string {
	name, err := mc.nodeName(ctx, t)
	if err != nil {
		return nil
	}
	var node struct {
		Partitions []string `json:"partitions"`
	}
	if mc.getJSON(ctx, t, "/api/nodes/"+url.PathEscape(name)+"?columns=partitions", &node) != nil {
		return nil
	}
	return node.Partitions
}

// nodeName reads the Erlang name of t's node ("rabbit@host") from its /api/overview.
func (mc *managementChecker) nodeName(ctx context.Context, t Target) (string, error) {
	var overview struct {
		Node string `json:"node"`
	}
	if err := mc.getJSON(ctx, t, "/api/overview?columns=node", &overview); err != nil {
		return "", err
	}
	if overview.Node == "" {
		return "", errors.New("/api/overview names no node")
	}
	return overview.Node, nil
}

// baseURL is "http://HOST:PORT" of t's management API: its port on the host of t.Addr.
func (mc *managementChecker) baseURL(t Target) (string, error) {
	host, _, err := net.SplitHostPort(t.Addr)
	if err != nil {
		return "", err
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(mc.opts.port(t))), nil
}

// getJSON GETs path from the management API of t's node into v.
func (mc *managementChecker) getJSON(ctx context.Context, t Target, path string, v any) error {
	base, err := mc.baseURL(t)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(mc.opts.credentials())
	resp, err := mc.client.Do(req)
	if err != nil {
		return httpFailure(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// httpFailure says in a few words why a request to the management API failed.
func httpFailure(ctx context.Context, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return errors.New("canceled")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return errors.New("timeout")
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("connection reset")
	}
	return unwrapOp(err)
}
