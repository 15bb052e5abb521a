package testenv

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a free loopback port that a test puts between a
// client and a server to break the network on purpose:
//
//   - Cut closes every connection and refuses new ones (the listener is
//     closed, so a connect fails at once), as an unplugged cable or a
//     rebooting router does.
//   - BlackHole keeps every connection open and accepts new ones, but
//     drops the bytes both ways without a word, as a dead route or a
//     firewall that silently discards does. Only the client's own
//     keep-alives can notice it.
//   - Restore forwards again. Connections that were black-holed are
//     closed (their streams lost bytes and cannot go on); new ones reach
//     the server.
//
// Each accepted connection dials the target afresh, so a restarted server
// is reached by the next connection.
type Proxy struct {
	target string
	addr   string

	mu     sync.Mutex
	ln     net.Listener
	mode   proxyMode
	conns  map[*proxyConn]struct{}
	closed bool
	wg     sync.WaitGroup

	accepted  atomic.Uint64
	forwarded atomic.Uint64
	discarded atomic.Uint64
}

type proxyMode int

const (
	proxyForward proxyMode = iota
	proxyCut
	proxyHole
)

// proxyConn is one client connection and, unless it was accepted into a
// black hole, its connection to the target.
type proxyConn struct {
	client, server net.Conn // server is nil for a connection born in a black hole
	holed          atomic.Bool
	once           sync.Once
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

// NewProxy starts a proxy to target (host:port) on a free loopback port.
// It is closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: proxy: listen: %v", err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), conns: map[*proxyConn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// URL returns tcp://host:port of the proxy, for an MQTT client.
func (p *Proxy) URL() string { return "tcp://" + p.addr }

// ProxyStats counts what the proxy did.
type ProxyStats struct {
	Accepted  uint64 // connections accepted
	Forwarded uint64 // bytes passed on, both ways
	Discarded uint64 // bytes dropped in a black hole, both ways
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{Accepted: p.accepted.Load(), Forwarded: p.forwarded.Load(), Discarded: p.discarded.Load()}
}

// serve starts accepting on ln, unless the proxy was closed meanwhile;
// p.mu must not be held.
func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return
	}
	p.ln = ln
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Cut or Close
			}
			p.accepted.Add(1)
			p.handle(c)
		}
	}()
}

func (p *Proxy) handle(client net.Conn) {
	p.mu.Lock()
	mode := p.mode
	p.mu.Unlock()
	pc := &proxyConn{client: client}
	if mode == proxyHole {
		pc.holed.Store(true)
	} else {
		server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			client.Close() // the server is down: the client sees its connection end
			return
		}
		pc.server = server
	}
	p.mu.Lock()
	if p.closed || (p.mode == proxyCut) {
		p.mu.Unlock()
		pc.close()
		return
	}
	if p.mode == proxyHole {
		pc.holed.Store(true)
	}
	p.conns[pc] = struct{}{}
	p.wg.Add(2)
	p.mu.Unlock()
	go p.pipe(pc, pc.client, pc.server)
	if pc.server != nil {
		go p.pipe(pc, pc.server, pc.client)
	} else {
		go p.pipe(pc, nil, nil) // nothing comes from a server that was never dialed
	}
}

// pipe copies src to dst until either fails, dropping what it reads while
// the connection is black-holed; then it closes the connection.
func (p *Proxy) pipe(pc *proxyConn, src, dst net.Conn) {
	defer p.wg.Done()
	if src == nil {
		return
	}
	defer func() {
		p.mu.Lock()
		delete(p.conns, pc)
		p.mu.Unlock()
		pc.close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if pc.holed.Load() || dst == nil {
				p.discarded.Add(uint64(n))
			} else {
				p.forwarded.Add(uint64(n)) // before the write, so that the reader sees it counted
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.mode = proxyCut
	p.dropLocked()
}

// BlackHole drops every byte both ways, on open connections and on new
// ones, until Restore; no connection is closed.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = proxyHole
	for c := range p.conns {
		c.holed.Store(true)
	}
}

// Restore forwards again: after Cut the proxy listens on the same port
// again; after BlackHole the black-holed connections are closed.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.New("testenv: proxy: closed")
	}
	p.mode = proxyForward
	var holed []*proxyConn
	for c := range p.conns {
		if c.holed.Load() {
			holed = append(holed, c)
		}
	}
	relisten := p.ln == nil
	p.mu.Unlock()
	for _, c := range holed {
		c.close()
	}
	if !relisten {
		return nil
	}
	// The port was ours a moment ago; another process may take it in
	// between, which a loopback test cannot rule out: say so.
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("testenv: proxy: listen again on %s: %w", p.addr, err)
	}
	p.serve(ln)
	return nil
}

// dropLocked closes the listener and every connection; it is called with
// p.mu held and unlocks it before closing anything.
func (p *Proxy) dropLocked() {
	ln := p.ln
	p.ln = nil
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	clear(p.conns)
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range conns {
		c.close()
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.dropLocked()
	p.wg.Wait()
}
