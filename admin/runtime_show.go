package admin

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/healthcheck"
)

// StatColumns are the columns of "show stat", HAProxy 2.6's in its order: the CSV that
// monitoring plugins and scripts parse by name. The columns after "-" are HAProxy's SSL, H2
// and H1 modules; amqplb leaves them, and every column it has no figure for, empty.
var StatColumns = strings.Split("pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"+
	"wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,"+
	"type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,"+
	"hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,"+
	"last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,"+
	"check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,"+
	"intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,"+
	"ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,"+
	"agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,"+
	"h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,"+
	"h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,"+
	"h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,"+
	"h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out", ",")

// ServersStateColumns are the columns of "show servers state" (format version 1), HAProxy
// 2.6's in its order.
var ServersStateColumns = strings.Fields("be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state " +
	"srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health " +
	"srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl " +
	"srv_check_port srv_check_addr srv_agent_addr srv_agent_port")

// Row types of show stat, and the bits of its type filter.
const (
	statFrontend = 0
	statBackend  = 1
	statServer   = 2
)

// statProxy is a proxy as HAProxy counts them: a frontend, a backend, or both under one name
// (what a listen section becomes), with the id "show stat" filters on.
type statProxy struct {
	iid      int
	name     string
	frontend *FrontendStats
	backend  *backend.Backend
}

// proxies lists the frontends in order, each merged with the backend of the same name, then
// the other backends, numbered from 2 as HAProxy 2.6 numbers the proxies of a configuration
// (its own CLI proxy has 1).
func (v *view) proxies() []statProxy {
	var out []statProxy
	byName := map[string]int{}
	for _, f := range v.frontends() {
		f := f
		byName[f.Name] = len(out)
		out = append(out, statProxy{name: f.Name, frontend: &f})
	}
	for _, b := range v.backends() {
		if b == nil {
			continue
		}
		if i, ok := byName[b.Name]; ok && out[i].backend == nil {
			out[i].backend = b
			continue
		}
		out = append(out, statProxy{name: b.Name, backend: b})
	}
	for i := range out {
		out[i].iid = i + 2
	}
	return out
}

// checkStatus maps a check to HAProxy's check_status name and its number in "show servers
// state" (HCHK_STATUS_*): amqplb's checks are layer 7 (an AMQP handshake) or layer 4.
func checkStatus(c *healthcheck.CheckResult) (string, int) {
	switch {
	case c == nil:
		return "INI", 1
	case c.OK:
		return "L7OK", 15
	case c.Kind == healthcheck.FailTimeout:
		return "L4TOUT", 7
	case c.Kind == healthcheck.FailRefused || c.Kind == healthcheck.FailReset:
		return "L4CON", 8
	}
	return "L7STS", 17
}

