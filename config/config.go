package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults for keys that are not written in the file. An explicitly written
// zero or false is kept: only absent keys get these values.
const (
	DefaultMaxConnections = 10000            // global.max_connections
	DefaultDrainTimeout   = 30 * time.Second // global.drain_timeout
	DefaultLogLevel       = "info"           // global.log_level
	DefaultLogFormat      = "text"           // global.log_format
	DefaultAccessLog      = true             // global.access_log
	DefaultAdminListen    = "127.0.0.1:8404" // admin.listen
	DefaultVHostLabels    = 100              // admin.vhost_labels
	DefaultSocketLevel    = "operator"       // admin.socket_level
	DefaultLogFacility    = "local0"         // global.log[].facility
	DefaultLogTargetLevel = "debug"          // global.log[].level: everything

	DefaultMode      = "amqp"               // frontend.mode
	DefaultTLSVerify = "none"               // frontend.tls.verify
	DefaultStatsURI  = "/"                  // stats.uri
	DefaultRealm     = "HAProxy Statistics" // stats.realm

	DefaultBalance        = "roundrobin"     // backend.balance
	DefaultConnectTimeout = 5 * time.Second  // backend.connect_timeout
	DefaultRetries        = 3                // backend.retries
	DefaultRedispatch     = true             // backend.redispatch
	DefaultTCPKeepalive   = 30 * time.Second // backend.tcp_keepalive
	DefaultOnMarkedDown   = "keep"           // backend.on_marked_down
	DefaultOnMarkedUp     = "keep"           // backend.on_marked_up

	DefaultCheckType         = "amqp"                 // backend.health_check.type
	DefaultCheckInterval     = 2 * time.Second        // backend.health_check.interval
	DefaultCheckFastInterval = 500 * time.Millisecond // backend.health_check.fast_interval
	DefaultCheckDownInterval = 2 * time.Second        // backend.health_check.down_interval
	DefaultCheckTimeout      = 1 * time.Second        // backend.health_check.timeout
	DefaultCheckRise         = 2                      // backend.health_check.rise
	DefaultCheckFall         = 3                      // backend.health_check.fall
	DefaultCheckVHost        = "/"                    // backend.health_check.vhost
	DefaultCheckUsername     = "guest"                // backend.health_check.username
	DefaultCheckPassword     = "guest"                // backend.health_check.password
	DefaultManagementPort    = 15672                  // backend.health_check.management.port
	DefaultHTTPCheckMethod   = "GET"                  // backend.health_check.http.method
	DefaultHTTPCheckPath     = "/"                    // backend.health_check.http.path
	DefaultAgentInterval     = 2 * time.Second        // backend.server.agent.interval

	DefaultDiscoveryInterval = 30 * time.Second // backend.discovery.interval
	DefaultDiscoveryTimeout  = 5 * time.Second  // backend.discovery.timeout

	DefaultResolveInterval = 10 * time.Second // backend.server_template.resolve_interval
	DefaultResolveTimeout  = 1 * time.Second  // backend.server_template.resolve_timeout
	MaxTemplateCount       = 1024             // backend.server_template.count: the largest accepted

	DefaultRebalanceTolerance = 0.10             // backend.rebalance.tolerance
	DefaultRebalanceRate      = "2/s"            // backend.rebalance.rate
	DefaultRebalanceMinAge    = 60 * time.Second // backend.rebalance.min_age

	DefaultRuleLayer = RuleLayerConnection // frontend.tcp_request[].layer

	DefaultWeight          = 1          // backend.server.weight
	DefaultServerTLSVerify = "required" // backend.server.tls.verify

	// MaxWeight is the largest server weight accepted (as in HAProxy).
	MaxWeight = 256

	// AMQPHeartbeat is the heartbeat RabbitMQ proposes by default. An idle
	// timeout shorter than twice this cuts idle but healthy clients.
	AMQPHeartbeat = 60 * time.Second
)

// The layers of tcp_request rules (TCPRule.Layer).
const (
	// RuleLayerConnection rules run when a connection is accepted, on the
	// address of the connecting peer (HAProxy's tcp-request connection).
	RuleLayerConnection = "connection"
	// RuleLayerContent rules run once the client's address is known: at
	// accept, or after the PROXY header with accept_proxy (HAProxy's
	// tcp-request session and tcp-request content).
	RuleLayerContent = "content"
)

// Allowed values of the enumerated keys, in the order messages list them.
// Treat as constants.
var (
	logLevels   = []string{"debug", "info", "warn", "error"}
	logFormats  = []string{"text", "json"}
	modes       = []string{"amqp", "tcp"}
	balances    = []string{"roundrobin", "leastconn", "first", "source", "random"}
	sendProxies = []string{"", "v1", "v2"}
	// A server's send_proxy: "" is the backend's.
	serverSendProxies = []string{"", "none", "v1", "v2"}
	onMarkedDowns     = []string{"keep", "shutdown-sessions"}
	onMarkedUps       = []string{"keep", "shutdown-backup-sessions"}
	checkTypes        = []string{"amqp", "amqp-probe", "tcp", "http", "none"}
	tlsVerifies       = []string{"none", "optional", "required"}
	serverVerifies    = []string{"none", "chain", "required"}
	ruleActions       = []string{"accept", "reject"}
	ruleLayers        = []string{RuleLayerConnection, RuleLayerContent}
	stepActions       = []string{"connect", "send", "send-binary", "expect"}
	stepMatches       = []string{"string", "binary", "rstring", "rbinary"}
	httpMatches       = []string{"status", "rstatus", "string", "rstring"}
)

