package admin

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// statusHTML is the status page: HTML, CSS and JavaScript in one file, no external assets, so
// it works on a closed network and from the binary alone.
//
//go:embed status.html
var statusHTML []byte

// statusCSP allows exactly the page's own inline style and script (by hash), requests to its
// own origin and data: images (the favicon); nothing else loads or runs.
var statusCSP = "default-src 'none'; " +
	"style-src " + inlineHash(statusHTML, "<style>", "</style>") + "; " +
	"script-src " + inlineHash(statusHTML, "<script>", "</script>") + "; " +
	"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// inlineHash returns the CSP source 'sha256-…' of the text between open and close in page.
// A page without them gets 'none', which a test would notice as a page that does not work.
func inlineHash(page []byte, open, close string) string {
	s := string(page)
	i := strings.Index(s, open)
	if i < 0 {
		return "'none'"
	}
	s = s[i+len(open):]
	j := strings.Index(s, close)
	if j < 0 {
		return "'none'"
	}
	sum := sha256.Sum256([]byte(s[:j]))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// pageMeta is the element of statusHTML that renderPage fills in. It lies outside the hashed
// <style> and <script>, so a listener can tell the page about itself without touching the CSP.
const pageMeta = `<meta name="amqplb" id="config">`

// pageConfig is what the status page learns from the listener that serves it.
type pageConfig struct {
	// base is where the API is, relative to the page: "" or "./" for next to it, "../x/"...
	base string
	// refresh is how often the page polls the API; 0 means the page's default (2s).
	refresh time.Duration
	// readOnly hides every control that changes a server.
	readOnly bool
	// metrics and readyz are the footer's links; "" leaves the link out.
	metrics, readyz string
	// sessions makes each server's connection count open its sessions (api/v1/sessions).
	sessions bool
}

// renderPage returns statusHTML with c in its <meta id="config"> element.
func renderPage(c pageConfig) []byte {
	attr := func(name, value string) string { return " data-" + name + `="` + html.EscapeString(value) + `"` }
	meta := `<meta name="amqplb" id="config"` +
		attr("base", c.base) +
		attr("refresh-ms", strconv.FormatInt(c.refresh.Milliseconds(), 10)) +
		attr("readonly", strconv.FormatBool(c.readOnly)) +
		attr("metrics", c.metrics) +
		attr("readyz", c.readyz) +
		attr("sessions", strconv.FormatBool(c.sessions)) + ">"
	return bytes.Replace(statusHTML, []byte(pageMeta), []byte(meta), 1)
}

// adminPage is the admin Server's page: at /, with controls, the default refresh, and the
// sessions of each server when the Server has them.
func adminPage(sessions bool) []byte {
	return renderPage(pageConfig{metrics: "metrics", readyz: "readyz", sessions: sessions})
}

// writePage answers with page and the headers that lock it down.
func writePage(w http.ResponseWriter, page []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	w.Write(page)
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) { writePage(w, s.page) }
