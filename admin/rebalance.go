package admin

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// ErrRebalanceUnavailable is what Options.Rebalance returns (wrapped, with the reason) for a
// backend that cannot be rebalanced, such as one without the brokers' management API: POST
// .../rebalance answers 409 with its text.
var ErrRebalanceUnavailable = errors.New("rebalance unavailable")

// RebalanceVictim is one session a rebalance closes (or, in a dry run, would close).
type RebalanceVictim struct {
	// ID is the session's id (GET /api/v1/sessions/{id}).
	ID uint64 `json:"id"`
	// Server is the server the session is on.
	Server string `json:"server"`
	// Since is when the session was accepted; LastActive is when it last moved a byte.
	Since      time.Time `json:"since"`
	LastActive time.Time `json:"last_active"`
}

// RebalanceResponse is the answer to POST /api/v1/backends/{b}/rebalance.
type RebalanceResponse struct {
	// Backend is the backend's name.
	Backend string `json:"backend"`
	// DryRun: nothing was started, Sessions is what a rebalance would close now.
	DryRun bool `json:"dry_run"`
	// Sessions are the sessions to close, in order; they close at the backend's rate.
	Sessions []RebalanceVictim `json:"sessions"`
}

// postRebalance plans a rebalance of {b}, and unless ?dry_run=true starts it.
func (s *Server) postRebalance(w http.ResponseWriter, r *http.Request) {
	b := s.findBackend(w, r)
	if b == nil {
		return
	}
	dryRun := false
	if q := r.URL.Query(); q.Has("dry_run") {
		var err error
		if dryRun, err = strconv.ParseBool(q.Get("dry_run")); err != nil {
			writeError(w, http.StatusBadRequest, `dry_run must be true or false`)
			return
		}
	}
	if s.opts.Rebalance == nil {
		writeError(w, http.StatusNotImplemented, "this server cannot rebalance")
		return
	}
	victims, err := s.opts.Rebalance(b.Name, dryRun)
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if victims == nil {
		victims = []RebalanceVictim{}
	}
	if !dryRun {
		s.log.Info("admin: rebalance started", "remote", r.RemoteAddr, "backend", b.Name, "sessions", len(victims))
	}
	writeJSON(w, http.StatusOK, RebalanceResponse{Backend: b.Name, DryRun: dryRun, Sessions: victims})
}
