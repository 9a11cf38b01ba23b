package proxy

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// A random stream of frames cut into random chunks: the tracker is at a boundary exactly
// where a frame ends, whatever the chunking, for 0-9-1 and 1.0 framing.
func TestFrameTrackerBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, proto := range []string{ProtoAMQP091, ProtoAMQP10} {
		for round := range 200 {
			var stream []byte
			ends := map[int]bool{0: true}
			for range 1 + rng.IntN(20) {
				body := make([]byte, rng.IntN(300))
				if proto == ProtoAMQP091 {
					h := []byte{1, 0, 1, 0, 0, 0, 0}
					binary.BigEndian.PutUint32(h[3:], uint32(len(body)))
					stream = append(append(append(stream, h...), body...), 0xCE)
				} else {
					h := []byte{0, 0, 0, 0, 2, 0, 0, 0}
					binary.BigEndian.PutUint32(h[0:], uint32(8+len(body)))
					stream = append(append(stream, h...), body...)
				}
				ends[len(stream)] = true
			}
			tr := newFrameTracker(proto)
			for pos := 0; pos < len(stream); {
				n := 1 + rng.IntN(64)
				if rng.IntN(4) == 0 && tr.body() > 0 {
					// Moved unseen, as a splice does: never past the body.
					k := min(int64(n), tr.body())
					tr.skip(k)
					pos += int(k)
				} else {
					n = min(n, len(stream)-pos)
					tr.advance(stream[pos : pos+n])
					pos += n
				}
				if got := tr.atBoundary(); got != ends[pos] {
					t.Fatalf("%s round %d: at %d atBoundary = %v, want %v", proto, round, pos, got, ends[pos])
				}
				if !ends[pos] && tr.toBoundary() <= 0 {
					t.Fatalf("%s round %d: at %d inside a frame, toBoundary %d", proto, round, pos, tr.toBoundary())
				}
			}
		}
	}
	if newFrameTracker("") != nil {
		t.Error("a TCP-mode session got a tracker")
	}
	bad := newFrameTracker(ProtoAMQP10)
	bad.advance([]byte{0, 0, 0, 3, 2, 0, 0, 0})
	if bad.atBoundary() {
		t.Error("a 1.0 frame of size 3 left the tracker at a boundary")
	}
}

// BenchmarkFrameTrackerSmallMessage: what following the frames costs the relay per 128-byte
// publish (method, content header and body frames, as one read delivers them).
func BenchmarkFrameTrackerSmallMessage(b *testing.B) {
	var msg []byte
	for _, size := range []int{40, 30, 128} {
		h := []byte{1, 0, 1, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(h[3:], uint32(size))
		msg = append(append(append(msg, h...), make([]byte, size)...), 0xCE)
	}
	tr := newFrameTracker(ProtoAMQP091)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		tr.advance(msg)
	}
	if !tr.atBoundary() {
		b.Fatal("not at a boundary")
	}
}
