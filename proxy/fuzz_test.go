package proxy

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/amqplb/amqplb/backend"
	"github.com/pires/go-proxyproto"
)

// FuzzReadProxyHeader feeds arbitrary bytes to the PROXY header reader of accept_proxy: it must
// not panic, must consume exactly the header (what follows stays for the AMQP gate), and the
// addresses it returns must announce the same addresses when sent on.
func FuzzReadProxyHeader(f *testing.F) {
	local, _ := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
	for _, seed := range []string{
		// The examples and layouts of haproxy.org/download/2.6/doc/proxy-protocol.txt.
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		"PROXY TCP6 2001:db8::1 ::1 56324 5672\r\nAMQP\x00\x00\x09\x01",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN ffff:f::f:ffff ffff:f::f:ffff 65535 65535\r\n",
		string(proxyproto.SIGV2) + "\x21\x11\x00\x0C\xC0\xA8\x00\x01\xC0\xA8\x00\x0B\xDC\x04\x01\xBB" + "AMQP\x00\x00\x09\x01",
		string(proxyproto.SIGV2) + "\x21\x21\x00\x24" + string(make([]byte, 32)) + "\x00\x01\x00\x02",
		string(local),
		string(proxyproto.SIGV2) + "\x20\x11\x00\x0C" + string(make([]byte, 12)),  // LOCAL with addresses
		string(proxyproto.SIGV2) + "\x21\x11\x00\x0F" + string(make([]byte, 15)),  // with a TLV's room
		string(proxyproto.SIGV2) + "\x21\x31\x00\xd8" + string(make([]byte, 216)), // AF_UNIX
		// Malformed.
		"PROXY TCP4 not-an-address\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 99999\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
		"PROXY " + string(bytes.Repeat([]byte("x"), 200)) + "\r\n",
		string(proxyproto.SIGV2) + "\x21\x11\x00\x05short",
		string(proxyproto.SIGV2) + "\x31\x11\x00\x0C",
		"AMQP\x00\x00\x09\x01",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), bufSize)
		src, dst, err := readProxyHeader(br)
		if err != nil {
			return
		}
		if src.IsValid() != dst.IsValid() {
			t.Fatalf("source %v and destination %v: one valid without the other", src, dst)
		}
		if src.Addr().Is4In6() || dst.Addr().Is4In6() {
			t.Fatalf("IPv4-mapped addresses are not unmapped: %v %v", src, dst)
		}
		// What follows the header is left for the next reader.
		rest, _ := io.ReadAll(br)
		if !bytes.HasSuffix(data, rest) {
			t.Fatalf("after the header %q remains, not a suffix of the input", rest)
		}
		if !src.IsValid() {
			return
		}
		// The addresses, sent on with send-proxy, read back the same.
		for _, v := range []int{1, 2} {
			h, err := backend.ProxyHeader(v, src, dst, nil, false)
			if err != nil {
				t.Fatalf("send-proxy v%d of %v -> %v: %v", v, src, dst, err)
			}
			s2, d2, err := readProxyHeader(bufio.NewReader(bytes.NewReader(h)))
			if err != nil || s2 != src || d2 != dst {
				t.Fatalf("send-proxy v%d of %v -> %v read back as %v -> %v (%v)", v, src, dst, s2, d2, err)
			}
		}
	})
}
