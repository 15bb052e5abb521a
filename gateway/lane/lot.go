package lane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/luling-edge/luling/internal/safefile"
)

// LotState is a lot's count as its lanes keep it.
type LotState struct {
	Lot      string
	Capacity int
	Occupied int // vehicles counted in and not out; never below 0
	Free     int // Capacity - Occupied, never below 0
	Full     bool
	Time     time.Time // of the last change
}

// Lot counts the vehicles in one lot from its lanes' passages. The count
// survives restarts: every change is written to the lot's state file
// before Add or Set return. Watchers (the entrance sign) are told every
// change.
type Lot struct {
	name     string
	capacity int
	path     string // "" keeps the count in memory only
	log      *slog.Logger

	mu       sync.Mutex
	occupied int
	t        time.Time
	watch    []func(LotState)
}

// lotFile is a lot's state file.
type lotFile struct {
	V        int       `json:"v"`
	Lot      string    `json:"lot"`
	Occupied int       `json:"occupied"`
	Time     time.Time `json:"time"`
}

// OpenLot opens the count of lot name with capacity bays, kept in
// dir/lot-NAME.json ("" dir: in memory). A missing file starts at 0.
func OpenLot(dir, name string, capacity int, log *slog.Logger) (*Lot, error) {
	if name == "" || capacity < 1 {
		return nil, fmt.Errorf("lane: lot %q with capacity %d: want a name and at least 1 bay", name, capacity)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Lot{name: name, capacity: capacity, log: log.With("lot", name)}
	if dir == "" {
		return l, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lane: lot %s: %w", name, err)
	}
	l.path = filepath.Join(dir, "lot-"+name+".json")
	b, err := os.ReadFile(l.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("lane: lot %s: %w", name, err)
	}
	var f lotFile
	if err := json.Unmarshal(b, &f); err != nil || f.V != 1 || f.Lot != name || f.Occupied < 0 {
		return nil, fmt.Errorf("lane: lot %s: %s: not a lot count of version 1 (move it away to start from 0)", name, l.path)
	}
	l.occupied, l.t = f.Occupied, f.Time
	return l, nil
}

// Name is the lot's name.
func (l *Lot) Name() string { return l.name }

// Watch adds a function told every change, after it is stored, and once
// now with the current state. It runs under the lot's lock: it must not
// block (hand the state to a goroutine) nor call the lot.
func (l *Lot) Watch(f func(LotState)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watch = append(l.watch, f)
	f(l.stateLocked())
}

// State returns the lot's count.
func (l *Lot) State() LotState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stateLocked()
}

// Full reports whether no bay is free.
func (l *Lot) Full() bool { return l.State().Full }

func (l *Lot) stateLocked() LotState {
	free := max(l.capacity-l.occupied, 0)
	return LotState{Lot: l.name, Capacity: l.capacity, Occupied: l.occupied, Free: free, Full: free == 0, Time: l.t}
}

// Add counts d vehicles in (d > 0) or out (d < 0) at t. The count does
// not go below 0 (a vehicle that entered before counting began leaves).
func (l *Lot) Add(d int, t time.Time) LotState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.setLocked(max(l.occupied+d, 0), t)
}

// Set corrects the count to n at t (an operator's count or the nightly
// reset) and returns the state before and after.
func (l *Lot) Set(n int, t time.Time) (before, after LotState, err error) {
	if n < 0 || n > 10*l.capacity {
		return LotState{}, LotState{}, fmt.Errorf("lot %s: count %d: want 0..%d (capacity %d)", l.name, n, 10*l.capacity, l.capacity)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	before = l.stateLocked()
	return before, l.setLocked(n, t), nil
}

func (l *Lot) setLocked(n int, t time.Time) LotState {
	l.occupied, l.t = n, t
	if l.path != "" {
		b, _ := json.Marshal(lotFile{V: 1, Lot: l.name, Occupied: n, Time: t.UTC()})
		if err := safefile.Replace(l.path, b, 0o600); err != nil {
			// The count in memory stays right; a restart would lose
			// the changes since the last write.
			l.log.Error("lot count not stored", "file", l.path, "err", err)
		}
	}
	st := l.stateLocked()
	for _, f := range l.watch {
		f(st)
	}
	return st
}
