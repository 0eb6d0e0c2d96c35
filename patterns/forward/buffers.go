package forward

import (
	"bufio"
	"io"
	"sync"
)

// bufferPool reuses the proxy's copy buffers instead of allocating 32 KiB
// per request.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}}
}

func (bp *bufferPool) Get() []byte  { return *bp.p.Get().(*[]byte) }
func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }

// The buffers of an exchange: the backend reader and the client writer
// carry answers, the backend writer requests. Connections hold them only
// during an exchange, so their size costs idle connections nothing.
//
// Sizes by measurement (bench/run shard, router CPU per request, 4 KB each
// before): a loopback write costs about as much for 4 KB as for 64 KB, so
// a 64 KB reader cut it for answers of 4 KB, 64 KB and 1 MB from 82, 310
// and 1880 µs to about 50, 90 and 560; 32 KB gave 107 and 596, 16 KB 123
// and 828. The client writer's size hardly matters past 16 KB: answers are
// written from the reader's buffer.
const (
	answerSize = 64 << 10
	// Request bodies up to this size, a body buffer's, are read whole
	// before they are sent (readBody); larger ones stream.
	bufferedBody = answerSize
	clientSize   = 16 << 10
	requestSize  = 4 << 10
	// A client connection's read buffer, which holds a request's head: a
	// head that does not fit goes to net/http.
	clientReadSize = 4 << 10
)

var (
	answerReaders  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, answerSize) }}
	answerWriters  = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, clientSize) }}
	requestWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, requestSize) }}
	// A connection takes its read buffer for life, but gives it back when
	// it ends: a client that opens a connection per request otherwise
	// costs the router 4 KB of garbage per request, two thirds of the
	// lane's, and the collections that go with it.
	clientReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientReadSize) }}
)

func getReader(p *sync.Pool, r io.Reader) *bufio.Reader {
	b := p.Get().(*bufio.Reader)
	b.Reset(r)
	return b
}

func getWriter(p *sync.Pool, w io.Writer) *bufio.Writer {
	b := p.Get().(*bufio.Writer)
	b.Reset(w)
	return b
}
