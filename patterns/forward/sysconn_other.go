//go:build !linux

package forward

import (
	"io"
	"net"
	"syscall"
)

// newSysConn is c itself: the raw system calls of sysconn_linux.go are
// measured and needed on Linux, where routers run in production. Without
// them a pooled connection cannot be looked at without waiting, so one the
// backend closed while idle shows only when a request fails on it.
func newSysConn(c net.Conn) io.ReadWriter { return c }

// reuseSysConn is c itself.
func reuseSysConn(_ io.ReadWriter, c net.Conn) io.ReadWriter { return c }

// dialControl does nothing where TCP_USER_TIMEOUT is not known.
func dialControl(network, address string, c syscall.RawConn) error { return nil }

// spliceBody moves nothing: streamBody reads and writes instead.
func spliceBody(dst, src io.ReadWriter, n int64, left func(int64)) (ok bool, rerr, werr error) {
	return false, nil, nil
}

// serverConn is c itself.
func serverConn(c net.Conn) net.Conn { return c }
