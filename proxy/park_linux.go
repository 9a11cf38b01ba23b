//go:build linux

package proxy

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// epoller is the Linux poller of parked sessions: an epoll set of amqplb's own, one event per
// registration (EPOLLONESHOT), waited on through the runtime's own poller (the epoll fd is
// itself pollable), so that no thread blocks in epoll_wait.
type epoller struct {
	fd     int
	file   *os.File // owns fd
	rc     syscall.RawConn
	buf    []byte // relayChunk's, used only on the poll goroutine
	closed atomic.Bool
}

func newPoller() (poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	file := os.NewFile(uintptr(fd), "amqplb-parked")
	// Only a file in the runtime's poller takes deadlines: one that is not would make run
	// block a thread in epoll_wait forever (a sandbox whose kernel refuses nested epoll, say).
	if err := file.SetReadDeadline(time.Time{}); err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("epoll set not pollable: %w", err)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	return &epoller{fd: fd, file: file, rc: rc, buf: make([]byte, parkedChunk)}, nil
}

// legEvent is the epoll event of leg i of session id: the id and the leg in its 64 data bits.
func legEvent(id uint64, i int) unix.EpollEvent {
	data := id<<1 | uint64(i)
	return unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(data)), Pad: int32(uint32(data >> 32))}
}

// sockets returns the source and destination sockets of direction i (0: client to server).
func sockets(s *session, i int) (src, dst *net.TCPConn) {
	if i == 0 {
		return s.raw, s.upRaw
	}
	return s.upRaw, s.raw
}

// fdOf runs fn with c's fd; false if c is closed.
func fdOf(c *net.TCPConn, fn func(fd int)) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	return raw.Control(func(fd uintptr) { fn(int(fd)) }) == nil
}

// srcFD runs fn with the fd of direction i's source socket; false if it is closed.
func srcFD(s *session, i int, fn func(fd int)) bool {
	src, _ := sockets(s, i)
	return fdOf(src, fn)
}

func (p *epoller) add(s *session) error {
	for i := range s.legs {
		var err error
		if !srcFD(s, i, func(fd int) {
			ev := legEvent(s.id, i)
			err = unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, fd, &ev)
		}) {
			err = syscall.EBADF
		}
		if err != nil {
			if i == 1 {
				srcFD(s, 0, func(fd int) { _ = unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, fd, nil) })
			}
			return os.NewSyscallError("epoll_ctl", err)
		}
	}
	return nil
}

func (p *epoller) rearm(s *session, i int) error {
	var err error
	if !srcFD(s, i, func(fd int) {
		ev := legEvent(s.id, i)
		err = unix.EpollCtl(p.fd, unix.EPOLL_CTL_MOD, fd, &ev)
	}) {
		return syscall.EBADF
	}
	return err
}

// remove deletes both sockets from the set. It must come before they are closed: a closed fd's
// number may be reused by another parked session's socket. (A socket closed while registered
// leaves the set by itself.)
func (p *epoller) remove(s *session) {
	for i := range s.legs {
		srcFD(s, i, func(fd int) { _ = unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, fd, nil) })
	}
}

func (p *epoller) run(deliver func(id uint64, leg int)) error {
	events := make([]unix.EpollEvent, 128)
	for {
		err := p.rc.Read(func(fd uintptr) bool {
			for {
				n, err := unix.EpollWait(int(fd), events, 0)
				switch {
				case err == unix.EINTR:
					continue
				case err != nil || n == 0:
					return false // wait until the set has events again
				}
				for _, ev := range events[:n] {
					data := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
					deliver(data>>1, int(data&1))
				}
			}
		})
		if err != nil {
			if p.closed.Load() {
				return os.ErrClosed // RawConn.Read says "use of closed file", not os.ErrClosed
			}
			return err
		}
	}
}

func (p *epoller) close() {
	p.closed.Store(true)
	_ = p.file.Close()
}

// relayChunk moves what direction i's source has queued to its destination, when that is at
// most parkedChunk bytes and the destination takes it all at once: a heartbeat, a lone small
// message. It counts and frame-tracks the bytes as the relay does. Nothing queued (the event
// was the peer's FIN or an error), more than that, or a short write report false: the session
// goes back to its goroutines, a short write's rest kept for the relay to write first.
func (p *epoller) relayChunk(s *session, i int) bool {
	if len(s.pending[i]) > 0 {
		return false
	}
	src, dst := sockets(s, i)
	n := 0
	var rerr syscall.Errno
	if !fdOf(src, func(fd int) {
		q, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil || q <= 0 || q > parkedChunk {
			return
		}
		for {
			n, rerr = rawIO(syscall.SYS_READ, uintptr(fd), p.buf[:q])
			if rerr != syscall.EINTR {
				return
			}
		}
	}) || rerr != 0 || n <= 0 {
		return false
	}
	out := p.buf[:n]
	if t := s.tracks[i]; t != nil {
		t.advance(out)
	}
	w := 0
	var werr syscall.Errno
	if !fdOf(dst, func(fd int) {
		for w < len(out) {
			m, errno := rawIO(syscall.SYS_WRITE, uintptr(fd), out[w:])
			switch errno {
			case 0:
				w += m
				continue
			case syscall.EINTR:
				continue
			}
			werr = errno
			return
		}
	}) && werr == 0 {
		werr = syscall.EBADF
	}
	if w > 0 {
		if i == 0 {
			s.movedToServer(w)
		} else {
			s.movedToClient(w)
		}
	}
	if w < len(out) {
		// The relay writes the rest first when it runs again (or fails on it, as it would).
		s.pending[i] = append([]byte(nil), out[w:]...)
		return false
	}
	return werr == 0
}
