package admin

import "time"

// Discovery is what a backend's cluster discovery ([backend.discovery]) sees, as the caller
// reports it (Options.Discovery): the "discovery" of a backend in the API and the
// amqplb_discovery_* metrics.
type Discovery struct {
	// Management is the seed's management API (base URL, never with credentials).
	Management string `json:"management"`
	// Source is the management API that answered the last successful refresh; "" before one.
	Source string `json:"source"`
	// OK is false when the last refresh failed (the servers then stay as they were).
	OK bool `json:"ok"`
	// Error is the last refresh's failure, "" when it succeeded.
	Error string `json:"error"`
	// RefreshedAt and SucceededAt are when the last refresh, and the last successful one,
	// ended; nil before any.
	RefreshedAt *time.Time `json:"refreshed_at"`
	SucceededAt *time.Time `json:"succeeded_at"`
	// Refreshes and Failures count successful and failed refreshes since start (across
	// reloads).
	Refreshes uint64 `json:"refreshes"`
	Failures  uint64 `json:"failures"`
	// Nodes are the cluster's members as the last successful refresh listed them, each a
	// server of the backend unless a [[backend.server]] has its name or address.
	Nodes []DiscoveredNode `json:"nodes"`
}

// DiscoveredNode is one member of a discovered cluster.
type DiscoveredNode struct {
	// Name is the Erlang node name (rabbit@host): the server's name.
	Name string `json:"name"`
	// Address is host:port of its AMQP listener: the server's address.
	Address string `json:"address"`
	// ManagementPort is its management API's port, 0 when unknown.
	ManagementPort int `json:"management_port"`
	// Running is false for a member whose broker is stopped (a down server).
	Running bool `json:"running"`
}
