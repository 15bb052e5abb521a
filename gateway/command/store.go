package command

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/luling-edge/luling/payload"
)

// StoreFile is the name of the id log inside Options.StateDir.
const StoreFile = "command-ids.log"

// Store limits.
const (
	DefaultMaxIDs = 1024      // unexpired ids remembered at most
	compactSlack  = 256 << 10 // dead bytes tolerated before the log is rewritten
	maxStoredBody = 2 << 10   // a stored reply larger than this keeps no result
	// forgetAfter keeps an id this long past its command's expiry, so that a
	// clock stepped back a little does not make an expired id runnable.
	forgetAfter = time.Hour
)

// ErrFull is returned when DefaultMaxIDs (Options.MaxIDs) unexpired commands
// are remembered: a new one is refused rather than forgetting an id that
// could still be redelivered.
var ErrFull = errors.New("too many unexpired command ids remembered")

// entry is what the store knows about one id.
type entry struct {
	exp   time.Time
	reply json.RawMessage // nil: started, result unknown
	n     int64           // bytes of its latest record in the log
}

// line is one record of the id log. A command is written twice: before it
// runs (no reply) and after (its reply).
type line struct {
	ID    string          `json:"id"`
	Exp   time.Time       `json:"exp"`
	Reply json.RawMessage `json:"reply,omitempty"`
}

// store remembers command ids durably (at-most-once execution across
// restarts) in an append-only log that is rewritten when it holds too many
// dead records.
type store struct {
	mu     sync.Mutex
	path   string
	f      *os.File
	size   int64 // bytes in the log
	dead   int64 // bytes of records superseded or forgotten since the last rewrite
	m      map[string]*entry
	maxIDs int
	now    func() time.Time
	log    *slog.Logger
}

func openStore(dir string, maxIDs int, now func() time.Time, log *slog.Logger) (*store, error) {
	if dir == "" {
		return nil, errors.New("command: no state directory for the command id log")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("command: state directory %s: %w", dir, err)
	}
	s := &store{path: filepath.Join(dir, StoreFile), m: map[string]*entry{}, maxIDs: maxIDs, now: now, log: log}
	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("command: read id log %s: %w", s.path, err)
	}
	// A record cut short by a crash is the tail after the last newline.
	if i := bytes.LastIndexByte(data, '\n'); i+1 < len(data) {
		log.Warn("command id log ends in an incomplete record; dropping it", "file", s.path, "bytes", len(data)-i-1)
		data = data[:i+1]
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || !payload.ValidCommandID(l.ID) {
			log.Error("command id log: skipping a corrupt record", "file", s.path, "line", n)
			continue
		}
		e := s.m[l.ID]
		if e == nil {
			e = &entry{}
			s.m[l.ID] = e
		}
		e.exp = l.Exp
		e.n = int64(len(sc.Bytes()) + 1)
		if l.Reply != nil {
			e.reply = l.Reply
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("command: read id log %s: %w", s.path, err)
	}
	// Rewrite at open: drops forgotten ids, corrupt records and the torn
	// tail, and leaves a log that ends with a newline.
	if err := s.compactLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// lookup returns what is known about id.
func (s *store) lookup(id string) (entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok {
		return entry{}, false
	}
	return *e, true
}

// begin records id durably (fsync) before its command runs.
func (s *store) begin(id string, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.maxIDs {
		s.prune()
		if len(s.m) >= s.maxIDs {
			return fmt.Errorf("command: id log %s: %d ids: %w", s.path, len(s.m), ErrFull)
		}
	}
	e := &entry{exp: exp}
	if err := s.append(line{ID: id, Exp: exp}, e); err != nil {
		return err
	}
	s.m[id] = e
	return nil
}

// finish records a command's reply.
func (s *store) finish(id string, exp time.Time, reply []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(reply) > maxStoredBody {
		var r payload.Reply
		if json.Unmarshal(reply, &r) == nil {
			r.Result = nil
			if len(r.Message) > 512 {
				r.Message = r.Message[:512] + "…"
			}
			reply = r.Encode()
		}
	}
	e := s.m[id]
	if e == nil {
		e = &entry{exp: exp}
		s.m[id] = e
	}
	e.reply = append(json.RawMessage(nil), reply...)
	if err := s.append(line{ID: id, Exp: exp, Reply: e.reply}, e); err != nil {
		return err
	}
	if s.dead > compactSlack {
		return s.compactLocked()
	}
	return nil
}

// append writes one record and syncs it; it becomes e's latest record.
func (s *store) append(l line, e *entry) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("command: id log %s: %w", s.path, err)
	}
	b = append(b, '\n')
	if _, err := s.f.Write(b); err != nil {
		return fmt.Errorf("command: append to id log %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("command: sync id log %s: %w", s.path, err)
	}
	s.size += int64(len(b))
	s.dead += e.n
	e.n = int64(len(b))
	return nil
}

// prune forgets ids whose command expired more than forgetAfter ago.
func (s *store) prune() {
	cut := s.now().Add(-forgetAfter)
	for id, e := range s.m {
		if e.exp.Before(cut) {
			s.dead += e.n
			delete(s.m, id)
		}
	}
}

// compactLocked rewrites the log with one record per remembered id
// (through a temporary file, fsync and rename, so a crash leaves either the
// old or the new log).
func (s *store) compactLocked() error {
	s.prune()
	ids := make([]string, 0, len(s.m))
	for id := range s.m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return s.m[ids[i]].exp.Before(s.m[ids[j]].exp) })
	var buf bytes.Buffer
	for _, id := range ids {
		e := s.m[id]
		b, err := json.Marshal(line{ID: id, Exp: e.exp, Reply: e.reply})
		if err != nil {
			return fmt.Errorf("command: id log %s: %w", s.path, err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
		e.n = int64(len(b) + 1)
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("command: rewrite id log %s: %w", s.path, err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("command: rewrite id log %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("command: sync id log %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("command: close id log %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("command: replace id log %s: %w", s.path, err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("command: open id log %s: %w", s.path, err)
	}
	s.size = int64(buf.Len())
	s.dead = 0
	return nil
}

// fileSize returns the log's size in bytes.
func (s *store) fileSize() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

func (s *store) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("command: close id log %s: %w", s.path, err)
	}
	return nil
}