// syslogFacilities are the syslog facility names, HAProxy's spelling, in
// the order of their codes (kern is 0, local7 is 23).
var syslogFacilities = []string{
	"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2", "ftp",
	"ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

// syslogSeverities are the syslog severity names in the order of their
// codes (emerg is 0, debug is 7).
var syslogSeverities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// SyslogFacility returns the code of a syslog facility name as global.log
// accepts it (kern 0 ... local7 23; auth2 is authpriv, 10).
func SyslogFacility(name string) (int, bool) {
	i := slices.Index(syslogFacilities, name)
	return i, i >= 0
}

// SyslogSeverity returns the code of a syslog severity name as global.log
// accepts it (emerg 0 ... debug 7). A log target sends the lines whose
// severity code is at most that of its level.
func SyslogSeverity(name string) (int, bool) {
	i := slices.Index(syslogSeverities, name)
	return i, i >= 0
}

// Config is a whole amqplb configuration file.
//
// The types of a Config are its schema, declared once: the toml tag of a
// field names its key, the decoder (Parse) reads every tagged field, and
// ToTOML writes them, in the order of the fields, with these options after
// the name:
//
//	omitempty       left out when zero ("", 0, false)
//	inline          a table or array of tables written on the key's line,
//	                { k = v, ... }, rather than as a [table] or [[table]]
//	unless=KEY      left out when the field with key KEY is not zero
//
// Lists, maps and pointers that are empty or nil are always left out.
// Tables ([table], [[table]]) are written after the other keys of their
// table, as TOML requires.
type Config struct {
	// File is the path the configuration was loaded from (or the name given
	// to Parse); messages are prefixed with it.
	File string `toml:"-"`
	// Global holds process-wide settings ([global]).
	Global Global `toml:"global"`
	// Admin configures the HTTP admin/metrics server ([admin]).
	Admin Admin `toml:"admin"`
	// Stats are read-only HTTP listeners serving the status page and the
	// metrics, as HAProxy's stats and Prometheus exporter sections do
	// ([[stats]]). Default none.
	Stats []Stats `toml:"stats"`
	// Frontends are the listeners ([[frontend]]); at least one is required.
	Frontends []Frontend `toml:"frontend"`
	// Backends are the named sets of brokers ([[backend]]).
	Backends []Backend `toml:"backend"`
	// Warnings are things that are valid but probably wrong, each
	// "FILE:LINE: message" or "FILE: message", sorted by line.
	Warnings []string `toml:"-"`
}

// Global holds process-wide settings.
type Global struct {
	// MaxConnections is the number of client connections accepted across all
	// frontends; beyond it new connections are refused. 0 means no limit.
	// Default 10000.
	MaxConnections int `toml:"max_connections"`
	// DrainTimeout is how long SIGTERM/SIGINT waits for sessions to end
	// before closing them. 0 closes them at once. Default 30s.
	DrainTimeout time.Duration `toml:"drain_timeout"`
	// LogLevel is debug, info, warn or error. Default "info".
	LogLevel string `toml:"log_level"`
	// LogFormat is text or json. Default "text".
	LogFormat string `toml:"log_format"`
	// AccessLog emits one line per client connection when it ends.
	// Default true.
	AccessLog bool `toml:"access_log"`
	// User, when set and amqplb is started as root, is the user (a name or
	// a numeric id) amqplb switches to once its listeners are bound, as
	// HAProxy's user does. A reload then reads files and binds new
	// addresses with that user's rights. Default "" (keep the user it was
	// started as).
	User string `toml:"user,omitempty"`
	// Group is the group to switch to with User (a name or a numeric id);
	// "" means User's primary group. Default "".
	Group string `toml:"group,omitempty"`
	// Log are remote syslog servers (UDP) that get every log line too, in
	// addition to standard error (HAProxy's global log ADDR FACILITY
	// LEVEL). Default none.
	Log []LogTarget `toml:"log,inline"`
}

// LogTarget is a syslog server that log lines are sent to (RFC 3164): over
// UDP, or through a local socket.
type LogTarget struct {
	// Address is host:port of the syslog server (UDP), or the absolute path
	// of a local syslog socket such as /dev/log (unix datagram); required.
	Address string `toml:"address"`
	// Facility is the syslog facility the lines are sent with: kern, user,
	// mail, daemon, auth, syslog, lpr, news, uucp, cron, auth2, ftp, ntp,
	// audit, alert, cron2, local0..local7. Default "local0".
	Facility string `toml:"facility"`
	// Level is the least severe syslog severity sent: emerg, alert, crit,
	// err, warning, notice, info or debug (everything). Default "debug".
	Level string `toml:"level"`
}

// Admin configures the HTTP server for /metrics, /api/v1/..., /healthz,
// /readyz and the status page.
type Admin struct {
	// Listen is the host:port to serve on; "" disables the admin server.
	// Default "127.0.0.1:8404".
	Listen string `toml:"listen"`
	// Token, when set, is required as "Authorization: Bearer <token>" by the
	// mutating endpoints. Default "" (no token).
	Token string `toml:"token"`
	// VHostLabels caps the vhost label of amqplb_vhost_sessions: the
	// VHostLabels vhosts with the most open sessions get a series of their
	// own, and the sessions of the others are counted under vhost="_other".
	// 0 puts every session under "_other" (no vhost name in the metrics).
	// Default 100.
	VHostLabels int `toml:"vhost_labels"`
	// Socket is the path of a UNIX socket serving HAProxy's runtime API
	// (haproxy.cfg's stats socket): show stat, disable server... "" (the
	// default) serves none.
	Socket string `toml:"socket"`
	// SocketMode is the socket file's permissions in octal ("660"); ""
	// leaves what the umask gives.
	SocketMode string `toml:"socket_mode"`
	// SocketUser and SocketGroup own the socket file (names or ids); ""
	// leaves the process's own.
	SocketUser  string `toml:"socket_user"`
	SocketGroup string `toml:"socket_group"`
	// SocketLevel is what the socket's clients may do: user (read only),
	// operator (also see sessions) or admin (change servers, close
	// sessions). Default "operator", as in HAProxy.
	SocketLevel string `toml:"socket_level"`
}

// Frontend is one listener whose connections go to one backend.
type Frontend struct {
	// Name identifies the frontend in logs and metrics; required, unique.
	Name string `toml:"name"`
	// Bind is the host:port to listen on (":5672" for every address);
	// required.
	Bind string `toml:"bind"`
	// Backend is the name of the backend connections go to; required.
	Backend string `toml:"backend"`
	// Mode is amqp (the 8-byte AMQP protocol header is checked before a
	// broker is picked) or tcp (pure passthrough). Default "amqp".
	Mode string `toml:"mode"`
	// Protocols are the AMQP versions mode amqp accepts: "amqp-0-9-1" and
	// "amqp-1.0" (over SASL, as RabbitMQ 4 serves it on the AMQP port). An
	// AMQP 1.0 client without SASL is refused, as RabbitMQ refuses it.
	// Default both.
	Protocols []string `toml:"protocols,omitempty"`
	// MaxConnections caps this frontend's client connections; 0 means only
	// the global limit applies. Default 0.
	MaxConnections int `toml:"max_connections"`
	// TLS, when set, terminates TLS on this frontend. Default nil (plain TCP).
	TLS *TLS `toml:"tls,inline"`
	// AcceptProxy expects a PROXY protocol (v1 or v2) header from a load
	// balancer in front, read within the handshake timeout; a connection
	// with a bad header is closed. Default false.
	AcceptProxy bool `toml:"accept_proxy"`
	// DontLogNull writes no access-log line for sessions in which the
	// client sent nothing (HAProxy's option dontlognull: port probes).
	// Default false.
	DontLogNull bool `toml:"dont_log_null"`
	// ACL names sets of client (source) addresses, each an IP address or a
	// CIDR prefix, for TCPRequest conditions (HAProxy's acl NAME src ...).
	// Default none.
	ACL map[string][]string `toml:"acl"`
	// TCPRequest are the rules that accept or reject a client connection,
	// in two layers, as HAProxy's tcp-request connection and tcp-request
	// content (and session) rules. The connection rules (Layer
	// "connection") run first, when the connection is accepted, and see
	// the connecting peer: with AcceptProxy that is the balancer in front,
	// not the client. The content rules (Layer "content") run next and
	// see the client's address, from the PROXY header with AcceptProxy
	// (without it, the same peer the connection rules see). Each layer is
	// evaluated on its own, its rules in order: the first rule whose
	// condition matches decides (accept ends that layer, reject closes the
	// connection); when none matches, the layer accepts. A connection
	// accepted by the connection layer still goes through the content
	// layer. TCPRules returns the rules of one layer. Default none.
	TCPRequest []TCPRule `toml:"tcp_request,inline"`
	// InspectDelay bounds the wait for the client's TLS ClientHello when
	// Routes route on it (HAProxy's tcp-request inspect-delay); 0 means
	// the handshake timeout. Default 0.
	InspectDelay time.Duration `toml:"inspect_delay,omitempty"`
	// ParkAfter is how long a relaying session must move no byte before
	// amqplb parks it: its two goroutines exit and its sockets wait in
	// amqplb's own poll set, which relays small chunks (heartbeats) itself
	// (Linux). 0 means 1 s; negative, never. Default 0.
	ParkAfter time.Duration `toml:"park_after,omitempty"`
	// Routes send a client whose TLS ClientHello names a matching server
	// (SNI) to another backend than Backend, without terminating TLS (mode
	// tcp, no tls): the first matching route decides, none matching leaves
	// Backend. Default none.
	Routes []Route `toml:"route"`
}

// Route is a frontend's route by the server name of the TLS ClientHello.
// Names are compared case-insensitively.
type Route struct {
	// SNI are server names matched exactly.
	SNI []string `toml:"sni,omitempty"`
	// SNISuffix and SNIPrefix match a name's end or start (HAProxy's
	// req_ssl_sni -m end / -m beg).
	SNISuffix []string `toml:"sni_suffix,omitempty"`
	SNIPrefix []string `toml:"sni_prefix,omitempty"`
	// Backend is where matching clients go; required.
	Backend string `toml:"backend"`
}

// TLS configures TLS termination on a frontend; file names are PEM files.
type TLS struct {
	// Cert is the certificate chain, with the key when Key is "", or a
	// directory of such files, picked by the name the client asks for
	// (SNI), as HAProxy's crt DIR. Required.
	Cert string `toml:"cert"`
	// Key is the private key. "" means it is in the Cert file, or in
	// Cert + ".key" when that file exists, as HAProxy does. Default "".
	Key string `toml:"key"`
	// CA is the bundle of CA certificates that client certificates are
	// verified against. Default "" (none).
	CA string `toml:"ca"`
	// Verify is none (no client certificate asked), optional (verified when
	// given) or required; optional and required need CA. Default "none".
	Verify string `toml:"verify"`
}

// TCPRule is one tcp_request rule of a frontend. At most one of If and
// Unless is set; with neither, the rule always applies. A condition is
// written in HAProxy's syntax over the frontend's ACL names: terms
// separated by blanks must all match, "||" (or "or") separates
// alternatives, and "!NAME" negates a term: "lan !blocked || admin".
// ParseCondition reads it.
type TCPRule struct {
	// Layer is the layer the rule belongs to (see Frontend.TCPRequest):
	// connection (evaluated at accept, on the connecting peer's address)
	// or content (evaluated once the client's address is known, on the
	// PROXY header's source with accept_proxy). Default "connection".
	Layer string `toml:"layer"`
	// Action is accept or reject; required.
	Action string `toml:"action"`
	// If is the condition under which the rule applies.
	If string `toml:"if,omitempty"`
	// Unless is the condition under which the rule does not apply.
	Unless string `toml:"unless,omitempty"`
}

// BackendRule is one tcp_request rule of a backend: a content rule, with
// the fields of TCPRule but the layer (see Backend.TCPRequest).
type BackendRule struct {
	// Action is accept or reject; required.
	Action string `toml:"action"`
	// If is the condition under which the rule applies.
	If string `toml:"if,omitempty"`
	// Unless is the condition under which the rule does not apply.
	Unless string `toml:"unless,omitempty"`
}

// Rules returns b's tcp_request rules as content-layer TCPRules.
func (b *Backend) Rules() []TCPRule {
	out := make([]TCPRule, len(b.TCPRequest))
	for i, r := range b.TCPRequest {
		out[i] = TCPRule{Layer: RuleLayerContent, Action: r.Action, If: r.If, Unless: r.Unless}
	}
	return out
}

// IdleHeartbeat is the value of Backend.IdleTimeout written idle_timeout =
// "heartbeat": the idle timeout of each session is 3 times its negotiated
// heartbeat.
const IdleHeartbeat time.Duration = -1

// Backend is a named set of brokers and the policy for using them.
type Backend struct {
	// Name identifies the backend; frontends refer to it. Required, unique.
	Name string `toml:"name"`
	// Balance is the policy: roundrobin, leastconn, first, source or random.
	// Default "roundrobin".
	Balance string `toml:"balance"`
	// ConnectTimeout bounds one dial to a server; must be > 0. Default 5s.
	ConnectTimeout time.Duration `toml:"connect_timeout"`
	// Retries is how many more dials are tried after a failed one. Default 3.
	Retries int `toml:"retries"`
	// Redispatch lets a retry go to another server than the failed one.
	// Default true.
	Redispatch bool `toml:"redispatch"`
	// IdleTimeout closes a session with no traffic either way for this long;
	// 0 means none. The word "heartbeat" (IdleHeartbeat) makes it 3 times
	// the heartbeat the session's handshake negotiated (end
	// heartbeat_timeout), or IdleTimeoutDefault for a session without one;
	// frontends in mode amqp only. Default 0.
	IdleTimeout time.Duration `toml:"idle_timeout,heartbeat"`
	// IdleTimeoutDefault is the idle timeout, with idle_timeout =
	// "heartbeat", of a session that negotiated no heartbeat (or of a tcp
	// frontend's session); 0 means none. Default 0.
	IdleTimeoutDefault time.Duration `toml:"idle_timeout_default,omitempty"`
	// TCPKeepalive is the keepalive period on both sides; 0 disables it.
	// Default 30s.
	TCPKeepalive time.Duration `toml:"tcp_keepalive"`
	// SendProxy writes a PROXY protocol header to the server: "" (none),
	// "v1" or "v2". Default "".
	SendProxy string `toml:"send_proxy"`
	// OnMarkedDown is what happens to a server's sessions when it goes down:
	// keep or shutdown-sessions. Default "keep".
	OnMarkedDown string `toml:"on_marked_down"`
	// OnMarkedUp is what happens when a non-backup server comes up: keep,
	// or shutdown-backup-sessions to close the sessions on backup servers
	// so that clients reconnect to it. Default "keep".
	OnMarkedUp string `toml:"on_marked_up"`
	// HalfCloseTimeout bounds how long a session stays open after one side
	// has closed its direction (HAProxy's timeout client-fin/server-fin);
	// 0 means the proxy's own default. Default 0.
	HalfCloseTimeout time.Duration `toml:"half_close_timeout"`
	// Slowstart ramps a server's weight up over this long after it comes up;
	// 0 means at once. Default 0.
	Slowstart time.Duration `toml:"slowstart"`
	// ACL names sets of client addresses for TCPRequest, as a frontend's
	// acl. Default none.
	ACL map[string][]string `toml:"acl,omitempty"`
	// TCPRequest are tcp-request content rules of the backend (HAProxy
	// evaluates those of a backend once it is chosen): they run after the
	// frontend's, on the client's address, before a server is dialed; the
	// first rule whose condition matches decides, and none matching
	// accepts. Default none.
	TCPRequest []BackendRule `toml:"tcp_request,inline,omitempty"`
	// HealthCheck configures active checks of the servers.
	HealthCheck HealthCheck `toml:"health_check"`
	// Rebalance, when set, closes surplus sessions on overloaded servers
	// so that clients reconnect to under-loaded ones ([backend.rebalance]).
	// Default nil: no rebalancing, though POST .../rebalance still works
	// with the table's defaults when the health check has management.
	Rebalance *Rebalance `toml:"rebalance"`
	// Discovery, when set, adds the members of a RabbitMQ cluster, read from its management
	// API, to Servers and keeps them in step with the cluster without a reload
	// ([backend.discovery]). Default nil: the servers are Servers alone.
	Discovery *Discovery `toml:"discovery"`
	// ServerTemplates each expand a DNS name into up to Count servers, one per address it
	// resolves to, named Prefix1..PrefixCount, re-resolved every ResolveInterval without a
	// reload ([[backend.server_template]], HAProxy's server-template). Default none.
	ServerTemplates []ServerTemplate `toml:"server_template,omitempty"`
	// Servers are the brokers ([[backend.server]]). With Discovery they are kept as written,
	// next to the discovered ones.
	Servers []Server `toml:"server"`
}

// ServerTemplate is a DNS name whose A/AAAA records are servers of a backend: the addresses it
// resolves to fill the slots Prefix1..PrefixCount, an address keeping its slot while the name
// still resolves to it.
type ServerTemplate struct {
	// Prefix names the servers: Prefix1, Prefix2, … Required; no server of the backend may
	// have one of these names.
	Prefix string `toml:"prefix"`
	// Count is the number of slots, 1..MaxTemplateCount: addresses beyond it are not used.
	// Required.
	Count int `toml:"count"`
	// Address is host:port; the host is resolved (an IP address is a single server). Required.
	Address string `toml:"address"`
	// ResolveInterval is the time between two resolutions; > 0. Default 10s (HAProxy's hold
	// valid).
	ResolveInterval time.Duration `toml:"resolve_interval"`
	// ResolveTimeout bounds one resolution; > 0. Default 1s.
	ResolveTimeout time.Duration `toml:"resolve_timeout"`
	// Nameservers are the DNS servers asked (host:port, IP addresses), in order; none means
	// the system resolver. Default none.
	Nameservers []string `toml:"nameservers,omitempty"`
	// Weight, Backup, MaxConnections and CheckPort are those of every server of the template,
	// as for [[backend.server]]. Defaults 1, false, 0, 0.
	Weight         int  `toml:"weight"`
	Backup         bool `toml:"backup"`
	MaxConnections int  `toml:"max_connections"`
	CheckPort      int  `toml:"check_port"`
}

// Server returns the server of t in slot i (1-based) at addr, with the derived defaults a
// [[backend.server]] of b would get.
func (t ServerTemplate) Server(b Backend, i int, addr string) Server {
	s := DefaultServer()
	s.Name, s.Address = fmt.Sprintf("%s%d", t.Prefix, i), addr
	s.Weight, s.Backup, s.MaxConnections, s.CheckPort = t.Weight, t.Backup, t.MaxConnections, t.CheckPort
	s.CheckSendProxy = b.SendProxy != "" && s.CheckPort == 0
	return s
}

// Discovery configures reading a backend's servers from a RabbitMQ cluster's management API:
// every member node listed by GET /api/nodes becomes a server named after the node, at the
// address of its AMQP listener (from /api/overview's listeners).
type Discovery struct {
	// Management is the base URL of a management API of the cluster (the seed), such as
	// "http://rabbit1:15672"; http or https, with an optional path prefix and no user info.
	// When it does not answer, the other known members' APIs are asked. Required.
	Management string `toml:"management"`
	// Interval is the time between two reads of the member list; > 0. Default 30s.
	Interval time.Duration `toml:"interval"`
	// Timeout bounds one request to one management API; > 0. Default 5s.
	Timeout time.Duration `toml:"timeout"`
	// User is the management API user; "" means the health check's username and password.
	// Default "".
	User string `toml:"user,omitempty"`
	// Password is User's password. When PasswordEnv is set, the loaded Password is the value
	// of that environment variable. Default "".
	Password string `toml:"password,omitempty,unless=password_env"`
	// PasswordEnv names an environment variable holding User's password. Default "".
	PasswordEnv string `toml:"password_env,omitempty"`
}

// HealthCheck configures the active checks of a backend's servers.
type HealthCheck struct {
	// Type is amqp (full handshake), amqp-probe (protocol header up to
	// Connection.Start), tcp (connect only), http (an HTTP request, for
	// what is not AMQP, such as the management UI) or none. Default "amqp".
	Type string `toml:"type"`
	// Interval is the time between checks of a server that is up.
	// Default 2s.
	Interval time.Duration `toml:"interval"`
	// FastInterval is the time between checks while a state change is
	// pending. Default 500ms.
	FastInterval time.Duration `toml:"fast_interval"`
	// DownInterval is the time between checks of a server that is down.
	// Default 2s.
	DownInterval time.Duration `toml:"down_interval"`
	// Timeout bounds one check; must be > 0 unless Type is none. Default 1s.
	Timeout time.Duration `toml:"timeout"`
	// Rise is the number of consecutive passed checks that bring a server
	// up; at least 1. Default 2.
	Rise int `toml:"rise"`
	// Fall is the number of consecutive failed checks that bring a server
	// down; at least 1. Default 3.
	Fall int `toml:"fall"`
	// VHost is the virtual host the amqp check opens. Default "/".
	VHost string `toml:"vhost"`
	// Username for the amqp check and the management API. Default "guest".
	Username string `toml:"username"`
	// Password for the amqp check and the management API. When PasswordEnv
	// is set, the loaded Password is the value of that environment variable.
	// Default "guest".
	Password string `toml:"password,unless=password_env"`
	// PasswordEnv names an environment variable holding the password, so
	// that it need not be written in the file. Default "" (use Password).
	PasswordEnv string `toml:"password_env,omitempty"`
	// Management, when set, also reads the broker's management API.
	// Default nil (not used).
	Management *Management `toml:"management,inline"`
	// TCPCheck is a script of steps run after the connection is made, only
	// with Type "tcp" (HAProxy's tcp-check rules); all must pass. Default
	// none: the check is the connection alone.
	TCPCheck []TCPCheckStep `toml:"tcp_check,inline"`
	// HTTP is the request and the expected response of the check, only
	// with Type "http" (HAProxy's option httpchk and http-check). Default
	// nil: GET / passing on a 2xx or 3xx status.
	HTTP *HTTPCheck `toml:"http,inline"`
}

// HTTPCheck is the request of an http health check and how its response
// is judged. The request is HTTP/1.1 with Connection: close, sent over the
// check's connection: to the check port, after the PROXY header when the
// checks send one, and in TLS when the server's checks speak TLS (then it
// is HTTPS).
type HTTPCheck struct {
	// Method of the request. Default "GET".
	Method string `toml:"method"`
	// Path is the request target, sent as written, escapes kept
	// ("/api/aliveness-test/%2F"). Default "/".
	Path string `toml:"path"`
	// Host is the Host header. Default "": the address checked.
	Host string `toml:"host,omitempty"`
	// Headers are more request headers, such as Authorization; Host,
	// Connection, Content-Length and Transfer-Encoding are the check's own.
	// Default none.
	Headers map[string]string `toml:"headers,omitempty"`
	// Match is how the response is judged: status (its code is one of the
	// codes and ranges Pattern lists, "200" or "200-299,304"), rstatus (its
	// code matches the regular expression Pattern), string (its body
	// contains Pattern) or rstring (its body matches the regular expression
	// Pattern); a body match ignores the status, as in HAProxy. Default "":
	// a 2xx or 3xx status passes.
	Match string `toml:"match,omitempty"`
	// Pattern is what Match looks for; required with Match.
	Pattern string `toml:"pattern,omitempty"`
	// Negate makes the check pass when Pattern does not match, and fail
	// when it does (HAProxy's http-check expect !). Default false.
	Negate bool `toml:"negate,omitempty"`
}

// TCPCheckStep is one step of a tcp check script.
type TCPCheckStep struct {
	// Action is connect (only as the first step; the connection is made
	// anyway), send (Data is text), send-binary (Data is hex) or expect.
	// Required.
	Action string `toml:"action"`
	// Data is what send or send-binary writes.
	Data string `toml:"data,omitempty"`
	// Match is how expect compares what the server sent: string (contains
	// Pattern), binary (contains the bytes Pattern gives in hex), rstring
	// (matches the regular expression Pattern) or rbinary (the hex of what
	// was received matches the regular expression Pattern).
	Match string `toml:"match,omitempty"`
	// Pattern is what expect looks for; required with expect.
	Pattern string `toml:"pattern,omitempty"`
	// Negate makes expect pass when Pattern is not found.
	Negate bool `toml:"negate,omitempty"`
}

// Management configures reading a broker's HTTP management API.
type Management struct {
	// Port of the management API on the server's host. Default 15672.
	Port int `toml:"port"`
	// Alarms reads /api/health/checks/local-alarms and reports resource
	// alarms (memory, disk) on the status page. Default false.
	Alarms bool `toml:"alarms"`
	// EjectOnAlarm takes a server out of rotation while it has an alarm.
	// Default false.
	EjectOnAlarm bool `toml:"eject_on_alarm"`
}

// Rebalance configures the closing of surplus sessions when a backend's
// sessions are spread unevenly over its servers (after a server comes back
// or joins, or its weight rises). A session is closed by asking its broker,
// through the management API of [backend.health_check] management, to close
// the connection, so the client gets a Connection.Close 320 and reconnects
// through amqplb.
type Rebalance struct {
	// Enabled rebalances on its own; without it only POST
	// /api/v1/backends/{b}/rebalance does. Default false.
	Enabled bool `toml:"enabled"`
	// Tolerance: a server is closed down to ceil((1 + tolerance) × its
	// weighted fair share), never lower; at least 0. Default 0.10.
	Tolerance float64 `toml:"tolerance"`
	// Rate is the most closes per unit of time, per backend: "N/s", "N/m"
	// or "N/h" with N > 0 (see ParseRate). Default "2/s".
	Rate string `toml:"rate"`
	// MinAge: a session younger than this is never closed. Default 60s.
	MinAge time.Duration `toml:"min_age"`
}

// ParseRate reads a rebalance rate, "N/s", "N/m" or "N/h" (N a positive
// number; "/min" and "/sec" also do), and returns it per second.
func ParseRate(s string) (float64, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("invalid rate %q (write a count per unit, e.g. \"2/s\", \"30/m\")", s)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("invalid rate %q: the count must be a number above 0", s)
	}
	switch strings.TrimSpace(unit) {
	case "s", "sec":
		return n, nil
	case "m", "min":
		return n / 60, nil
	case "h":
		return n / 3600, nil
	}
	return 0, fmt.Errorf("invalid rate %q: the unit must be s, m or h", s)
}