// serverStatus is a server's status column: UP, DOWN, DRAIN or MAINT.
func serverStatus(s *backend.Server) string {
	switch s.State() {
	case backend.StateDown:
		return "DOWN"
	case backend.StateDrain:
		return "DRAIN"
	case backend.StateMaint:
		return "MAINT"
	}
	return "UP"
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

// statRows returns the rows of "show stat" as maps by column: FRONTEND, the servers, BACKEND
// for each proxy, filtered as "show stat IID TYPE SID" and the no-maint and up options do.
func (v *view) statRows(iid, types, sid int, upOnly, noMaint bool) []map[string]string {
	var rows []map[string]string
	pid := "1"
	for _, px := range v.proxies() {
		if iid != -1 && px.iid != iid {
			continue
		}
		if f := px.frontend; f != nil && types&(1<<statFrontend) != 0 {
			rows = append(rows, map[string]string{
				"pxname": px.name, "svname": "FRONTEND", "scur": strconv.Itoa(f.Active), "stot": u64(f.Total),
				"dreq": u64(f.Refused["denied"]), "status": "OPEN", "pid": pid, "iid": strconv.Itoa(px.iid), "sid": "0",
				"type": strconv.Itoa(statFrontend), "mode": "tcp", "conn_tot": u64(f.Total),
			})
		}
		b := px.backend
		if b == nil {
			continue
		}
		var active, backup, up, weight int
		var scur int64
		var stot, bin, bout, econ uint64
		for i, s := range b.Servers {
			if s == nil {
				continue
			}
			st := s.State()
			if st == backend.StateUp {
				up++
				weight += s.EffectiveWeight()
				if s.Backup() {
					backup++
				} else {
					active++
				}
			}
			scur += s.ActiveConnections()
			stot += s.TotalConnections()
			bin += s.BytesToServer()
			bout += s.BytesToClient()
			econ += s.ConnectErrors()
			if types&(1<<statServer) == 0 || sid != -1 && sid != i+1 ||
				upOnly && st != backend.StateUp || noMaint && st == backend.StateMaint {
				continue
			}
			chk := v.checks(s)
			name, _ := checkStatus(chk.Last)
			row := map[string]string{
				"pxname": px.name, "svname": s.Name(), "qcur": "0", "qmax": "0",
				"scur": strconv.FormatInt(s.ActiveConnections(), 10), "stot": u64(s.TotalConnections()),
				"bin": u64(s.BytesToServer()), "bout": u64(s.BytesToClient()), "econ": u64(s.ConnectErrors()),
				"status": serverStatus(s), "weight": strconv.Itoa(s.EffectiveWeight()), "act": "1", "bck": "0",
				"pid": pid, "iid": strconv.Itoa(px.iid), "sid": strconv.Itoa(i + 1), "lbtot": u64(s.TotalConnections()),
				"type": strconv.Itoa(statServer), "check_status": name, "addr": s.Address(), "mode": "tcp",
				"uweight": strconv.Itoa(s.Weight()),
			}
			if s.Backup() {
				row["act"], row["bck"] = "0", "1"
			}
			if m := s.MaxConnections(); m > 0 {
				row["slim"] = strconv.Itoa(m)
			}
			var fails uint64
			for _, n := range chk.Failures {
				fails += n
			}
			row["chkfail"] = u64(fails)
			row["chkdown"] = u64(s.Transitions(backend.StateDown))
			if c := chk.Last; c != nil {
				row["check_duration"] = strconv.FormatInt(c.Duration.Milliseconds(), 10)
				row["check_desc"] = c.Reason
				row["last_chk"] = c.Reason
				if c.Code != 0 {
					row["check_code"] = strconv.Itoa(c.Code)
				}
			}
			if a := chk.Agent; a != nil {
				// As HAProxy fills them: L7OK for an answer, L7STS for one that took the server
				// down, L4CON for an agent that could not be asked; the description is its line.
				row["agent_status"], row["agent_desc"] = "L7OK", a.Reply
				switch {
				case !a.OK:
					row["agent_status"], row["agent_desc"] = "L4CON", a.Error
				case !s.AgentHealthy():
					row["agent_status"] = "L7STS"
				}
				row["last_agt"] = row["agent_desc"]
				row["agent_duration"] = strconv.FormatInt(a.Duration.Milliseconds(), 10)
			}
			rows = append(rows, row)
		}
		if types&(1<<statBackend) != 0 {
			status := "UP"
			if up == 0 {
				status = "DOWN"
			}
			rows = append(rows, map[string]string{
				"pxname": px.name, "svname": "BACKEND", "qcur": "0", "qmax": "0", "scur": strconv.FormatInt(scur, 10),
				"stot": u64(stot), "bin": u64(bin), "bout": u64(bout), "econ": u64(econ), "status": status,
				"weight": strconv.Itoa(weight), "act": strconv.Itoa(active), "bck": strconv.Itoa(backup),
				"chkdown": "0", "pid": pid, "iid": strconv.Itoa(px.iid), "sid": "0", "lbtot": u64(stot),
				"type": strconv.Itoa(statBackend), "mode": "tcp", "uweight": strconv.Itoa(weight),
			})
		}
	}
	return rows
}

// csvField quotes a field for the CSV as HAProxy's csv_enc does: only when it has a comma, a
// quote or a line break.
func csvField(s string) string {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// cmdShowStat is "show stat [{IID|PROXY} TYPE SID] [no-maint|up]...". typed, json and desc
// are not supported, and say so.
func cmdShowStat(cs *cliSession, args []string, out *bytes.Buffer) {
	iid, types, sid := -1, -1, -1
	opts := args[2:]
	if len(args) >= 5 {
		// HAProxy takes a proxy name first, then a number (atoi: junk reads as 0).
		iid = 0
		for _, px := range cs.s.view.proxies() {
			if px.name == args[2] {
				iid = px.iid
			}
		}
		if iid == 0 {
			iid = atoi(args[2])
		}
		if iid == 0 {
			out.WriteString("No such proxy.\n")
			return
		}
		types, sid = atoi(args[3]), atoi(args[4])
		opts = args[5:]
	}
	if unsupportedFormat(opts, out) {
		return
	}
	upOnly, noMaint := slices.Contains(opts, "up"), slices.Contains(opts, "no-maint")
	out.WriteString("# " + strings.Join(StatColumns, ",") + ",\n")
	for _, row := range cs.s.view.statRows(iid, types, sid, upOnly, noMaint) {
		for _, c := range StatColumns {
			if c == "-" {
				out.WriteString("-,")
				continue
			}
			out.WriteString(csvField(row[c]) + ",")
		}
		out.WriteByte('\n')
	}
}

// unsupportedFormat answers, and reports, an output format amqplb does not write: a script
// that asked for typed or JSON output must not get CSV it would misread.
func unsupportedFormat(opts []string, out *bytes.Buffer) bool {
	for _, o := range opts {
		switch o {
		case "typed", "json", "desc", "float":
			fmt.Fprintf(out, "amqplb does not write the %s format: leave it out for the plain output.\n", o)
			return true
		}
	}
	return false
}

// atoi reads a leading number as C's atoi does: 0 when there is none.
func atoi(s string) int {
	n, _, _ := strtol(s)
	return int(max(min(n, 1<<31-1), -1<<31))
}

// cmdShowServersState is "show servers state [BACKEND]": format 1, as HAProxy writes it and
// reads it back from a server-state file.
func cmdShowServersState(cs *cliSession, args []string, out *bytes.Buffer) {
	want := arg(args, 3)
	var pxs []statProxy
	for _, px := range cs.s.view.proxies() {
		if px.backend != nil && (want == "" || px.name == want) {
			pxs = append(pxs, px)
		}
	}
	if want != "" && len(pxs) == 0 {
		out.WriteString("Can't find backend.\n")
		return
	}
	out.WriteString("1\n# " + strings.Join(ServersStateColumns, " ") + "\n")
	for _, px := range pxs {
		for i, s := range px.backend.Servers {
			if s == nil {
				continue
			}
			host, port := s.Address(), "0"
			if i := strings.LastIndexByte(host, ':'); i >= 0 {
				host, port = strings.Trim(host[:i], "[]"), host[i+1:]
			}
			op := 2 // SRV_ST_RUNNING
			if !s.Healthy() {
				op = 0 // SRV_ST_STOPPED
			}
			adm := 0
			switch s.Admin() {
			case backend.AdminMaint:
				adm = 0x01 // SRV_ADMF_FMAINT
			case backend.AdminDrain:
				adm = 0x08 // SRV_ADMF_FDRAIN
			}
			chk := cs.s.view.checks(s)
			_, status := checkStatus(chk.Last)
			result := 0 // CHK_RES_UNKNOWN
			if c := chk.Last; c != nil {
				result = 2 // CHK_RES_FAILED
				if c.OK {
					result = 3 // CHK_RES_PASSED
				}
			}
			ssl := 0
			if s.TLS() != nil {
				ssl = 1
			}
			checkPort := "0"
			if ca := s.CheckAddress(); ca != s.Address() {
				if j := strings.LastIndexByte(ca, ':'); j >= 0 {
					checkPort = ca[j+1:]
				}
			}
			fmt.Fprintf(out, "%d %s %d %s %s %d %d %d %d %d %d %d %d %d %d %d %d %s %s %s %d %s %s %s %d\n",
				px.iid, px.name, i+1, s.Name(), host, op, adm, s.Weight(), s.InitialWeight(), 0,
				status, result, 0, 0x06, 0, 0, 0, "-", port, "-", ssl, checkPort, "-", "-", 0)
		}
	}
}

// cmdShowInfo is "show info": the lines of HAProxy's that amqplb has a figure for, in its order.
func cmdShowInfo(cs *cliSession, args []string, out *bytes.Buffer) {
	if unsupportedFormat(args[2:], out) {
		return
	}
	v := cs.s.view
	var cur int
	var cum uint64
	for _, f := range v.frontends() {
		cur += f.Active
		cum += f.Total
	}
	up := time.Since(cs.s.start)
	secs := int64(up.Seconds())
	host, _ := os.Hostname()
	version := cmp.Or(v.version, "unknown")
	stopping := 0
	if cs.s.opts.Ready != nil && !cs.s.opts.Ready() {
		stopping = 1
	}
	for _, kv := range [][2]string{
		{"Name", "amqplb"},
		{"Version", version},
		{"Nbthread", strconv.Itoa(runtime.GOMAXPROCS(0))},
		{"Nbproc", "1"},
		{"Process_num", "1"},
		{"Pid", strconv.Itoa(os.Getpid())},
		{"Uptime", fmt.Sprintf("%dd %dh%02dm%02ds", secs/86400, secs/3600%24, secs/60%60, secs%60)},
		{"Uptime_sec", strconv.FormatInt(secs, 10)},
		{"CurrConns", strconv.Itoa(cur)},
		{"CumConns", u64(cum)},
		{"node", host},
		{"Stopping", strconv.Itoa(stopping)},
		{"Build info", version},
		{"Start_time_sec", strconv.FormatInt(cs.s.start.Unix(), 10)},
	} {
		out.WriteString(kv[0] + ": " + kv[1] + "\n")
	}
}

// cmdShowSess is "show sess [ID]": one line per session, HAProxy's first fields (id, proto,
// src, fe, be, srv, age) then what amqplb knows of the AMQP connection. Operator level, as in
// HAProxy: it shows client addresses and user names.
func cmdShowSess(cs *cliSession, args []string, out *bytes.Buffer) {
	if !cs.has(LevelOperator, out) {
		return
	}
	if cs.s.view.sessions == nil {
		return
	}
	var want uint64
	if a := arg(args, 2); a != "" && a != "all" {
		id, err := strconv.ParseUint(a, 0, 64)
		if err != nil {
			out.WriteString("Session not found.\n")
			return
		}
		want = id
	}
	ss := cs.s.view.sessions()
	slices.SortFunc(ss, func(a, b Session) int { return cmp.Compare(a.ID, b.ID) })
	now := time.Now()
	found := false
	for i := range ss {
		s := &ss[i]
		if want != 0 && s.ID != want {
			continue
		}
		found = true
		proto := "tcpv4"
		if s.Client.Addr().Is6() && !s.Client.Addr().Is4In6() {
			proto = "tcpv6"
		}
		srv := cmp.Or(s.Server, "<none>")
		fmt.Fprintf(out, "0x%x: proto=%s src=%s fe=%s be=%s srv=%s age=%s", s.ID, proto, addrString(s.Client),
			s.Frontend, cmp.Or(s.Backend, "<NONE>"), srv, haproxyAge(now.Sub(s.Since)))
		if s.Via.IsValid() {
			fmt.Fprintf(out, " via=%s", s.Via)
		}
		if s.Protocol != "" {
			fmt.Fprintf(out, " protocol=%s user=%s vhost=%s name=%s", s.Protocol, strconv.Quote(s.User),
				strconv.Quote(s.VHost), strconv.Quote(s.ConnectionName))
		}
		fmt.Fprintf(out, " bytes_in=%d bytes_out=%d\n", s.BytesToServer, s.BytesToClient)
	}
	if want != 0 && !found {
		out.WriteString("Session not found.\n")
	}
}

// haproxyAge writes a duration as HAProxy's human_time does: 45s, 3m12s, 2h5m, 1d3h.
func haproxyAge(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s/60%60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s/3600%24)
}
