package relay

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// asyncHandler hands log records to a goroutine so that the loop thread never
// waits on stderr or a log file. A full queue drops the record and counts it:
// losing a log line is better than stalling every client.
type asyncHandler struct {
	next    slog.Handler
	q       *logQueue
	dropped *atomic.Uint64
}

type logEntry struct {
	h   slog.Handler
	rec slog.Record
}

type logQueue struct {
	ch   chan logEntry
	done sync.WaitGroup
	once sync.Once
}

func newLogQueue(size int) *logQueue {
	q := &logQueue{ch: make(chan logEntry, size)}
	q.done.Add(1)
	go func() {
		defer q.done.Done()
		for e := range q.ch {
			_ = e.h.Handle(context.Background(), e.rec)
		}
	}()
	return q
}

// close flushes what is queued and stops the writer goroutine.
func (q *logQueue) close() {
	q.once.Do(func() { close(q.ch); q.done.Wait() })
}

func (h *asyncHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *asyncHandler) Handle(_ context.Context, rec slog.Record) error {
	select {
	case h.q.ch <- logEntry{h: h.next, rec: rec.Clone()}:
	default:
		h.dropped.Add(1)
	}
	return nil
}

func (h *asyncHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &asyncHandler{next: h.next.WithAttrs(as), q: h.q, dropped: h.dropped}
}

func (h *asyncHandler) WithGroup(name string) slog.Handler {
	return &asyncHandler{next: h.next.WithGroup(name), q: h.q, dropped: h.dropped}
}