// Server is one broker of a backend.
type Server struct {
	// Name identifies the server within its backend; required, unique there.
	Name string `toml:"name"`
	// Address is host:port; host names are re-resolved. Required.
	Address string `toml:"address"`
	// Weight is the share of new connections, 0..256; 0 means the server
	// gets no new connections. Default 1.
	Weight int `toml:"weight"`
	// Backup servers are used only when no non-backup server is up.
	// Default false.
	Backup bool `toml:"backup"`
	// MaxConnections caps the connections to this server; 0 means no cap.
	// Default 0.
	MaxConnections int `toml:"max_connections"`
	// CheckPort is the port health checks connect to instead of the one in
	// Address (HAProxy's port); 0 means Address's. Default 0.
	CheckPort int `toml:"check_port"`
	// ManagementPort is the port of this server's management API, on the
	// host of its check address, when it is not the backend's
	// health_check.management port (nodes sharing a host, NodePorts); 0
	// means the backend's. Used only with health_check.management. Default 0.
	ManagementPort int `toml:"management_port,omitempty"`
	// SendProxy overrides the backend's send_proxy for this server: "v1",
	// "v2", or "none"; "" means the backend's (HAProxy sets send-proxy per
	// server). Default "".
	SendProxy string `toml:"send_proxy,omitempty"`
	// TLS, when set, speaks TLS to this server (AMQPS). Default nil (plain
	// TCP).
	TLS *ServerTLS `toml:"tls,inline"`
	// CheckTLS: health checks speak TLS, with the settings of TLS, which
	// it needs (HAProxy's check-ssl, no-check-ssl). Default, when the key
	// is not written: true when TLS is set and CheckPort is 0 (checks go
	// where the traffic goes, the way it goes, as in HAProxy), else false.
	CheckTLS bool `toml:"check_tls"`
	// CheckSendProxy: health checks send the PROXY header, in the version
	// the server's traffic gets (ServerSendProxy), which it needs (HAProxy's
	// check-send-proxy). Default, when the key is not written: true when
	// the server's traffic gets one and CheckPort is 0, else false.
	CheckSendProxy bool `toml:"check_send_proxy"`
	// Agent, when set, also asks an agent on the server's host for the
	// server's weight and state (HAProxy's agent-check). Default nil (none).
	Agent *Agent `toml:"agent,inline"`
}

