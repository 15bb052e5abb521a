package uplink

import "time"

// Stats is a snapshot of the uplink's state and counters since New.
type Stats struct {
	Connected        bool      // a session is up (connected, birth published)
	Broker           string    // URL of the current or last broker (password removed)
	Connects         uint64    // successful connects
	ConnectionLosses uint64    // sessions that ended other than by shutdown
	LastError        string    // last connect, session, outbox or PUBACK error
	LastErrorAt      time.Time // when LastError happened
	Published        uint64    // publishes of outbox messages, replays included
	Acked            uint64    // messages PUBACKed and handed to Source.Ack
	InFlight         int       // publishes waiting for their PUBACK
	Replays          uint64    // publishes of a sequence number published before
	LastPuback       time.Time // when the last PUBACK was processed
	LastConnect      time.Time // when the last session was established
}

// Stats returns a snapshot of the uplink's state and counters.
func (u *Uplink) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.st
}
