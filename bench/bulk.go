package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// Bulk measures a target's raw TCP throughput, without a broker: the target forwards to a sink
// the bench runs itself on loopback (StartSink), and Streams connections through it write as
// fast as they can. It gives a proxy's own overhead: "direct" is the sink itself.
//
// A proxy in front of the sink must pass bytes through untouched: an amqplb frontend in mode
// "tcp" (mode "amqp" waits for the broker's Connection.Start, which a sink does not send) with
// health check type "tcp" or "none", HAProxy in "mode tcp" with a plain TCP check.
//
// Every byte is accounted for: each stream starts with a 16-octet header and writes Size-octet
// chunks stamped with their sequence number; when it half-closes after Duration, the sink
// answers with the number of octets it received and how many chunks came out of order, and a
// mismatch fails the round.
//
// One round measures each stream count in turn (Counts, or 1, 2, 4, ... Streams), so figures
// carry the count as a suffix: gbps_total_4 is the total over 4 streams, gbps_stream_4 the
// median stream's rate, bytes_verified_4 the octets the sink confirmed. With the target's
// process in PIDs, cpu_ms_per_gb_4 is the CPU time (user and system, all threads, from
// /proc/PID/stat) that process spent per GB moved: a proxy's cost per byte.
type Bulk struct {
	// Streams is the largest number of parallel connections; default 1.
	Streams int
	// Counts lists the stream counts to measure; nil means StreamCounts(Streams).
	Counts []int
	// Duration is how long each stream count writes; default 5s.
	Duration time.Duration
	// Sink is the address the sink listens on (the caller starts it once with StartSink and
	// points the targets at it). When set, Run first checks the sink answers there, so a sink
	// that is not running is not blamed on the target.
	Sink string
	// Size is the octets of each write, at least 64; default 64 KiB.
	Size int
	// PIDs maps a target's name to the process that forwards its streams (Linux only).
	PIDs map[string]int
}

// Limits and defaults of Bulk.
const (
	bulkMinChunk     = 64
	bulkMaxChunk     = 16 << 20
	bulkDefaultChunk = 64 << 10
	bulkDialTimeout  = 5 * time.Second
	bulkAckTimeout   = 30 * time.Second // for the sink's count, after the last write
)

// bulkMagic starts every bulk stream, followed by the chunk size (uint32, big-endian).
const bulkMagic = "AMQPLB-BULK\x00"

// StreamCounts returns 1, 2, 4, ... up to n, and n itself: the stream counts of a bulk round.
func StreamCounts(n int) []int {
	n = max(n, 1)
	var out []int
	for c := 1; c < n; c *= 2 {
		out = append(out, c)
	}
	return append(out, n)
}

// Name returns "bulk".
func (b Bulk) Name() string { return "bulk" }

func (b Bulk) counts() []int {
	if len(b.Counts) > 0 {
		return b.Counts
	}
	return StreamCounts(b.Streams)
}

func (b Bulk) size() int { return positiveOr(b.Size, bulkDefaultChunk) }

// Validate reports settings no run can use.
func (b Bulk) Validate() error {
	if size := b.size(); size < bulkMinChunk || size > bulkMaxChunk {
		return fmt.Errorf("bulk: size %d outside [%d, %d]", size, bulkMinChunk, bulkMaxChunk)
	}
	for _, n := range b.counts() {
		if n < 1 {
			return fmt.Errorf("bulk: stream count %d < 1", n)
		}
	}
	return nil
}