// Agent configures a server's agent check: a TCP service that answers
// one line ("up", "drain", "75%", ...) which amqplb applies next to the
// health checks, as HAProxy does.
type Agent struct {
	// Port of the agent; required, 1..65535 (HAProxy's agent-port).
	Port int `toml:"port"`
	// Address is the agent's host; "" means the host of the server's
	// address (HAProxy's agent-addr). Default "".
	Address string `toml:"address"`
	// Interval is the time between two questions to the agent
	// (HAProxy's agent-inter). Default 2s.
	Interval time.Duration `toml:"interval"`
	// Send is written to the agent once connected (HAProxy's agent-send);
	// "" sends nothing. Default "".
	Send string `toml:"send"`
}

// ServerTLS configures TLS to a broker; file names are PEM files.
type ServerTLS struct {
	// Verify is required (the server's certificate must chain to CA and be
	// for ServerName), chain (it must chain to CA, whatever name it is for:
	// what HAProxy's verify required checks without sni or verifyhost) or
	// none. Default "required".
	Verify string `toml:"verify"`
	// CA is the bundle the server's certificate is verified against; ""
	// means the system's CA pool. Default "".
	CA string `toml:"ca"`
	// ServerName is sent as SNI and is the name the certificate must be
	// for; "" means the host of the server's address. Default "".
	ServerName string `toml:"server_name"`
	// Cert is a client certificate chain to present, with the key when Key
	// is "". Default "" (none).
	Cert string `toml:"cert"`
	// Key is the client certificate's private key; "" means it is in the
	// Cert file. Default "".
	Key string `toml:"key"`
}

