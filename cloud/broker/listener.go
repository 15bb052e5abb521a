package broker

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// listener is a mochi listener (plain TCP, TLS or unix socket) that gives
// each new connection a limited time to complete its TLS handshake and send
// CONNECT. mochi sets the first read deadline only after CONNECT (from the
// keepalive), so without it a client that connects and stays silent would
// hold a connection and a goroutine for ever.
type listener struct {
	id      string
	network string // "tcp" or "unix"
	addr    string
	tls     *tls.Config // nil: plain
	limit   time.Duration
	// srv disconnects the listener's clients on Close. mochi's own
	// close function (Clients.GetByListener) takes the clients' read lock
	// twice, which deadlocks when a client is being detached at the same
	// moment (a writer waits between the two read locks).
	srv *mqtt.Server

	mu     sync.Mutex
	ln     net.Listener
	closed bool
	log    *slog.Logger
}

var _ listeners.Listener = (*listener)(nil)

func (l *listener) Init(log *slog.Logger) error {
	ln, err := net.Listen(l.network, l.addr)
	if err != nil {
		return err
	}
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	l.mu.Lock()
	l.ln, l.log = ln, log
	l.mu.Unlock()
	return nil
}

func (l *listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	ln := l.ln
	l.mu.Unlock()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // closed
		}
		l.mu.Lock()
		closed := l.closed
		if !closed && l.srv != nil {
			// mochi counts the connection in ClientsWg only inside
			// EstablishConnection; a Server.Close already waiting on it
			// would race with that Add from zero. Counting it here, before
			// Close can mark the listener closed, keeps the count above
			// zero until mochi has counted it itself.
			l.srv.Listeners.ClientsWg.Add(1)
		}
		l.mu.Unlock()
		if closed {
			conn.Close()
			return
		}
		// Replaced by mochi after CONNECT (keepalive × 1.5, or none).
		_ = conn.SetDeadline(time.Now().Add(l.limit))
		go func() {
			if l.srv != nil {
				defer l.srv.Listeners.ClientsWg.Done()
			}
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("broker: connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (l *listener) ID() string { return l.id }

// Address returns the bound address (the port chosen for ":0") once
// listening, the configured one before.
func (l *listener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *listener) Protocol() string { return l.network }

func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	ln := l.ln
	l.mu.Unlock()
	if l.srv == nil {
		closeClients(l.id)
	} else {
		for _, cl := range l.srv.Clients.GetAll() {
			if cl.Net.Listener == l.id && !cl.Closed() {
				_ = l.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	}
	if ln != nil {
		ln.Close()
	}
}
