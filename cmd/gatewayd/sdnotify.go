package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/luling-edge/luling/gateway"
	"github.com/luling-edge/luling/gateway/status"
)

// systemd speaks the sd_notify protocol (a datagram per state change on
// the unix socket named by NOTIFY_SOCKET) for the Type=notify unit:
//
//   - READY=1 once a gateway runs: its config is loaded and its outbox open
//     (gateway.New did both) and every bus port is open, or after
//     readyWait if a bus stays down (its adapter may be unplugged; the
//     gateway keeps retrying and says so in STATUS=);
//   - RELOADING=1 when a new config replaces the running gateway, READY=1
//     again when the new one runs;
//   - WATCHDOG=1 every WATCHDOG_USEC/2 while the gateway is alive: its
//     state can be read within that time (every device lock, the uplink
//     and the outbox answer) and, if it has devices, their polls advanced
//     within stallAfter. A gateway stuck in a deadlock or a dead poll loop
//     stops petting and systemd restarts it;
//   - STOPPING=1 when gatewayd stops.
//
// Without NOTIFY_SOCKET it does nothing.
type systemd struct {
	conn       net.Conn
	watchdog   time.Duration // 0: no watchdog
	readyWait  time.Duration
	stallAfter time.Duration
	log        io.Writer
	gw         atomic.Pointer[gateway.Gateway]
	changed    chan struct{}
}

// startSystemd connects to NOTIFY_SOCKET and runs the notifier until ctx
// ends. Its track method is the supervisor's started hook.
func startSystemd(ctx context.Context, stderr io.Writer) *systemd {
	s := &systemd{readyWait: 10 * time.Second, stallAfter: 5 * time.Minute, log: stderr, changed: make(chan struct{}, 1)}
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return s
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		fmt.Fprintf(stderr, "gatewayd: NOTIFY_SOCKET %s: %v (systemd will not see gatewayd ready)\n", os.Getenv("NOTIFY_SOCKET"), err)
		return s
	}
	s.conn = conn
	s.watchdog = watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	go s.run(ctx)
	return s
}

// watchdogInterval parses WATCHDOG_USEC (meant for this process when
// WATCHDOG_PID is empty or ours); 0 when there is no watchdog.
func watchdogInterval(usec, pid string, self int) time.Duration {
	if pid != "" && pid != strconv.Itoa(self) {
		return 0
	}
	n, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Microsecond
}

// track is told each gateway the supervisor starts.
func (s *systemd) track(gw *gateway.Gateway) {
	if s.gw.Swap(gw) != nil {
		s.send("RELOADING=1")
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *systemd) send(state string) {
	if s.conn == nil {
		return
	}
	if _, err := s.conn.Write([]byte(state)); err != nil {
		fmt.Fprintf(s.log, "gatewayd: sd_notify %q: %v\n", state, err)
	}
}

func (s *systemd) run(ctx context.Context) {
	defer s.conn.Close()
	tick := time.Second
	if s.watchdog > 0 {
		tick = s.watchdog / 2
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var (
		ready     bool
		since     time.Time // when the current gateway was tracked
		polls     uint64
		progress  time.Time
		current   *gateway.Gateway
		lastState string
	)
	for {
		select {
		case <-ctx.Done():
			s.send("STOPPING=1")
			return
		case <-s.changed:
		case <-t.C:
		}
		gw := s.gw.Load()
		if gw == nil {
			continue
		}
		now := time.Now()
		if gw != current {
			current, ready, since, progress, polls = gw, false, now, now, 0
		}
		snap, ok := snapshotWithin(gw, tick)
		if !ok {
			fmt.Fprintf(s.log, "gatewayd: watchdog: the gateway's state did not answer within %s\n", tick)
			continue // no pet: systemd restarts gatewayd when this lasts
		}
		var down []string
		for _, b := range snap.Buses {
			if b.State != "up" {
				down = append(down, b.Name)
			}
		}
		if !ready && (len(down) == 0 || now.Sub(since) >= s.readyWait) {
			ready = true
			st := "STATUS=running"
			if len(down) > 0 {
				st = "STATUS=running; buses not open yet: " + strings.Join(down, ", ")
			}
			s.send("READY=1\n" + st)
			lastState = st
		}
		var n uint64
		for _, d := range snap.Devices {
			n += d.Polls + d.Skipped
		}
		if n != polls {
			polls, progress = n, now
		}
		if len(snap.Devices) > 0 && now.Sub(progress) > s.stallAfter {
			if st := fmt.Sprintf("STATUS=stalled: no device polled for %s", now.Sub(progress).Round(time.Second)); st != lastState {
				fmt.Fprintln(s.log, "gatewayd: watchdog:", st[len("STATUS="):])
				s.send(st)
				lastState = st
			}
			continue
		}
		if ready && s.watchdog > 0 {
			s.send("WATCHDOG=1")
		}
	}
}

// snapshotWithin reads the gateway's state, giving up after d (the
// snapshot takes every device's lock: a deadlocked gateway never answers).
func snapshotWithin(gw *gateway.Gateway, d time.Duration) (*status.Snapshot, bool) {
	done := make(chan *status.Snapshot, 1)
	go func() { done <- gw.Snapshot() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case s := <-done:
		return s, true
	case <-t.C:
		return nil, false
	}
}
