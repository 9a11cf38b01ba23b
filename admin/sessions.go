package admin

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Session is a snapshot of one open session, taken by the caller when admin asks
// (proxy.SessionInfo with its Identity flattened). It never holds a password or any other
// credential: the proxy does not keep one.
type Session struct {
	// ID identifies the session in the process.
	ID uint64
	// Frontend is the name of the frontend that accepted it.
	Frontend string
	// Client is the client's address (a PROXY header's source, when there was one); Via is the
	// peer's address when a PROXY header gave Client, else invalid.
	Client, Via netip.AddrPort
	// Backend and Server say where the session goes; Server is "" while it connects.
	Backend, Server string
	// Protocol is "amqp-0-9-1" or "amqp-1.0"; "" in TCP mode.
	Protocol string
	// Mechanism and User are the SASL mechanism and the user name the client logged in with.
	Mechanism, User string
	// VHost is the virtual host; "" until the client opens one.
	VHost string
	// ConnectionName, ClientProduct, ClientVersion and ClientPlatform are the client's
	// properties.
	ConnectionName, ClientProduct, ClientVersion, ClientPlatform string
	// ChannelMax and FrameMax are what the client chose.
	ChannelMax uint16
	FrameMax   uint32
	// Heartbeat is the negotiated heartbeat interval; 0 means none.
	Heartbeat time.Duration
	// CloseCode is the reply code of the broker's Connection.Close that refused the handshake
	// (403, 530, ...); 0 otherwise. Such a session is listed only while it ends.
	CloseCode uint16
	// BytesToServer and BytesToClient count the bytes relayed each way.
	BytesToServer, BytesToClient uint64
	// Since is when the connection was accepted.
	Since time.Time
}

// SessionJSON is one session in the API; the field names are a contract (ARCHITECTURE.md).
type SessionJSON struct {
	ID       uint64 `json:"id"`
	Frontend string `json:"frontend"`
	// Client is ip:port; Via is the peer's ip:port when a PROXY header gave Client, else "".
	Client string `json:"client"`
	Via    string `json:"via"`
	// Backend is the backend's name; Server is "" while the session connects.
	Backend        string `json:"backend"`
	Server         string `json:"server"`
	Protocol       string `json:"protocol"`
	Mechanism      string `json:"mechanism"`
	User           string `json:"user"`
	VHost          string `json:"vhost"`
	ConnectionName string `json:"connection_name"`
	ClientProduct  string `json:"client_product"`
	ClientVersion  string `json:"client_version"`
	ClientPlatform string `json:"client_platform"`
	ChannelMax     uint16 `json:"channel_max"`
	FrameMax       uint32 `json:"frame_max"`
	// HeartbeatSeconds is the negotiated heartbeat interval; 0 means none.
	HeartbeatSeconds float64   `json:"heartbeat_seconds"`
	BytesToServer    uint64    `json:"bytes_to_server"`
	BytesToClient    uint64    `json:"bytes_to_client"`
	Since            time.Time `json:"since"`
	// CloseCode is left out unless the broker refused the handshake: the session is ending.
	CloseCode uint16 `json:"close_code,omitempty"`
}

// SessionsResponse is the body of GET /api/v1/sessions.
type SessionsResponse struct {
	// Sessions is one page of the sessions that match, by id.
	Sessions []SessionJSON `json:"sessions"`
	// Total is how many sessions match the filters, on all pages.
	Total int `json:"total"`
	// NextAfter is the ?after= of the next page; null on the last one.
	NextAfter *uint64 `json:"next_after"`
	// GeneratedAt is the server's clock when the answer was built.
	GeneratedAt time.Time `json:"generated_at"`
}

// CloseSessionResponse is the answer to POST /api/v1/sessions/{id}/close.
type CloseSessionResponse struct {
	ID     uint64 `json:"id"`
	Closed bool   `json:"closed"`
	// Graceful: the close was asked as a protocol close (?graceful=true), which the session
	// performs within seconds, after this answer.
	Graceful bool `json:"graceful"`
}

