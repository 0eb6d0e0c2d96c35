package forward

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysConn reads and writes a TCP socket with raw system calls, through the
// poller like net.Conn. The difference is what the Go scheduler sees:
// net.Conn marks the thread as in a system call, and a loopback write —
// which runs the receiving end's TCP work too — often outlasts the
// scheduler's 20 µs tick, so sysmon hands the P to another thread: a futex
// wake-up and two context switches per request, for nothing, since a call
// on a non-blocking socket does not block (EAGAIN parks the goroutine in
// the poller, as net.Conn does). On a router's core that was a tenth of its
// CPU.
//
// The calls are the socket ones (recvfrom, sendto, sendmsg), not read and
// write, which go through the file layer first (fdget_pos, vfs_read,
// vfs_write): 1.7 of the 31.6 µs a small request cost the router in perf
// (bench/run shard, get-100B). MSG_NOSIGNAL gives a write to a peer that
// has gone EPIPE without a SIGPIPE for the runtime to catch.
type sysConn struct {
	net.Conn
	raw syscall.RawConn

	// The call in progress, here rather than captured by the callbacks
	// given to raw, which would cost an allocation per call.
	rbuf, wbuf      []byte
	wbuf2           []byte // written after wbuf, in the same call (writev)
	iov             [2]syscall.Iovec
	msg             syscall.Msghdr
	rn, wn          int
	rerrno, werrno  syscall.Errno
	peekOpen        bool
	readFn, writeFn func(fd uintptr) bool
	peekFn          func(fd uintptr) bool
	askFn           func(fd uintptr) bool
	asked           askStep // how far writevAwait's call went

	// waitDeadline, when set, is a read deadline that Read sets only once
	// it has to wait for the socket, and waited says it did: a client's
	// first request usually comes with its connection, and then costs the
	// runtime no timer to start and stop (laneConn.peekFirst).
	waitDeadline time.Duration
	waited       bool
}

// newSysConn returns c's raw reader and writer, or c itself when it has no
// file descriptor.
func newSysConn(c net.Conn) io.ReadWriter { return reuseSysConn(nil, c) }

// reuseSysConn is newSysConn(c), made of old when old is a sysConn that is
// done with its connection (see forget).
func reuseSysConn(old io.ReadWriter, c net.Conn) io.ReadWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s, ok := old.(*sysConn)
	if !ok {
		s = &sysConn{}
		s.readFn, s.writeFn, s.peekFn, s.askFn = s.read, s.write, s.peek, s.ask
	}
	s.Conn, s.raw = c, raw
	return s
}

// forget drops c's connection, which has ended.
func (c *sysConn) forget() { c.Conn, c.raw = nil, nil }

func (c *sysConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.raw.Read(c.readFn)
	c.rbuf = nil
	if err == nil && c.rerrno == 0 && c.rn == 0 {
		return 0, io.EOF
	}
	return c.result("read", c.rn, err, c.rerrno)
}

// read is one attempt; false means "wait in the poller, then again".
func (c *sysConn) read(fd uintptr) bool {
	p := c.rbuf
	for {
		r, _, e := syscall.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if c.waitDeadline > 0 {
				// Set between the attempt and the wait, so the wait sees it.
				c.Conn.SetReadDeadline(time.Now().Add(c.waitDeadline))
				c.waitDeadline, c.waited = 0, true
			}
			return false
		}
		if c.rerrno = e; e == 0 {
			c.rn = int(r)
		}
		return true
	}
}

// armWaitDeadline makes the next read that has to wait set a read deadline
// d from then; disarmWaitDeadline undoes that and reports whether it did.
func (c *sysConn) armWaitDeadline(d time.Duration) { c.waitDeadline, c.waited = d, false }

func (c *sysConn) disarmWaitDeadline() bool {
	set := c.waited
	c.waitDeadline, c.waited = 0, false
	return set
}

func (c *sysConn) Write(p []byte) (int, error) { return c.writev(p, nil) }

// writev writes a, then b, with one system call where the socket takes
// both: a request's head and the body read whole beside it leave as one
// segment, where two writes cost the router and the backend a second trip
// through TCP, and the backend a second read (bench/run shard, put-16KB).
func (c *sysConn) writev(a, b []byte) (int, error) {
	c.wbuf, c.wbuf2, c.wn, c.werrno = a, b, 0, 0
	err := c.raw.Write(c.writeFn)
	c.wbuf, c.wbuf2, c.iov, c.msg = nil, nil, [2]syscall.Iovec{}, syscall.Msghdr{}
	return c.result("write", c.wn, err, c.werrno)
}

// writevAwait writes a, then b, as writev does, and then waits for the
// socket to have something to read, without the read attempt a Read makes
// before it waits: the answer to a request just sent cannot be there
// before the request, and the attempt finds nothing (EAGAIN), 0.65 of the
// router's 5.3 system calls per request under load (bench/run shard,
// get-100B). The wait is in the same raw.Read as the write because each
// raw.Read forgets the readiness the poller saw before it (internal/poll's
// prepareRead): waiting in a Read of its own could miss an answer that
// came in between. The wait ends early on a deadline or a close, which the
// next Read reports; a stale readiness makes that Read try, find nothing,
// and wait as usual.
//
// Only for a connection on which nothing can come before the answer: a
// client may send its next request before its answer (pipelining), so
// client connections read as usual.
func (c *sysConn) writevAwait(a, b []byte) (int, error) {
	c.wbuf, c.wbuf2, c.wn, c.werrno, c.asked = a, b, 0, 0, askNothing
	c.raw.Read(c.askFn)
	var err error
	if c.asked == askNothing || c.asked == askPart {
		// The read side failed before the write (a read deadline past), or
		// the socket took part only and the rest waits for room: write as
		// writev does.
		err = c.raw.Write(c.writeFn)
	}
	c.wbuf, c.wbuf2, c.iov, c.msg = nil, nil, [2]syscall.Iovec{}, syscall.Msghdr{}
	return c.result("write", c.wn, err, c.werrno)
}

