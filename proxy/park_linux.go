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

// fdOf runs fn with c's fd; false if c is closed.
func fdOf(c *net.TCPConn, fn func(fd int)) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	return raw.Control(func(fd uintptr) { fn(int(fd)) }) == nil
}

// dupFD returns a duplicate of c's file descriptor (close-on-exec). It refers to the same socket
// and shares its flags (non-blocking).
func dupFD(c *net.TCPConn) (int, error) {
	fd, err := -1, error(os.NewSyscallError("fcntl", syscall.EBADF))
	fdOf(c, func(s int) { fd, err = dup(s) })
	return fd, err
}

// dup returns a close-on-exec duplicate of fd.
func dup(fd int) (int, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("fcntl", err)
	}
	return d, nil
}

// add duplicates the session's two sockets into s.fds and registers the duplicates, each for
// one readiness event. The parked session then closes its Go connections (session.bare): the
// sockets live on in the duplicates, which the runtime's poller does not know, so a parked
// session holds no poll descriptor, no netFD and no cached addresses. s.mu is held.
func (p *epoller) add(s *session) error {
	var fds [2]int
	for i, c := range [2]*net.TCPConn{s.raw, s.upRaw} {
		fd, err := dupFD(c)
		if err == nil {
			ev := legEvent(s.id, i)
			if err = unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
				_ = unix.Close(fd)
				err = os.NewSyscallError("epoll_ctl", err)
			}
		}
		if err != nil {
			if i == 1 {
				_ = unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, fds[0], nil)
				_ = unix.Close(fds[0])
			}
			return err
		}
		fds[i] = fd
	}
	s.fds = [2]int32{int32(fds[0]), int32(fds[1])}
	return nil
}

// srcDst returns the source and destination fds of direction i (0: client to server) of a
// parked session.
func srcDst(s *session, i int) (src, dst int) {
	if i == 0 {
		return int(s.fds[0]), int(s.fds[1])
	}
	return int(s.fds[1]), int(s.fds[0])
}

func (p *epoller) rearm(s *session, i int) error {
	src, _ := srcDst(s, i)
	ev := legEvent(s.id, i)
	return unix.EpollCtl(p.fd, unix.EPOLL_CTL_MOD, src, &ev)
}

// restore makes Go connections of a parked session's sockets, from duplicates of its fds: the
// fds stay as they are (in the set) until release. On an error none is made, and the session can
// stay parked. s.mu is held.
func (p *epoller) restore(s *session) (client, server *net.TCPConn, err error) {
	if client, err = fileConn(int(s.fds[0])); err != nil {
		return nil, nil, err
	}
	if server, err = fileConn(int(s.fds[1])); err != nil {
		_ = client.Close()
		return nil, nil, err
	}
	return client, server, nil
}

// release takes a parked session's sockets out of the set and closes its fds (after restore,
// its Go connections hold the sockets; otherwise they close). s.mu is held.
func (p *epoller) release(s *session) {
	for _, fd := range s.fds {
		_ = unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, int(fd), nil)
		_ = unix.Close(int(fd))
	}
	s.fds = [2]int32{}
}

func (p *epoller) gone(s *session) (client, server bool) {
	fds := []unix.PollFd{{Fd: s.fds[0]}, {Fd: s.fds[1]}}
	if n, err := unix.Poll(fds, 0); err != nil || n == 0 {
		return false, false
	}
	const down = unix.POLLERR | unix.POLLHUP
	return fds[0].Revents&down != 0, fds[1].Revents&down != 0
}

// fileConn makes a *net.TCPConn of the socket fd, leaving fd open. net.FileConn makes its own
// duplicate of the *os.File's, which is itself a duplicate, closed here: if either cannot be
// made (out of file descriptors), fd is as it was. The first duplicate is made blocking (which
// fd shares) so that os.NewFile leaves it out of the runtime's poller, where it would be
// registered only to be taken out again by Close; net makes its own duplicate non-blocking,
// and with it fd. (Nothing reads fd meanwhile: its session is locked.) A fresh *net.TCPConn has
// Go's keep-alive, probe count included: the socket's count is kept.
func fileConn(fd int) (*net.TCPConn, error) {
	count, countErr := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	d, err := dup(fd)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(d, false); err != nil {
		_ = unix.Close(d)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(d), "")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		_ = unix.SetNonblock(fd, true) // the parker reads and writes it without waiting
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		_ = unix.SetNonblock(fd, true)
		return nil, fmt.Errorf("parked socket is a %T, not TCP", c)
	}
	if countErr == nil {
		fdOf(tc, func(s int) { _ = unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, count) })
	}
	return tc, nil
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
	src, dst := srcDst(s, i)
	q, err := unix.IoctlGetInt(src, unix.SIOCINQ)
	if err != nil || q <= 0 || q > parkedChunk {
		return false
	}
	n, rerr := 0, syscall.EINTR
	for rerr == syscall.EINTR {
		n, rerr = rawIO(syscall.SYS_READ, uintptr(src), p.buf[:q])
	}
	if rerr != 0 || n <= 0 {
		return false
	}
	out := p.buf[:n]
	if t := s.tracks[i]; t != nil {
		t.advance(out)
	}
	w := 0
	var werr syscall.Errno
	for w < len(out) {
		m, errno := rawIO(syscall.SYS_WRITE, uintptr(dst), out[w:])
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			werr = errno
			break
		}
		w += m
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
