package forward

import (
	"bytes"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// writev goes on where a full socket stopped it: a head and a body of
// several MB, to a reader that takes them slowly, arrive whole and in
// order, and so do writes of one part alone.
func TestSysConnWritevSendsBothPartsWholeAndInOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var all bytes.Buffer
		buf := make([]byte, 3000)
		for i := 0; ; i++ {
			n, err := c.Read(buf)
			all.Write(buf[:n])
			if err != nil {
				break
			}
			if i%100 == 0 {
				time.Sleep(time.Millisecond) // let the writer's socket fill
			}
		}
		got <- all.Bytes()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetWriteBuffer(4096)
	sc, ok := newSysConn(c).(*sysConn)
	if !ok {
		t.Fatal("a TCP connection has no raw system calls")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	part := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var want bytes.Buffer
	for _, p := range [][2][]byte{
		{part(300), part(1 << 20)},
		{part(3 << 20), part(5)},
		{nil, part(70 << 10)},
		{part(70 << 10), nil},
		{nil, nil},
	} {
		n, err := sc.writev(p[0], p[1])
		if err != nil || n != len(p[0])+len(p[1]) {
			t.Fatalf("writev of %d and %d bytes: %d, %v", len(p[0]), len(p[1]), n, err)
		}
		want.Write(p[0])
		want.Write(p[1])
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the reader got %d bytes, not the %d written in order", len(b), want.Len())
	}
	if _, err := sc.writev([]byte("x"), []byte("y")); err == nil {
		t.Error("writev on a closed connection did not fail")
	}
}
