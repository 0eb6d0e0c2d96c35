package forward

import (
	"io"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A request body too large to read whole (over 64 KB) goes from the client
// to the backend through a pipe, with splice(2), and so does an answer's
// body past the 64 KB the reader holds: the kernel moves the pages, where
// a read and a write copied every byte into the router and out again
// (bench/run shard, put-256KB and get-1MB).

// pipeSize is the capacity a pipe is asked for: a quarter of a megabyte
// moves in one call each way where the default 64 KB took four.
const pipeSize = 256 << 10

// pipe is a kernel pipe that holds nothing between uses, with the state
// of the move it serves: here rather than captured by the callbacks given
// to the connections' RawConns, which would cost allocations per body.
type pipe struct {
	r, w    int
	size    int // its capacity
	cleanup runtime.Cleanup

	want       int  // bytes to move into the pipe in this call
	in         int  // bytes in the pipe
	eof        bool // src closed its side
	errno      syscall.Errno
	fill, dump func(fd uintptr) bool
}

// pipes keeps empty pipes for the next body; a pipe the pool drops is
// closed by its cleanup.
var pipes = sync.Pool{New: func() any {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return nil
	}
	p := &pipe{r: fds[0], w: fds[1], size: 64 << 10}
	if n, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize); err == nil {
		p.size = n
	}
	p.fill, p.dump = p.fillPipe, p.dumpPipe
	p.cleanup = runtime.AddCleanup(p, closePipe, fds)
	return p
}}

func closePipe(fds [2]int) {
	syscall.Close(fds[0])
	syscall.Close(fds[1])
}

// spliceBody moves n bytes of a body from the connection src to dst,
// calling left with what is still to be read from src each time some is
// read (before it goes on, as streamBody counts). ok is false, and nothing
// moved, where either is not a raw socket. rerr is src's side failing,
// werr dst's.
func spliceBody(dst, src io.ReadWriter, n int64, left func(int64)) (ok bool, rerr, werr error) {
	d, ok1 := dst.(*sysConn)
	s, ok2 := src.(*sysConn)
	if !ok1 || !ok2 {
		return false, nil, nil
	}
	sp, _ := pipes.Get().(*pipe)
	if sp == nil {
		return false, nil, nil
	}
	sp.in, sp.eof = 0, false
	for n > 0 {
		// The pipe is empty here, so EAGAIN can only mean the socket has
		// nothing yet: the poller's wait is for the socket.
		sp.want, sp.errno = int(min(n, int64(sp.size))), 0
		if err := s.raw.Read(sp.fill); err != nil || sp.errno != 0 || sp.eof {
			if err == nil && sp.errno != 0 {
				_, err = s.result("splice", 0, nil, sp.errno)
			}
			if err == nil {
				err = io.EOF
			}
			return true, sp.discard(err), nil
		}
		n -= int64(sp.in)
		left(n)
		sp.errno = 0
		if err := d.raw.Write(sp.dump); err != nil || sp.errno != 0 {
			if err == nil {
				_, err = d.result("splice", 0, nil, sp.errno)
			}
			return true, nil, sp.discard(err)
		}
	}
	pipes.Put(sp)
	return true, nil, nil
}

// discard drops a pipe that may hold bytes, and returns err.
func (sp *pipe) discard(err error) error {
	if sp.in == 0 {
		pipes.Put(sp)
	} else {
		sp.cleanup.Stop()
		closePipe([2]int{sp.r, sp.w})
	}
	return err
}

// fillPipe moves up to want bytes from the socket fd into the empty pipe.
func (sp *pipe) fillPipe(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall6(unix.SYS_SPLICE, fd, 0, uintptr(sp.w), 0, uintptr(sp.want), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			sp.in, sp.eof = int(r), r == 0
		default:
			sp.errno = e
		}
		return true
	}
}

// dumpPipe moves what the pipe holds to the socket fd.
func (sp *pipe) dumpPipe(fd uintptr) bool {
	for sp.in > 0 {
		r, _, e := syscall.RawSyscall6(unix.SYS_SPLICE, uintptr(sp.r), 0, fd, 0, uintptr(sp.in), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch e {
		case 0:
			sp.in -= int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the socket is full: wait until it takes more
		default:
			sp.errno = e
			return true
		}
	}
	return true
}
