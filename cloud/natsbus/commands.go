package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/luling-edge/luling/cloud/command"
	"github.com/luling-edge/luling/payload"
)

// Commands returns the store of queued commands in the cluster: the
// key-value bucket {Stream}_commands (created on first use, the configured
// replicas, entries expiring after payload.MaxCommandLifetime), one key
// {site}.{gateway}.{id} per command. Every instance that sees a gateway's
// birth takes its commands; the take deletes each key at the revision it
// read, so one instance wins each command. A command queued on an instance
// that then stops is delivered by another.
func (b *Bus) Commands() command.Store { return &commandStore{b: b} }

type commandStore struct {
	b      *Bus
	mu     sync.Mutex
	kv     jetstream.KeyValue
	stream jetstream.Stream // the bucket's stream, KV_{bucket}
}

var _ command.Store = (*commandStore)(nil)

func (s *commandStore) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	if !s.b.ready.Load() {
		return nil, fmt.Errorf("natsbus: not connected to the cluster yet: %w", command.ErrStoreUnreachable)
	}
	bucket := s.b.cfg.Stream + "_commands"
	kv, err := s.b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, TTL: payload.MaxCommandLifetime,
		Replicas: s.b.cfg.Replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("natsbus: bucket %s: %w", bucket, err)
	}
	st, err := s.b.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return nil, fmt.Errorf("natsbus: bucket %s: %w", bucket, err)
	}
	s.kv, s.stream = kv, st
	return kv, nil
}

// none reports whether no key of site/gw was ever stored (or all expired):
// one request, where listing the keys creates a consumer. Every instance
// asks at every birth it sees, so the common case must be cheap. A key
// taken leaves a delete marker, so a gateway that had a command in the
// last 24 h is listed at its births.
func (s *commandStore) none(ctx context.Context, site, gw string) bool {
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter("$KV."+s.b.cfg.Stream+"_commands."+site+"."+gw+".*"))
	return err == nil && len(info.State.Subjects) == 0
}

func (s *commandStore) Put(ctx context.Context, site, gw string, q command.Queued) error {
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	body, err := json.Marshal(q)
	if err != nil {
		return fmt.Errorf("natsbus: queued command %s: %w", q.ID, err)
	}
	if _, err := kv.Put(ctx, site+"."+gw+"."+q.ID, body); err != nil {
		return fmt.Errorf("natsbus: queue command %s for %s/%s: %w", q.ID, site, gw, err)
	}
	return nil
}

func (s *commandStore) Take(ctx context.Context, site, gw string) ([]command.Queued, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	if s.none(ctx, site, gw) {
		return nil, nil
	}
	kl, err := kv.ListKeysFiltered(ctx, site+"."+gw+".*")
	if err != nil {
		return nil, fmt.Errorf("natsbus: queued commands of %s/%s: %w", site, gw, err)
	}
	defer kl.Stop()
	var keys []string
	for k := range kl.Keys() {
		keys = append(keys, k)
	}
	var out []command.Queued
	var errs []error
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // taken by another instance
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		if err := kv.Delete(ctx, k, jetstream.LastRevision(e.Revision())); err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
			}
			continue // another instance took it first
		}
		var q command.Queued
		if err := json.Unmarshal(e.Value(), &q); err != nil {
			errs = append(errs, fmt.Errorf("%s: want a queued command as JSON: %w", k, err))
			continue
		}
		out = append(out, q)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("natsbus: queued commands of %s/%s: %w", site, gw, errors.Join(errs...))
	}
	return out, nil
}
