package command

import (
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// ErrStoreUnreachable is what a Store's error wraps while this instance
// cannot reach it (not connected yet); the instances that can take the
// commands.
var ErrStoreUnreachable = errors.New("queued command store not reachable")

// Queued is a command kept for a gateway that is not online.
type Queued struct {
	ID      string    `json:"id"`
	Topic   string    `json:"topic"`
	Body    []byte    `json:"body"`
	Expires time.Time `json:"expires"`
}

// Store keeps queued commands where every cloudd instance reaches them (the
// NATS engine's key-value bucket, cloud/natsbus). Without one, the instance
// that took the request keeps the command in memory, and it is lost when
// that instance stops before the gateway connects. With one, every
// instance that sees a gateway's birth takes the gateway's stored commands
// and publishes them; Take hands each command to one caller only, so a
// command is published once however many instances see the birth, and
// whether or not the instance that queued it still runs.
type Store interface {
	// Put keeps q for site/gw until q.Expires.
	Put(ctx context.Context, site, gw string, q Queued) error
	// Take removes and returns the commands kept for site/gw. Of several
	// callers at once each command goes to one.
	Take(ctx context.Context, site, gw string) ([]Queued, error)
}

// store puts a queued command into the Store. When this client saw the
// gateway come online meanwhile (its birth was taken before the command
// was stored), it takes the gateway's commands itself.
func (s *Service) store(ctx context.Context, c mqtt.Client, site, gw string, q Queued) error {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := s.cfg.Store.Put(ctx, site, gw, q); err != nil {
		return fmt.Errorf("command %s to %s/%s: cannot queue it: %v: %w", q.ID, site, gw, err, ErrNoBroker)
	}
	s.mu.Lock()
	online := s.online[site+"/"+gw]
	s.mu.Unlock()
	if online {
		go s.takeStored(c, site, gw)
	}
	return nil
}

// takeStored publishes the commands stored for a gateway that came online.
func (s *Service) takeStored(c mqtt.Client, site, gw string) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	q, err := s.cfg.Store.Take(ctx, site, gw)
	switch {
	case errors.Is(err, ErrStoreUnreachable):
		s.log.Debug("cannot take the queued commands of a gateway that came online; other instances can", "site", site, "gateway", gw, "err", err)
	case err != nil:
		s.log.Error("cannot take the queued commands of a gateway that came online; they stay until its next birth", "site", site, "gateway", gw, "err", err)
	}
	s.publishQueued(c, site, gw, q, s.cfg.Now())
}
