package proxy

import "encoding/binary"

// frameTracker follows the frame boundaries of one direction of an AMQP session from the bytes
// the relay moves, without holding them: a graceful close (closeGracefully) must put its
// Connection.Close (0-9-1) or close performative (1.0) between two frames, never inside one. It
// reads each frame's header and skips its body, so it costs a few operations a frame; the relay
// splices no further than the end of the current frame, so that every header passes here.
//
// Both handshakes end on a frame boundary in both directions, so the relay starts its trackers
// there.
type frameTracker struct {
	hdrLen int     // 7 (0-9-1: type, channel, size) or 8 (1.0: size, doff, type, channel)
	hdr    [8]byte // the header read so far
	hdrN   int
	rest   int64 // bytes of the current frame after its header still to come
	bad    bool  // the bytes are not frames (a 1.0 size below 8): boundaries are unknown
}

// newFrameTracker returns the tracker for a session speaking protocol (ProtoAMQP091 or
// ProtoAMQP10), or nil for anything else (TCP mode): such a session cannot be closed gracefully.
func newFrameTracker(protocol string) *frameTracker {
	switch protocol {
	case ProtoAMQP091:
		return &frameTracker{hdrLen: 7}
	case ProtoAMQP10:
		return &frameTracker{hdrLen: 8}
	}
	return nil
}

// advance follows p, the next bytes of the stream.
func (t *frameTracker) advance(p []byte) {
	for len(p) > 0 && !t.bad {
		if t.rest > 0 {
			n := min(int64(len(p)), t.rest)
			t.rest -= n
			p = p[n:]
			continue
		}
		n := copy(t.hdr[t.hdrN:t.hdrLen], p)
		t.hdrN += n
		p = p[n:]
		if t.hdrN < t.hdrLen {
			return
		}
		t.hdrN = 0
		if t.hdrLen == 7 {
			t.rest = int64(binary.BigEndian.Uint32(t.hdr[3:7])) + 1 // the payload and the frame-end octet
			continue
		}
		size := int64(binary.BigEndian.Uint32(t.hdr[0:4]))
		if size < 8 {
			t.bad = true
			return
		}
		t.rest = size - 8
	}
}

// skip follows n bytes that were moved without being seen (spliced); n must not pass the end
// of the current frame's body (see body).
func (t *frameTracker) skip(n int64) { t.rest -= n }

// body returns how many bytes of the current frame's body are still to come: what may be moved
// unseen. 0 means the next byte belongs to a header.
func (t *frameTracker) body() int64 { return t.rest }

// atBoundary reports whether the bytes so far end exactly after a whole frame.
func (t *frameTracker) atBoundary() bool { return !t.bad && t.hdrN == 0 && t.rest == 0 }

// toBoundary returns how many bytes may be read without passing the next frame boundary: the
// rest of the current frame's body, or the missing part of its header (after which more is
// known). 0 at a boundary.
func (t *frameTracker) toBoundary() int64 {
	if t.rest > 0 {
		return t.rest
	}
	if t.hdrN > 0 {
		return int64(t.hdrLen - t.hdrN)
	}
	return 0
}