// askStep is how far a writevAwait went.
type askStep uint8

const (
	askNothing askStep = iota // not even the write: the read side failed first
	askWritten                // all of it; then it waited for the answer, or not
	askPart                   // what the socket took
)

// ask is writevAwait's call: the write, and then "wait in the poller",
// after which it is done. A write that lasted past answeredMeanwhile gets
// no wait: the next Read tries at once.
func (c *sysConn) ask(fd uintptr) bool {
	if c.asked != askNothing {
		return true
	}
	start := time.Now()
	if !c.write(fd) {
		c.asked = askPart
		return true
	}
	c.asked = askWritten
	return c.werrno != 0 || time.Since(start) > answeredMeanwhile
}

// answeredMeanwhile is how long a write of a request may last before the
// answer is likely there already: the write wakes a backend on the same
// core, which may run before the write returns, and answer (a loopback
// write of a small request takes a few µs, a small answer 20 to 30). With
// one client on one core that was most requests, and waiting for them
// in the poller cost more than the attempt it saved (bench/run shard,
// light). A backend on another core or host is never that quick.
const answeredMeanwhile = 12 * time.Microsecond

// write writes what the socket takes; false means "wait in the poller
// until it takes more, then again".
func (c *sysConn) write(fd uintptr) bool {
	a, b := c.wbuf, c.wbuf2
	for c.wn < len(a)+len(b) {
		var r uintptr
		var e syscall.Errno
		switch {
		case c.wn < len(a) && len(b) > 0:
			c.iov[0].Base, c.iov[1].Base = &a[c.wn], &b[0]
			c.iov[0].SetLen(len(a) - c.wn)
			c.iov[1].SetLen(len(b))
			c.msg.Iov, c.msg.Iovlen = &c.iov[0], 2
			r, _, e = syscall.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&c.msg)), unix.MSG_NOSIGNAL)
		default:
			var p []byte
			if c.wn < len(a) {
				p = a[c.wn:]
			} else {
				p = b[c.wn-len(a):]
			}
			r, _, e = syscall.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
		}
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// result is what Read or Write return: n, and the poller's error or the
// system call's as net.Conn would give them.
func (c *sysConn) result(op string, n int, err error, errno syscall.Errno) (int, error) {
	if err == nil && errno != 0 {
		err = os.NewSyscallError(op, errno)
	}
	if err != nil {
		return n, &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return n, nil
}

// peerClosed looks at the socket without waiting: whether the peer has
// closed it, or sent something, since the last read.
func (c *sysConn) peerClosed() bool {
	c.peekOpen = false
	c.raw.Read(c.peekFn)
	return !c.peekOpen
}

func (c *sysConn) peek(fd uintptr) bool {
	var b [1]byte
	_, _, e := syscall.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	c.peekOpen = e == syscall.EAGAIN
	return true
}

// backendUserTimeout bounds how long a backend connection may hold sent
// data that the backend's kernel never acknowledges: a backend cut off the
// network (a partition, a pod disconnected, a host gone) otherwise keeps a
// kept-alive connection looking open, and a request sent on it waits for
// ever. A backend that is slow to answer still acknowledges at once, so
// this never cuts a slow request short.
const backendUserTimeout = 5 * time.Second

// dialControl sets TCP_USER_TIMEOUT on each backend connection (Linux).
func dialControl(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(backendUserTimeout.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}

// tcpUserTimeout is TCP_USER_TIMEOUT from linux/tcp.h, which package
// syscall does not name.
const tcpUserTimeout = 0x12

// rawServerConn is an accepted connection that net/http serves, reading
// and writing through sysConn, so that a leaf's or a root's system calls do
// not wake sysmon either (see sysConn): on a core shared with other
// processes, those wake-ups were two of every three context switches of a
// leaf's request. A sysConn holds one call at a time each way; the locks
// keep the net.Conn promise of concurrent calls for hijacked connections.
type rawServerConn struct {
	*sysConn
	tcp    *net.TCPConn
	rl, wl sync.Mutex
}

// serverConn returns c reading and writing with raw system calls, when c
// is a TCP connection.
func serverConn(c net.Conn) net.Conn {
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	sc, ok := newSysConn(c).(*sysConn)
	if !ok {
		return c
	}
	return &rawServerConn{sysConn: sc, tcp: tcp}
}

func (c *rawServerConn) Read(p []byte) (int, error) {
	c.rl.Lock()
	defer c.rl.Unlock()
	return c.sysConn.Read(p)
}

func (c *rawServerConn) Write(p []byte) (int, error) {
	c.wl.Lock()
	defer c.wl.Unlock()
	return c.sysConn.Write(p)
}

// CloseWrite lets http.Server half-close the connection as it does a TCP one.
func (c *rawServerConn) CloseWrite() error { return c.tcp.CloseWrite() }

// ReadFrom keeps sendfile and splice for handlers that copy a file or a
// socket into their answer.
func (c *rawServerConn) ReadFrom(r io.Reader) (int64, error) {
	c.wl.Lock()
	defer c.wl.Unlock()
	return c.tcp.ReadFrom(r)
}
