package config

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestParseCondition(t *testing.T) {
	tests := []struct {
		in   string
		want Condition
		err  string
	}{
		{in: "lan", want: Condition{Or: [][]CondTerm{{{ACL: "lan"}}}}},
		{in: " lan  !blocked || admin ", want: Condition{Or: [][]CondTerm{{{ACL: "lan"}, {ACL: "blocked", Not: true}}, {{ACL: "admin"}}}}},
		{in: "a or b:c.d-e_f", want: Condition{Or: [][]CondTerm{{{ACL: "a"}}, {{ACL: "b:c.d-e_f"}}}}},
		{in: "", err: "empty condition"},
		{in: "|| a", err: `"||" has nothing before it (word 1)`},
		{in: "a ||", err: `condition ends with "||"`},
		{in: "a || || b", err: `"||" has nothing before it (word 3)`},
		{in: "!", err: `"" is not an ACL name (letters, digits and _ . : - only)`},
		{in: "{ src 10.0.0.0/8 }", err: `"{" is not an ACL name (letters, digits and _ . : - only)`},
	}
	for _, tt := range tests {
		got, err := ParseCondition(tt.in)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("ParseCondition(%q) error = %v, want %s", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || !reflect.DeepEqual(got, tt.want)):
			t.Errorf("ParseCondition(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		case tt.err == "" && got.String() == "":
			t.Errorf("ParseCondition(%q).String() is empty", tt.in)
		}
	}
}

func TestConditionMatch(t *testing.T) {
	acls := map[string]bool{"lan": true, "blocked": false, "admin": false}
	match := func(name string) bool { return acls[name] }
	tests := []struct {
		rule TCPRule
		want bool
	}{
		{TCPRule{Action: "reject"}, true},
		{TCPRule{Action: "reject", If: "lan"}, true},
		{TCPRule{Action: "reject", Unless: "lan"}, false},
		{TCPRule{Action: "reject", If: "lan blocked"}, false},
		{TCPRule{Action: "reject", If: "lan !blocked"}, true},
		{TCPRule{Action: "reject", If: "blocked || admin"}, false},
		{TCPRule{Action: "reject", Unless: "blocked || admin"}, true},
		{TCPRule{Action: "reject", If: "admin || lan !blocked"}, true},
	}
	for _, tt := range tests {
		c, err := tt.rule.Condition()
		if err != nil {
			t.Fatalf("%+v: %v", tt.rule, err)
		}
		if got := c.Match(match); got != tt.want {
			t.Errorf("%+v: Match = %v, want %v", tt.rule, got, tt.want)
		}
	}
	if _, err := (TCPRule{If: "a", Unless: "b"}).Condition(); err == nil {
		t.Errorf("a rule with if and unless has a condition")
	}
}

func TestParseACLEntry(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: "127.0.0.1", want: "127.0.0.1/32"},
		{in: "::1", want: "::1/128"},
		{in: "fd00::/8", want: "fd00::/8"},
		{in: "::ffff:10.0.0.1", want: "10.0.0.1/32"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "192.168.0.0/255.255.0.0", want: "192.168.0.0/16"},
		{in: "10.0.0.0/255.0.255.0", err: `"10.0.0.0/255.0.255.0": netmask 255.0.255.0 is not contiguous`},
		{in: "rabbit.local", err: `"rabbit.local" is not an IP address or CIDR prefix`},
		{in: "10.0.0.0/33", err: `"10.0.0.0/33" is not an IP address or CIDR prefix`},
	}
	for _, tt := range tests {
		got, err := ParseACLEntry(tt.in)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("ParseACLEntry(%q) error = %v, want %s", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != netip.MustParsePrefix(tt.want)):
			t.Errorf("ParseACLEntry(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestSyslogCodes(t *testing.T) {
	if n, ok := SyslogFacility("local0"); !ok || n != 16 {
		t.Errorf("SyslogFacility(local0) = %d, %v", n, ok)
	}
	if n, ok := SyslogFacility("auth2"); !ok || n != 10 {
		t.Errorf("SyslogFacility(auth2) = %d, %v", n, ok)
	}
	if n, ok := SyslogSeverity("notice"); !ok || n != 5 {
		t.Errorf("SyslogSeverity(notice) = %d, %v", n, ok)
	}
	if _, ok := SyslogSeverity("verbose"); ok {
		t.Errorf("SyslogSeverity(verbose) ok")
	}
}