// Paging of GET /api/v1/sessions.
const (
	DefaultSessionsLimit = 100
	MaxSessionsLimit     = 1000
)

// otherVHost is the vhost label of the sessions whose vhost gets no series of its own.
const otherVHost = "_other"

// sessionJSON converts s for the API.
func sessionJSON(s *Session) SessionJSON {
	return SessionJSON{
		ID:               s.ID,
		Frontend:         s.Frontend,
		Client:           addrString(s.Client),
		Via:              addrString(s.Via),
		Backend:          s.Backend,
		Server:           s.Server,
		Protocol:         s.Protocol,
		Mechanism:        s.Mechanism,
		User:             s.User,
		VHost:            s.VHost,
		ConnectionName:   s.ConnectionName,
		ClientProduct:    s.ClientProduct,
		ClientVersion:    s.ClientVersion,
		ClientPlatform:   s.ClientPlatform,
		ChannelMax:       s.ChannelMax,
		FrameMax:         s.FrameMax,
		HeartbeatSeconds: s.Heartbeat.Seconds(),
		BytesToServer:    s.BytesToServer,
		BytesToClient:    s.BytesToClient,
		Since:            s.Since.UTC(),
		CloseCode:        s.CloseCode,
	}
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// sessionFilter is the query of GET /api/v1/sessions.
type sessionFilter struct {
	limit int
	after uint64
	// exact holds the exact-match filters by field: frontend, backend, server, vhost, user.
	exact map[string]string
	// q is a lower-cased substring of the client, user, vhost, connection name or client
	// product; "" matches every session.
	q string
}

// sessionParams are the query parameters GET /api/v1/sessions knows.
var sessionParams = []string{"after", "backend", "frontend", "limit", "q", "server", "user", "vhost"}

// parseSessionFilter reads the query of r, or returns why it is wrong.
func parseSessionFilter(r *http.Request) (sessionFilter, error) {
	f := sessionFilter{limit: DefaultSessionsLimit, exact: map[string]string{}}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return f, fmt.Errorf("bad query: %v", err)
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		vs := q[k]
		if !slices.Contains(sessionParams, k) {
			return f, fmt.Errorf("unknown query parameter %q (known: %s)", k, strings.Join(sessionParams, ", "))
		}
		if len(vs) > 1 {
			return f, fmt.Errorf("query parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxSessionsLimit {
				return f, fmt.Errorf("limit %q is not a number in 1..%d", v, MaxSessionsLimit)
			}
			f.limit = n
		case "after":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return f, fmt.Errorf("after %q is not a session id", v)
			}
			f.after = n
		case "q":
			f.q = strings.ToLower(v)
		default:
			f.exact[k] = v
		}
	}
	return f, nil
}

// match reports whether s passes every filter but the paging.
func (f *sessionFilter) match(s *Session) bool {
	for k, v := range f.exact {
		var got string
		switch k {
		case "frontend":
			got = s.Frontend
		case "backend":
			got = s.Backend
		case "server":
			got = s.Server
		case "vhost":
			got = s.VHost
		case "user":
			got = s.User
		}
		if got != v {
			return false
		}
	}
	if f.q == "" {
		return true
	}
	for _, t := range []string{s.User, s.VHost, s.ConnectionName, s.ClientProduct} {
		if containsFold(t, f.q) {
			return true
		}
	}
	return containsFold(addrString(s.Client), f.q) || containsFold(addrString(s.Via), f.q)
}

// containsFold reports whether s contains the lower-case lower, ignoring case.
func containsFold(s, lower string) bool {
	if len(s) < len(lower) {
		return false
	}
	return strings.Contains(strings.ToLower(s), lower)
}

