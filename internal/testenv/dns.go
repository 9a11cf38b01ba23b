package testenv

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// DNS is a tiny authoritative DNS server on 127.0.0.1 (UDP) for tests: it answers A and AAAA
// questions for the names set with Set, NXDOMAIN for others. Stopped by t's cleanup.
type DNS struct {
	conn    net.PacketConn
	mu      sync.Mutex
	records map[string][]netip.Addr
	queries int
	done    chan struct{}
}

// StartDNS starts a DNS server on a free UDP port of 127.0.0.1.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &DNS{conn: c, records: map[string][]netip.Addr{}, done: make(chan struct{})}
	go d.serve()
	t.Cleanup(func() { c.Close(); <-d.done })
	return d
}

// Addr is the server's ip:port.
func (d *DNS) Addr() string { return d.conn.LocalAddr().String() }

// Set makes name (without the final dot; case-insensitive) resolve to addrs; none makes it
// exist with no address.
func (d *DNS) Set(name string, addrs ...netip.Addr) {
	d.mu.Lock()
	d.records[strings.ToLower(strings.TrimSuffix(name, "."))] = addrs
	d.mu.Unlock()
}

// Delete makes name unknown (NXDOMAIN).
func (d *DNS) Delete(name string) {
	d.mu.Lock()
	delete(d.records, strings.ToLower(strings.TrimSuffix(name, ".")))
	d.mu.Unlock()
}

// Queries is how many questions were answered.
func (d *DNS) Queries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries
}

func (d *DNS) serve() {
	defer close(d.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			d.conn.WriteTo(resp, from) //nolint:errcheck // a lost answer is retried by the client
		}
	}
}

// answer builds the response to one query, nil for a malformed one.
func (d *DNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	var labels []string
	i := 12
	for {
		if i >= len(q) {
			return nil
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	question := q[12 : i+4]
	d.mu.Lock()
	addrs, ok := d.records[strings.ToLower(strings.Join(labels, "."))]
	d.queries++
	d.mu.Unlock()
	resp := make([]byte, 12, 512)
	copy(resp, q[:2])
	flags := uint16(0x8400) | binary.BigEndian.Uint16(q[2:])&0x0100 // QR, AA, RD copied
	if !ok {
		flags |= 3 // NXDOMAIN
	}
	binary.BigEndian.PutUint16(resp[2:], flags)
	binary.BigEndian.PutUint16(resp[4:], 1)
	resp = append(resp, question...)
	var an uint16
	for _, a := range addrs {
		var rtype uint16
		switch {
		case qtype == 1 && a.Is4():
			rtype = 1
		case qtype == 28 && a.Is6() && !a.Is4In6():
			rtype = 28
		default:
			continue
		}
		raw := a.AsSlice()
		resp = append(resp, 0xc0, 12) // the question's name
		resp = binary.BigEndian.AppendUint16(resp, rtype)
		resp = binary.BigEndian.AppendUint16(resp, 1) // IN
		resp = binary.BigEndian.AppendUint32(resp, 1) // TTL
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(raw)))
		resp = append(resp, raw...)
		an++
	}
	binary.BigEndian.PutUint16(resp[6:], an)
	return resp
}