// Stats is a read-only HTTP listener serving amqplb's status page, its
// backends API and its metrics, as HAProxy's stats and Prometheus exporter
// sections do (the admin server, [admin], keeps the mutating API).
type Stats struct {
	// Name identifies the listener in messages; required, unique.
	Name string `toml:"name"`
	// Bind is the host:port to listen on; required.
	Bind string `toml:"bind"`
	// URI is the path of the status page; "" serves no status page.
	// Default "/".
	URI string `toml:"uri"`
	// Auth are the "user:password" pairs allowed in with HTTP basic
	// authentication; none means no authentication. Default none.
	Auth []string `toml:"auth"`
	// Realm is the basic-authentication realm. Default "HAProxy Statistics".
	Realm string `toml:"realm"`
	// Refresh is how often the status page reloads itself; 0 means the
	// page's own default. Default 0.
	Refresh time.Duration `toml:"refresh"`
	// HideVersion leaves amqplb's version off the status page. Default
	// false.
	HideVersion bool `toml:"hide_version"`
	// Metrics is the path of the Prometheus metrics; "" serves none.
	// Default "".
	Metrics string `toml:"metrics"`
	// Admin turns on the status page's ready, drain, maint and
	// close-sessions buttons for whoever passes auth (HAProxy's stats admin
	// if TRUE). Default false: read-only.
	Admin bool `toml:"admin"`
}

