package web

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"
)

// live is the fan-out of rendered view fragments to server-sent-event
// clients. Each view key ("area", "lot/SITE/LOT") has at most one poller,
// running while at least one client watches it: every interval it renders
// the fragment (one InfluxDB request) and, when the HTML changed, hands it
// to every subscriber. A hundred tablets on the area view cost InfluxDB
// what one does.
type live struct {
	every time.Duration
	log   *slog.Logger

	mu     sync.Mutex
	feeds  map[string]*feed
	closed bool
}

type feed struct {
	subs   map[chan []byte]struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func newLive(every time.Duration, log *slog.Logger) *live {
	return &live{every: every, log: log, feeds: map[string]*feed{}}
}

// subscribe returns a channel that receives key's fragment at once and
// then at every change, and a function that ends the subscription. The
// channel is closed when the subscription or the hub ends. A slow client
// skips fragments: it gets the newest, never a backlog.
func (l *live) subscribe(key string, render func(context.Context) ([]byte, error)) (<-chan []byte, func()) {
	ch := make(chan []byte, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		close(ch)
		return ch, func() {}
	}
	f := l.feeds[key]
	if f == nil {
		ctx, cancel := context.WithCancel(context.Background())
		f = &feed{subs: map[chan []byte]struct{}{}, cancel: cancel, done: make(chan struct{})}
		l.feeds[key] = f
		go l.poll(ctx, key, f, render)
	}
	f.subs[ch] = struct{}{}
	var once sync.Once
	return ch, func() { once.Do(func() { l.unsubscribe(key, f, ch) }) }
}

func (l *live) unsubscribe(key string, f *feed, ch chan []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := f.subs[ch]; !ok {
		return // closed by close()
	}
	delete(f.subs, ch)
	close(ch)
	if len(f.subs) == 0 {
		f.cancel()
		delete(l.feeds, key)
	}
}

// poll renders key every interval until ctx ends. The first fragment goes
// out at once, so a new subscriber of an existing feed waits at most one
// interval too: poll sends the newest fragment to subscribers that have
// not had one yet.
func (l *live) poll(ctx context.Context, key string, f *feed, render func(context.Context) ([]byte, error)) {
	defer close(f.done)
	var last []byte
	var lastErr string
	got := map[chan []byte]bool{}
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		b, err := render(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if err.Error() != lastErr { // once per kind of failure, not every second
				l.log.Warn("live view not updated", "view", key, "err", err)
			}
			lastErr = err.Error()
		} else {
			if lastErr != "" {
				l.log.Info("live view updated again", "view", key)
			}
			lastErr = ""
			changed := !bytes.Equal(b, last)
			last = b
			l.mu.Lock()
			for ch := range f.subs {
				if !changed && got[ch] {
					continue
				}
				got[ch] = true
				select { // replace an unread fragment with the newest
				case <-ch:
				default:
				}
				ch <- b
			}
			for ch := range got {
				if _, ok := f.subs[ch]; !ok {
					delete(got, ch)
				}
			}
			l.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// close ends every feed and subscription and waits for the pollers.
func (l *live) close() {
	l.mu.Lock()
	l.closed = true
	var dones []chan struct{}
	for key, f := range l.feeds {
		f.cancel()
		for ch := range f.subs {
			close(ch)
		}
		f.subs = nil
		dones = append(dones, f.done)
		delete(l.feeds, key)
	}
	l.mu.Unlock()
	for _, d := range dones {
		<-d
	}
}

// watching returns the number of feeds running (for tests and metrics).
func (l *live) watching() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.feeds)
}

// shared runs one call of fn at a time per key and hands its result to
// every caller that asked while it ran: a burst of page loads (a site
// office's tablets after a restart) costs InfluxDB one query.
type shared[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T]
}

type call[T any] struct {
	done    chan struct{}
	waiting int // callers sharing the call (for tests)
	v       T
	err     error
}

func (s *shared[T]) do(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]*call[T]{}
	}
	c, running := s.calls[key]
	if running {
		c.waiting++
	} else {
		c = &call[T]{done: make(chan struct{})}
		s.calls[key] = c
	}
	s.mu.Unlock()
	if !running {
		// The call outlives a caller that leaves: others may wait for it.
		c.v, c.err = fn(context.WithoutCancel(ctx))
		s.mu.Lock()
		delete(s.calls, key)
		s.mu.Unlock()
		close(c.done)
		return c.v, c.err
	}
	select {
	case <-c.done:
		return c.v, c.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
