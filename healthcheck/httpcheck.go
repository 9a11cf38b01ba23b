package healthcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// How HTTPChecker matches the response, besides MatchString and MatchRString, which match
// its body.
const (
	// MatchStatus: Pattern lists status codes and ranges, separated by commas ("200",
	// "200-299,304"), as HAProxy's "http-check expect status".
	MatchStatus = "status"
	// MatchRStatus: Pattern is a Go regular expression (RE2 syntax) matching the three
	// digits of the status code ("^2").
	MatchRStatus = "rstatus"
)

// httpUserAgent names the checks in the server's access log.
const httpUserAgent = "amqplb health check"

// HTTPChecker passes a server that answers an HTTP/1.1 request as expected, as HAProxy's
// option httpchk with http-check send and expect: it connects as every check does (check
// port, PROXY header, and TLS for a server whose checks speak TLS, so the request is then
// HTTPS), writes one request with "Connection: close" and reads the response.
//
// Without Match, a 2xx or 3xx status passes, HAProxy's default. With a Match, only that
// match decides, as in HAProxy: a body match ignores the status. Negate inverts the match.
//
// Make it with NewHTTPChecker (or NewChecker), which checks the request and compiles the
// match once; a literal HTTPChecker does both at every check, and a bad setting fails the
// check.
type HTTPChecker struct {
	// Timeout bounds the whole check, connect and response included; 0 means DefaultTimeout.
	Timeout time.Duration
	// Method is the request's method; "" means GET.
	Method string
	// Path is the request target as written on the request line, escapes kept
	// ("/api/aliveness-test/%2F"); "" means "/".
	Path string
	// Host is the Host header; "" means the address the check connects to.
	Host string
	// Header holds the other request headers (Authorization, say).
	Header http.Header
	// Match is "" (a 2xx or 3xx status passes), MatchStatus, MatchRStatus, MatchString or
	// MatchRString (the last two search the first 64 KiB of the body).
	Match string
	// Pattern is what Match looks for.
	Pattern string
	// Negate makes the check pass when Pattern does not match and fail when it does.
	Negate bool

	// compiled is the request and match, made by NewHTTPChecker.
	compiled *httpCheck
}

// httpCheck is an HTTPChecker ready to run.
type httpCheck struct {
	method, path string
	head         []byte // the header lines after Host, each ending in CRLF
	host         string
	match        string
	ranges       [][2]int       // status
	needle       []byte         // string
	re           *regexp.Regexp // rstatus, rstring
	pattern      string
	negate       bool
}

// NewHTTPChecker returns c ready to run, or an error naming the first bad setting: a
// method or header name that is not an HTTP token, a path or header value with a line
// break, an unknown match, a match without a pattern, a status list that is not codes and
// ranges, or a regular expression that does not compile.
func NewHTTPChecker(c HTTPChecker) (*HTTPChecker, error) {
	hc, err := compileHTTP(&c)
	if err != nil {
		return nil, err
	}
	c.compiled = hc
	return &c, nil
}

func compileHTTP(c *HTTPChecker) (*httpCheck, error) {
	hc := &httpCheck{method: c.Method, path: c.Path, host: c.Host, match: c.Match, pattern: c.Pattern, negate: c.Negate}
	if hc.method == "" {
		hc.method = http.MethodGet
	}
	if hc.path == "" {
		hc.path = "/"
	}
	if !isToken(hc.method) {
		return nil, fmt.Errorf("http check: method %q is not an HTTP method", hc.method)
	}
	// A space or line break would end the request line (or the request) early.
	if strings.ContainsAny(hc.path, " \r\n") {
		return nil, fmt.Errorf("http check: path %q has a blank or a line break", hc.path)
	}
	if strings.ContainsAny(hc.host, " \r\n") {
		return nil, fmt.Errorf("http check: host %q has a blank or a line break", hc.host)
	}
	var head bytes.Buffer
	names := make([]string, 0, len(c.Header))
	for k := range c.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !isToken(k) {
			return nil, fmt.Errorf("http check: header name %q is not an HTTP token", k)
		}
		switch strings.ToLower(k) {
		case "host", "connection", "content-length", "transfer-encoding":
			return nil, fmt.Errorf("http check: header %s is the checker's to write (use host for Host)", k)
		}
		for _, v := range c.Header[k] {
			if strings.ContainsAny(v, "\r\n") {
				return nil, fmt.Errorf("http check: header %s has a line break", k)
			}
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	hc.head = head.Bytes()
	if hc.match == "" {
		if c.Pattern != "" || c.Negate {
			return nil, errors.New("http check: a pattern or negate needs a match")
		}
		return hc, nil
	}
	if c.Pattern == "" {
		return nil, fmt.Errorf("http check: match %s needs a pattern", hc.match)
	}
	var err error
	switch hc.match {
	case MatchStatus:
		if hc.ranges, err = parseStatusRanges(c.Pattern); err != nil {
			return nil, fmt.Errorf("http check: %v", err)
		}
	case MatchString:
		hc.needle = []byte(c.Pattern)
	case MatchRStatus, MatchRString:
		if hc.re, err = regexp.Compile(c.Pattern); err != nil {
			return nil, fmt.Errorf("http check: bad %s pattern: %v", hc.match, err)
		}
	default:
		return nil, fmt.Errorf("http check: unknown match %q (want %s, %s, %s or %s)", hc.match, MatchStatus, MatchRStatus, MatchString, MatchRString)
	}
	return hc, nil
}

// parseStatusRanges reads a list of HTTP status codes and ranges separated by commas
// ("200", "200-299,304"), as HAProxy's http-check expect status takes them, into
// inclusive ranges.
func parseStatusRanges(s string) ([][2]int, error) {
	var out [][2]int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		if !isRange {
			hi = lo
		}
		a, errA := strconv.Atoi(strings.TrimSpace(lo))
		b, errB := strconv.Atoi(strings.TrimSpace(hi))
		if errA != nil || errB != nil || a < 100 || b > 599 || a > b {
			return nil, fmt.Errorf("status %q: want codes 100..599 or ranges of them, separated by commas (e.g. \"200\", \"200-299,304\")", s)
		}
		out = append(out, [2]int{a, b})
	}
	return out, nil
}

