package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects what is written to it; String may be called while a
// writer (an exec.Cmd's Stderr) is still writing.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