// Run measures t with each stream count in turn. A target that refuses the connections is
// reported as an UnreachableError; a stream the sink did not fully acknowledge fails the round.
func (b Bulk) Run(ctx context.Context, t Target, progress io.Writer) (Figures, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	size := b.size()
	if b.Sink != "" {
		c, err := net.DialTimeout("tcp", b.Sink, bulkDialTimeout)
		if err != nil {
			return nil, fmt.Errorf("bulk: the sink is not listening at %s (StartSink starts it): %w", b.Sink, err)
		}
		_ = c.Close()
	}
	var figs Figures
	pid := b.PIDs[t.Name]
	for _, n := range b.counts() {
		var cpu0 time.Duration
		if pid > 0 {
			var err error
			if cpu0, err = processCPU(pid); err != nil {
				return nil, fmt.Errorf("bulk %s: %w", t.Name, err)
			}
		}
		res, err := b.runStreams(ctx, t, n, size)
		if err != nil {
			return nil, err
		}
		if pid > 0 {
			cpu1, err := processCPU(pid)
			if err != nil {
				return nil, fmt.Errorf("bulk %s: %w", t.Name, err)
			}
			if res.bytes > 0 {
				figs = append(figs, Figure{Name: fmt.Sprintf("cpu_ms_per_gb_%d", n), Unit: "ms/GB",
					Value: float64(cpu1-cpu0) / float64(time.Millisecond) / (float64(res.bytes) / 1e9)})
			}
		}
		fmt.Fprintf(progress, "  %s bulk %d stream(s): %.2f Gbit/s total, %.2f Gbit/s median stream, %d octets verified\n",
			t.Name, n, res.total, res.median, res.bytes)
		figs = append(figs,
			Figure{Name: fmt.Sprintf("gbps_total_%d", n), Unit: "Gbit/s", Value: res.total, Higher: true},
			Figure{Name: fmt.Sprintf("gbps_stream_%d", n), Unit: "Gbit/s", Value: res.median, Higher: true},
			Figure{Name: fmt.Sprintf("bytes_verified_%d", n), Unit: "B", Value: float64(res.bytes), Higher: true},
		)
	}
	return figs, nil
}

// bulkResult is one stream count's measurement.
type bulkResult struct {
	total, median float64 // Gbit/s
	bytes         int64
}

// runStreams runs n parallel streams through t for the Duration.
func (b Bulk) runStreams(ctx context.Context, t Target, n, size int) (bulkResult, error) {
	conns := make([]*net.TCPConn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	d := net.Dialer{Timeout: bulkDialTimeout}
	hdr := make([]byte, len(bulkMagic)+4)
	copy(hdr, bulkMagic)
	binary.BigEndian.PutUint32(hdr[len(bulkMagic):], uint32(size))
	for range n {
		c, err := d.DialContext(ctx, "tcp", t.Addr)
		if err != nil {
			if ctx.Err() != nil {
				return bulkResult{}, ctx.Err()
			}
			return bulkResult{}, &UnreachableError{Target: t, Err: err}
		}
		tc := c.(*net.TCPConn)
		conns = append(conns, tc)
		if _, err := tc.Write(hdr); err != nil {
			return bulkResult{}, fmt.Errorf("bulk %s: write header: %w", t.Name, err)
		}
	}
	// Cancelling ctx ends every stream through its deadline.
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			_ = c.SetDeadline(time.Now())
		}
	})
	defer stop()

	type streamResult struct {
		bytes   int64
		elapsed time.Duration
		err     error
	}
	results := make([]streamResult, n)
	start := time.Now()
	end := start.Add(positiveOr(b.Duration, 5*time.Second))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			r := &results[i]
			r.bytes, r.err = bulkStream(c, size, end)
			r.elapsed = time.Since(start)
			if r.err != nil {
				r.err = fmt.Errorf("bulk %s stream %d: %w", t.Name, i+1, r.err)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return bulkResult{}, err
	}
	var res bulkResult
	var longest time.Duration
	rates := make([]float64, 0, n)
	var errs []error
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		res.bytes += r.bytes
		longest = max(longest, r.elapsed)
		rates = append(rates, gbps(r.bytes, r.elapsed))
	}
	if len(errs) > 0 {
		return bulkResult{}, errors.Join(errs...)
	}
	slices.Sort(rates)
	res.median = rates[(len(rates)-1)/2]
	res.total = gbps(res.bytes, longest)
	return res, nil
}

// gbps is octets over d in Gbit/s.
func gbps(octets int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(octets) * 8 / d.Seconds() / 1e9
}

