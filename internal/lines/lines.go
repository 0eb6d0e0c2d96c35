// Package lines puts the output of many processes onto one writer, a whole
// line at a time, each line prefixed with its process's name, so that
// lines from two processes never interleave. The local and docker targets
// print their processes' logs through it.
package lines

import (
	"bytes"
	"io"
	"sync"
)

// Sync serialises writes onto W. The zero value is not usable: W must be
// set.
type Sync struct {
	mu sync.Mutex
	W  io.Writer
}

func (s *Sync) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.W.Write(b)
}

// Prefix writes each complete line to W with Prefix in front; a partial
// line waits for its end. W should be a Sync when several Prefixes share
// it, since each line is one Write.
type Prefix struct {
	Prefix string
	W      io.Writer
	buf    []byte
}

func (p *Prefix) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := make([]byte, 0, len(p.Prefix)+i+1)
		line = append(append(line, p.Prefix...), p.buf[:i+1]...)
		if _, err := p.W.Write(line); err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
