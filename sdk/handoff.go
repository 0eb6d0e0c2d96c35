package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/patterns"
)

// A pod's holder (the pause role) may keep the pod's listening socket: it
// listens on KILN_ADDR and hands the socket to every program container of
// the pod that asks at KILN_LISTEN_FROM, over a unix socket, as SCM_RIGHTS.
// A program that exits and is started again gets the same socket back, and
// the connections that came meanwhile are waiting in its queue.

// hold is the pause role: it keeps the pod's socket when asked to, and
// waits for ctx to end.
func hold(ctx context.Context) error {
	addr, from := os.Getenv(patterns.EnvAddr), os.Getenv(patterns.EnvListenFrom)
	if addr == "" || from == "" {
		<-ctx.Done()
		return nil
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer tcp.Close()
	f, err := tcp.(*net.TCPListener).File()
	if err != nil {
		return err
	}
	defer f.Close()
	unix, err := net.Listen("unix", from)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", patterns.EnvListenFrom, from, err)
	}
	go func() {
		<-ctx.Done()
		unix.Close()
	}()
	rights := syscall.UnixRights(int(f.Fd()))
	for {
		c, err := unix.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.(*net.UnixConn).WriteMsgUnix([]byte{0}, rights, nil)
		c.Close()
	}
}

// handedListener asks the pod's holder at from for the pod's socket,
// waiting up to 10 s for the holder to be there.
func handedListener(from string) (net.Listener, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := receiveListener(from)
		if err == nil || time.Now().After(deadline) {
			if err != nil {
				err = fmt.Errorf("%s=%s: no socket from the pod's holder: %w", patterns.EnvListenFrom, from, err)
			}
			return ln, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func receiveListener(from string) (net.Listener, error) {
	c, err := net.Dial("unix", from)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf, oob := make([]byte, 1), make([]byte, syscall.CmsgSpace(4))
	_, oobn, _, _, err := c.(*net.UnixConn).ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("the holder sent no socket")
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.New("the holder sent no socket")
	}
	f := os.NewFile(uintptr(fds[0]), "kiln-listener")
	defer f.Close()
	return net.FileListener(f)
}