// DefaultConfig returns a Config with every documented default and no
// frontends or backends.
func DefaultConfig() *Config {
	c := &Config{}
	c.setDefaults()
	return c
}

// DefaultFrontend returns a Frontend with every documented default.
func DefaultFrontend() Frontend {
	var f Frontend
	f.setDefaults()
	return f
}

// DefaultBackend returns a Backend with every documented default, its
// health check included, and no servers.
func DefaultBackend() Backend {
	var b Backend
	b.setDefaults()
	return b
}

// DefaultHealthCheck returns a HealthCheck with every documented default.
func DefaultHealthCheck() HealthCheck {
	var h HealthCheck
	h.setDefaults()
	return h
}

// DefaultManagement returns a Management with every documented default.
func DefaultManagement() Management {
	var m Management
	m.setDefaults()
	return m
}

// DefaultRebalance returns a Rebalance with every documented default.
func DefaultRebalance() Rebalance {
	var r Rebalance
	r.setDefaults()
	return r
}

// DefaultDiscovery returns a Discovery with every documented default.
func DefaultDiscovery() Discovery {
	var d Discovery
	d.setDefaults()
	return d
}

// DefaultStats returns a Stats with every documented default.
func DefaultStats() Stats {
	var s Stats
	s.setDefaults()
	return s
}

