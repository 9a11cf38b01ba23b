package amqpwire

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// amqplain encodes an AMQPLAIN response: a field table's content without its length.
func amqplain(t testing.TB, fields Table) string {
	t.Helper()
	b, err := AppendMethod(nil, &ConnectionStartOk{ClientProperties: fields})
	if err != nil {
		t.Fatal(err)
	}
	n := binary.BigEndian.Uint32(b[4:8]) // after the method ids: the table's length
	return string(b[8 : 8+n])
}

func TestSASLUser(t *testing.T) {
	for _, tc := range []struct {
		mechanism, response, want string
		malformed                 bool
	}{
		{"PLAIN", PlainResponse("alice", "pw"), "alice", false},
		{"PLAIN", "admin\x00alice\x00pw", "alice", false},
		{"plain", "\x00\x00", "", false},
		{"PLAIN", "alice", "", true},
		{"PLAIN", "\x00alice", "", true},
		{"AMQPLAIN", amqplain(t, Table{"LOGIN": "bob", "PASSWORD": "pw"}), "bob", false},
		{"AMQPLAIN", amqplain(t, Table{"PASSWORD": "pw"}), "", false},
		{"AMQPLAIN", amqplain(t, Table{"LOGIN": int32(7)}), "", true},
		{"AMQPLAIN", "\x05LOGINS\x00\x00\x00\x09", "", true}, // a longstr overrunning the response
		{"EXTERNAL", "", "", false},
		{"ANONYMOUS", "trace", "", false},
	} {
		got, err := SASLUser(tc.mechanism, tc.response)
		if got != tc.want || (err != nil) != tc.malformed || err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("SASLUser(%q, %q) = %q, %v; want %q, malformed %v", tc.mechanism, tc.response, got, err, tc.want, tc.malformed)
		}
	}
}

// FuzzSASLUser: any response decodes without a panic, and the user is never the password.
func FuzzSASLUser(f *testing.F) {
	f.Add("PLAIN", PlainResponse("guest", "guest"))
	f.Add("AMQPLAIN", amqplain(f, Table{"LOGIN": "guest", "PASSWORD": "secret"}))
	f.Add("AMQPLAIN", "\x05LOGINS\xff\xff\xff\xff")
	f.Add("EXTERNAL", "")
	f.Fuzz(func(t *testing.T, mechanism, response string) {
		user, err := SASLUser(mechanism, response)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		if err == nil && strings.EqualFold(mechanism, "PLAIN") {
			_, pass, _ := ParsePlainResponse(response)
			if strings.Contains(user, "\x00") || user != "" && user == pass && !strings.Contains(response, user+"\x00"+pass) {
				t.Fatalf("user %q of %q", user, response)
			}
		}
	})
}