// bulkStream writes stamped chunks on c until end, half-closes and waits for the sink's count,
// which must match. It returns the octets written (after the header).
func bulkStream(c *net.TCPConn, size int, end time.Time) (int64, error) {
	buf := make([]byte, size)
	var seq uint64
	var sent int64
	for time.Now().Before(end) {
		binary.BigEndian.PutUint64(buf, seq)
		if _, err := c.Write(buf); err != nil {
			return sent, fmt.Errorf("write after %d octets: %w", sent, err)
		}
		seq++
		sent += int64(size)
	}
	if err := c.CloseWrite(); err != nil {
		return sent, fmt.Errorf("half-close: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(bulkAckTimeout))
	var ack [16]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return sent, fmt.Errorf("no count from the sink after %d octets (is the target forwarding, untouched, to the sink?): %w", sent, err)
	}
	got, bad := int64(binary.BigEndian.Uint64(ack[:8])), binary.BigEndian.Uint64(ack[8:])
	if got != sent || bad != 0 {
		return sent, fmt.Errorf("sent %d octets, the sink received %d with %d chunks out of order", sent, got, bad)
	}
	return sent, nil
}

// StartSink starts the bulk sink on addr (host:port; port 0 picks one) and returns a function
// that stops it: it closes the listener and every connection and waits for them.
func StartSink(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bulk sink: %w", err)
	}
	return ServeSink(ln), nil
}

// ServeSink runs the bulk sink on ln (see StartSink), which it closes when stopped.
func ServeSink(ln net.Listener) (stop func()) {
	s := &bulkSink{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Go(s.accept)
	return s.stop
}

// bulkSink receives bulk streams, verifies their chunk stamps and answers with their count.
type bulkSink struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (s *bulkSink) accept() {
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds or the like: wait and carry on rather than stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			sinkStream(c)
		}()
	}
}

func (s *bulkSink) stop() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	_ = s.ln.Close()
	s.wg.Wait()
}

// sinkReadBuffer is the sink's read size per connection.
const sinkReadBuffer = 256 << 10

// sinkStream serves one bulk stream: the header, then chunks until the client half-closes,
// then the count. Connections that do not start with the header (a TCP health check, a
// stray client) are closed.
func sinkStream(c net.Conn) {
	var hdr [len(bulkMagic) + 4]byte
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, hdr[:]); err != nil || string(hdr[:len(bulkMagic)]) != bulkMagic {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	size := int(binary.BigEndian.Uint32(hdr[len(bulkMagic):]))
	if size < bulkMinChunk || size > bulkMaxChunk {
		return
	}
	v := chunkVerifier{size: size}
	buf := make([]byte, sinkReadBuffer)
	for {
		n, err := c.Read(buf)
		v.feed(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return
		}
	}
	var ack [16]byte
	binary.BigEndian.PutUint64(ack[:8], uint64(v.total))
	binary.BigEndian.PutUint64(ack[8:], v.bad+v.partial())
	if _, err := c.Write(ack[:]); err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	// Let the client read the count and close first.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Read(buf[:1])
}

// chunkVerifier checks the sequence stamps of a bulk stream as it arrives, in pieces of any
// size: one comparison per chunk, no copy of the data.
type chunkVerifier struct {
	size  int
	pos   int // octets of the current chunk seen
	seq   uint64
	stamp [8]byte
	total int64
	bad   uint64 // chunks whose stamp was not the next sequence number
}

func (v *chunkVerifier) feed(p []byte) {
	v.total += int64(len(p))
	for len(p) > 0 {
		if v.pos < len(v.stamp) {
			k := copy(v.stamp[v.pos:], p)
			v.pos += k
			p = p[k:]
			if v.pos == len(v.stamp) && binary.BigEndian.Uint64(v.stamp[:]) != v.seq {
				v.bad++
			}
		} else {
			k := min(v.size-v.pos, len(p))
			v.pos += k
			p = p[k:]
		}
		if v.pos == v.size {
			v.pos = 0
			v.seq++
		}
	}
}

// partial is 1 when the stream ended inside a chunk (octets were lost), else 0.
func (v *chunkVerifier) partial() uint64 {
	if v.pos != 0 {
		return 1
	}
	return 0
}
