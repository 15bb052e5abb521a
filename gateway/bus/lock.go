package bus

import (
	"context"
	"sync"
)

// lineLock is a FIFO lock: the line goes to waiters in the order they
// asked, and a waiter whose ctx ends leaves the queue without ever holding
// the line.
type lineLock struct {
	mu    sync.Mutex
	held  bool
	queue []*waiter
}

type waiter struct{ granted chan struct{} }

// acquire waits for the line. It returns ctx.Err() if ctx ends first.
func (l *lineLock) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	if !l.held && len(l.queue) == 0 {
		l.held = true
		l.mu.Unlock()
		return nil
	}
	w := &waiter{granted: make(chan struct{})}
	l.queue = append(l.queue, w)
	l.mu.Unlock()
	select {
	case <-w.granted:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	for i, q := range l.queue {
		if q == w {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			l.mu.Unlock()
			return ctx.Err()
		}
	}
	l.mu.Unlock()
	// The line was handed over as ctx ended: pass it on.
	l.release()
	return ctx.Err()
}

// release hands the line to the longest waiter, or frees it.
func (l *lineLock) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		l.held = false
		return
	}
	w := l.queue[0]
	l.queue[0] = nil
	l.queue = l.queue[1:]
	close(w.granted)
}

// waiting is the number of callers queued for the line.
func (l *lineLock) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}