// isToken reports whether s is a non-empty HTTP token (a method or header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// Check implements Checker.
func (c *HTTPChecker) Check(ctx context.Context, t Target) Result {
	hc := c.compiled
	if hc == nil {
		var err error
		if hc, err = compileHTTP(c); err != nil {
			at := time.Now()
			return Result{Kind: FailOther, Reason: err.Error(), At: at, Duration: max(time.Since(at), 1)}
		}
	}
	var okReason string
	res := run(ctx, t, timeoutOr(c.Timeout), "", func(cv *conversation) error {
		var err error
		okReason, err = hc.exchange(cv, t)
		return err
	})
	if res.OK {
		res.Reason = okReason
	}
	return res
}

// exchange writes the request and judges the response; it returns the reason of a pass.
func (hc *httpCheck) exchange(cv *conversation, t Target) (string, error) {
	host := hc.host
	if host == "" {
		host = t.Addr
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n", hc.method, hc.path, host, httpUserAgent)
	req.Write(hc.head)
	req.WriteString("\r\n")
	if _, err := cv.nc.Write(req.Bytes()); err != nil {
		return "", cv.ioFailure(err, "sending the HTTP request")
	}
	// Peek consumes the read error it meets (a reset, say), so keep it for the reason.
	first, peekErr := cv.r.Peek(5)
	if peekErr != nil && len(first) == 0 {
		return "", cv.ioFailure(peekErr, "waiting for the HTTP response")
	}
	if !bytes.Equal(first, []byte("HTTP/")) {
		more, _ := cv.r.Peek(min(cv.r.Buffered(), 16))
		return "", failf(FailProtocol, 0, "not an HTTP response: server sent %s", quoteBytes(more))
	}
	resp, err := http.ReadResponse(cv.r, &http.Request{Method: hc.method})
	if err != nil {
		if isIOError(err) {
			return "", cv.ioFailure(err, "reading the HTTP response")
		}
		return "", failf(FailProtocol, 0, "bad HTTP response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxExpectRead))
	// A body cut short still shows what came; only a body match needs all of it.
	if err != nil && (hc.match == MatchString || hc.match == MatchRString) {
		return "", cv.ioFailure(err, "reading the HTTP body")
	}
	return hc.judge(resp.StatusCode, body)
}

// isIOError reports whether err is the connection's failure rather than a malformed response.
func isIOError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}

// judge applies the match to a response: the reason of a pass, or the failure.
func (hc *httpCheck) judge(code int, body []byte) (string, error) {
	status := fmt.Sprintf("HTTP status %d", code)
	ok := "HTTP " + hc.method + " " + hc.path + ": " + strconv.Itoa(code)
	not := ""
	if hc.negate {
		not = "not "
	}
	var matched bool
	var want string
	switch hc.match {
	case "":
		if code >= 200 && code < 400 {
			return ok, nil
		}
		return "", statusFailure(code, status+", want 2xx or 3xx", body)
	case MatchStatus:
		for _, r := range hc.ranges {
			matched = matched || code >= r[0] && code <= r[1]
		}
		want = ", want " + not + hc.pattern
	case MatchRStatus:
		matched = hc.re.MatchString(strconv.Itoa(code))
		want = ", want " + not + "one matching " + strconv.Quote(hc.pattern)
	case MatchString, MatchRString:
		if hc.match == MatchString {
			matched = bytes.Contains(body, hc.needle)
		} else {
			matched = hc.re.Match(body)
		}
		if matched != hc.negate {
			return ok, nil
		}
		what := "has no"
		if matched {
			what = "has"
		}
		pattern := strconv.Quote(hc.pattern)
		if hc.match == MatchRString {
			pattern = "a match of " + pattern
		}
		return "", failf(FailProtocol, 0, "HTTP body %s %s (%s, body %s)", what, pattern, status, quoteShort(body, 64))
	}
	if matched != hc.negate {
		return ok, nil
	}
	return "", statusFailure(code, status+want, body)
}

// statusFailure is the failure of a response whose status is not wanted, with the start of
// its body, where servers say why ({"status":"failed","reason":...}).
func statusFailure(code int, words string, body []byte) error {
	kind := FailProtocol
	if code == http.StatusUnauthorized || code == http.StatusForbidden {
		kind = FailAuth
	}
	if b := bytes.TrimSpace(body); len(b) > 0 {
		words += ": " + quoteShort(b, 64)
	}
	return failf(kind, 0, "%s", words)
}
