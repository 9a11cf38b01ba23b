package amqpwire

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// SASLUser returns the user name a Connection.Start-Ok's SASL response carries, and never the
// password: for PLAIN ("authzid NUL authcid NUL password", RFC 4616) the authentication
// identity; for AMQPLAIN (a field table without its length prefix) the LOGIN field. Other
// mechanisms (EXTERNAL, whose identity is the TLS client certificate's, ANONYMOUS, or one this
// package does not know) return "" and no error. A response that does not parse as its
// mechanism says is an error wrapping ErrMalformed.
func SASLUser(mechanism, response string) (string, error) {
	switch strings.ToUpper(mechanism) {
	case "PLAIN":
		user, _, ok := ParsePlainResponse(response)
		if !ok {
			return "", fmt.Errorf("%w: PLAIN response without its two NUL separators", ErrMalformed)
		}
		return user, nil
	case "AMQPLAIN":
		// The response is a table's content: prefix its length to decode it as one.
		buf := make([]byte, 4, 4+len(response))
		binary.BigEndian.PutUint32(buf, uint32(len(response)))
		d := decoder{buf: append(buf, response...)}
		t := d.table(0)
		if d.err != nil {
			return "", fmt.Errorf("AMQPLAIN response: %w", d.err)
		}
		switch login := t["LOGIN"].(type) {
		case string:
			return login, nil
		case []byte:
			return string(login), nil
		case nil:
			return "", nil
		default:
			return "", fmt.Errorf("%w: AMQPLAIN LOGIN is a %T, not a string", ErrMalformed, login)
		}
	}
	return "", nil
}
