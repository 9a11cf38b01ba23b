package admin

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strings"
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

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	w.Write(statusHTML)
}
