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

// waiter is one caller in the queue. granted receives one value when the
// line is handed to it; a waiter goes back to waiters with granted empty,
// so that queueing allocates nothing once the pool holds a few.
type waiter struct{ granted chan struct{} }

var waiters = sync.Pool{New: func() any { return &waiter{granted: make(chan struct{}, 1)} }}

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
	w := waiters.Get().(*waiter)
	l.queue = append(l.queue, w)
	l.mu.Unlock()
	select {
	case <-w.granted:
		waiters.Put(w)
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	for i, q := range l.queue {
		if q == w {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			l.mu.Unlock()
			waiters.Put(w)
			return ctx.Err()
		}
	}
	l.mu.Unlock()
	// The line was handed over as ctx ended (release sent under l.mu, so
	// the value is there): pass it on.
	<-w.granted
	waiters.Put(w)
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
	// Shift rather than reslice, so that the queue's array is reused.
	n := copy(l.queue, l.queue[1:])
	l.queue[n] = nil
	l.queue = l.queue[:n]
	w.granted <- struct{}{}
}

// waiting is the number of callers queued for the line.
func (l *lineLock) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}