// DefaultServer returns a Server with every documented default.
func DefaultServer() Server {
	var s Server
	s.setDefaults()
	return s
}

// defaulter is implemented by the types whose zero value is not their
// default; the decoder calls it on every value it creates, before filling
// in the keys the file writes.
type defaulter interface{ setDefaults() }

func (c *Config) setDefaults() {
	c.Global = Global{
		MaxConnections: DefaultMaxConnections,
		DrainTimeout:   DefaultDrainTimeout,
		LogLevel:       DefaultLogLevel,
		LogFormat:      DefaultLogFormat,
		AccessLog:      DefaultAccessLog,
	}
	c.Admin = Admin{Listen: DefaultAdminListen, VHostLabels: DefaultVHostLabels, SocketLevel: DefaultSocketLevel}
}

func (f *Frontend) setDefaults() { *f = Frontend{Mode: DefaultMode} }

func (t *TLS) setDefaults() { *t = TLS{Verify: DefaultTLSVerify} }

func (l *LogTarget) setDefaults() {
	*l = LogTarget{Facility: DefaultLogFacility, Level: DefaultLogTargetLevel}
}

func (s *ServerTLS) setDefaults() { *s = ServerTLS{Verify: DefaultServerTLSVerify} }

func (s *Stats) setDefaults() { *s = Stats{URI: DefaultStatsURI, Realm: DefaultRealm} }