// sessionPage returns the page of list that f asks for: the matching sessions with an id above
// f.after, by id, at most f.limit of them; with the number of all matching sessions.
func sessionPage(list []Session, f *sessionFilter) SessionsResponse {
	resp := SessionsResponse{Sessions: []SessionJSON{}, GeneratedAt: time.Now().UTC()}
	var page []*Session
	for i := range list {
		s := &list[i]
		if !f.match(s) {
			continue
		}
		resp.Total++
		if s.ID > f.after {
			page = append(page, s)
		}
	}
	slices.SortFunc(page, func(a, b *Session) int { return cmp.Compare(a.ID, b.ID) })
	if len(page) > f.limit {
		page = page[:f.limit]
		next := page[len(page)-1].ID
		resp.NextAfter = &next
	}
	resp.Sessions = make([]SessionJSON, len(page))
	for i, s := range page {
		resp.Sessions[i] = sessionJSON(s)
	}
	return resp
}

func (s *Server) getSessions(w http.ResponseWriter, r *http.Request) {
	f, err := parseSessionFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, sessionPage(s.sessionList(), &f))
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	id, ok := sessionID(w, r)
	if !ok {
		return
	}
	if ss := s.findSession(id); ss != nil {
		writeJSON(w, http.StatusOK, sessionJSON(ss))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no open session %d", id))
}

func (s *Server) postCloseSession(w http.ResponseWriter, r *http.Request) {
	id, ok := sessionID(w, r)
	if !ok {
		return
	}
	closeFn := s.opts.CloseSession
	graceful := false
	if g := r.URL.Query().Get("graceful"); g != "" {
		var err error
		if graceful, err = strconv.ParseBool(g); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("graceful=%q is not a boolean", g))
			return
		}
	}
	if graceful {
		closeFn = s.opts.CloseSessionGracefully
	}
	if closeFn == nil {
		writeError(w, http.StatusNotImplemented, "this server cannot close sessions")
		return
	}
	ss := s.findSession(id) // for the log line; the session may end before closeFn
	if !closeFn(id) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no open session %d", id))
		return
	}
	args := []any{"remote", r.RemoteAddr, "id", id, "graceful", graceful}
	if ss != nil {
		args = append(args, "frontend", ss.Frontend, "client", addrString(ss.Client), "backend", ss.Backend,
			"server", ss.Server, "user", ss.User, "vhost", ss.VHost)
	}
	s.log.Info("admin: session closed", args...)
	writeJSON(w, http.StatusOK, CloseSessionResponse{ID: id, Closed: true, Graceful: graceful})
}

// sessionID reads {id}, or answers 400 and returns false.
func sessionID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	raw := r.PathValue("id")
	id, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("session id %q is not a number", raw))
		return 0, false
	}
	return id, true
}

// sessionList returns every open session; none when Options.Sessions is nil.
func (src source) sessionList() []Session {
	if src.sessions == nil {
		return nil
	}
	return src.sessions()
}

// findSession returns the open session with the given id, or nil.
func (s *Server) findSession(id uint64) *Session {
	list := s.sessionList()
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// vhostCount is the number of open sessions on one vhost label.
type vhostCount struct {
	vhost string
	n     int
}

// vhostSessions counts the sessions of list by vhost, leaving out those whose vhost is not
// known yet. The labels vhosts with the most sessions (ties by name) come first, by count;
// the last element is otherVHost with the sessions of every other vhost (0 when there are
// none), a real vhost named "_other" included.
func vhostSessions(list []Session, labels int) []vhostCount {
	labels = max(labels, 0)
	counts := map[string]int{}
	for i := range list {
		if v := list[i].VHost; v != "" {
			counts[v]++
		}
	}
	other := counts[otherVHost]
	delete(counts, otherVHost)
	out := make([]vhostCount, 0, min(len(counts), labels)+1)
	for v, n := range counts {
		out = append(out, vhostCount{v, n})
	}
	slices.SortFunc(out, func(a, b vhostCount) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.vhost, b.vhost))
	})
	if len(out) > labels {
		for _, c := range out[labels:] {
			other += c.n
		}
		out = out[:labels]
	}
	return append(out, vhostCount{otherVHost, other})
}