func (b *Backend) setDefaults() {
	*b = Backend{
		Balance:        DefaultBalance,
		ConnectTimeout: DefaultConnectTimeout,
		Retries:        DefaultRetries,
		Redispatch:     DefaultRedispatch,
		TCPKeepalive:   DefaultTCPKeepalive,
		OnMarkedDown:   DefaultOnMarkedDown,
		OnMarkedUp:     DefaultOnMarkedUp,
	}
	b.HealthCheck.setDefaults()
}

func (h *HealthCheck) setDefaults() {
	*h = HealthCheck{
		Type:         DefaultCheckType,
		Interval:     DefaultCheckInterval,
		FastInterval: DefaultCheckFastInterval,
		DownInterval: DefaultCheckDownInterval,
		Timeout:      DefaultCheckTimeout,
		Rise:         DefaultCheckRise,
		Fall:         DefaultCheckFall,
		VHost:        DefaultCheckVHost,
		Username:     DefaultCheckUsername,
		Password:     DefaultCheckPassword,
	}
}

func (m *Management) setDefaults() { *m = Management{Port: DefaultManagementPort} }

func (h *HTTPCheck) setDefaults() {
	*h = HTTPCheck{Method: DefaultHTTPCheckMethod, Path: DefaultHTTPCheckPath}
}

// DefaultHTTPCheck returns an HTTPCheck with every documented default.
func DefaultHTTPCheck() HTTPCheck {
	var h HTTPCheck
	h.setDefaults()
	return h
}

func (s *Server) setDefaults() { *s = Server{Weight: DefaultWeight} }

func (a *Agent) setDefaults() { *a = Agent{Interval: DefaultAgentInterval} }

func (r *Rebalance) setDefaults() {
	*r = Rebalance{Tolerance: DefaultRebalanceTolerance, Rate: DefaultRebalanceRate, MinAge: DefaultRebalanceMinAge}
}

func (t *ServerTemplate) setDefaults() {
	*t = ServerTemplate{ResolveInterval: DefaultResolveInterval, ResolveTimeout: DefaultResolveTimeout, Weight: DefaultWeight}
}

// DefaultServerTemplate returns a ServerTemplate with every documented default.
func DefaultServerTemplate() ServerTemplate {
	var t ServerTemplate
	t.setDefaults()
	return t
}

func (d *Discovery) setDefaults() {
	*d = Discovery{Interval: DefaultDiscoveryInterval, Timeout: DefaultDiscoveryTimeout}
}

func (r *TCPRule) setDefaults() { *r = TCPRule{Layer: DefaultRuleLayer} }

// TCPRules returns the rules of f.TCPRequest whose Layer is layer
// (RuleLayerConnection or RuleLayerContent), in order; a rule with no
// Layer, as only a Config built in code has, is a connection rule. Each
// layer's list is evaluated on its own (see Frontend.TCPRequest).
func (f *Frontend) TCPRules(layer string) []TCPRule {
	var out []TCPRule
	for _, r := range f.TCPRequest {
		l := r.Layer
		if l == "" {
			l = RuleLayerConnection
		}
		if l == layer {
			out = append(out, r)
		}
	}
	return out
}

// setDerivedDefaults gives the keys whose default depends on other keys
// their value, for each such key that lines (see keyLines) says the file
// does not write.
func (c *Config) setDerivedDefaults(lines map[string]int) {
	for i := range c.Backends {
		b := &c.Backends[i]
		for j := range b.Servers {
			s := &b.Servers[j]
			spath := fmt.Sprintf("backend.%d.server.%d", i, j)
			if _, ok := lines[spath+".check_tls"]; !ok {
				s.CheckTLS = s.TLS != nil && s.CheckPort == 0
			}
			if _, ok := lines[spath+".check_send_proxy"]; !ok {
				s.CheckSendProxy = b.ServerSendProxy(*s) != "" && s.CheckPort == 0
			}
		}
	}
}

// ServerSendProxy returns the PROXY header version written to server s of b: its own send_proxy
// ("none" is none), else the backend's: "", "v1" or "v2".
func (b *Backend) ServerSendProxy(s Server) string {
	switch s.SendProxy {
	case "":
		return b.SendProxy
	case "none":
		return ""
	}
	return s.SendProxy
}
