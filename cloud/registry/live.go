package registry

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/luling-edge/luling/internal/safefile"
)

// Live is a running cloudd's view of a registry file. It re-reads the
// file when Reload is called or, under Run, when the file changed. A file
// that does not parse fails closed: no gateway is known until it is
// fixed (a broken file may be one whose revocation did not land), and
// the error is logged.
type Live struct {
	path  string
	every time.Duration
	log   *slog.Logger

	mu       sync.Mutex
	stat     fs.FileInfo
	byUser   map[string]Gateway // replaced, never modified in place
	onChange []func()
}

// LiveOptions tune a Live view.
type LiveOptions struct {
	// CheckEvery is how often Run looks at the file; 1s when 0.
	CheckEvery time.Duration
	// Logger receives reloads and load errors; discarded when nil.
	Logger *slog.Logger
}

// NewLive reads path (which may not exist yet: no gateways) and returns a
// view of it.
func NewLive(path string, o LiveOptions) *Live {
	l := &Live{path: path, every: o.CheckEvery, log: o.Logger}
	if l.every <= 0 {
		l.every = time.Second
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.Reload()
	return l
}

// OnChange registers fn to run after every reload that changed the file
// (the broker re-checks its connected gateways there).
func (l *Live) OnChange(fn func()) {
	l.mu.Lock()
	l.onChange = append(l.onChange, fn)
	l.mu.Unlock()
}

// Run re-reads the file whenever it changed, looking every CheckEvery,
// until ctx ends.
func (l *Live) Run(ctx context.Context) {
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.reloadIfChanged()
		}
	}
}

// reloadIfChanged reloads the file if it changed since it was last read,
// and reports whether it did.
func (l *Live) reloadIfChanged() bool {
	fi, err := os.Stat(l.path)
	if err != nil {
		fi = nil
	}
	l.mu.Lock()
	same := safefile.Same(fi, l.stat)
	l.mu.Unlock()
	if !same {
		l.Reload()
	}
	return !same
}

// Reload re-reads the file now and runs the OnChange functions.
func (l *Live) Reload() {
	gws, fi, err := read(l.path)
	by := make(map[string]Gateway, len(gws))
	if err != nil {
		l.log.Error("gateway registry not loaded: no gateway can log in until it is fixed", "file", l.path, "err", err)
	} else {
		for _, g := range gws {
			by[g.User()] = g
		}
		l.log.Info("gateway registry loaded", "file", l.path, "gateways", len(by))
	}
	if fi != nil && fi.Mode().Perm()&0o022 != 0 {
		l.log.Warn("gateway registry is writable by others than its owner: anyone who can write it can add gateways", "file", l.path, "mode", fi.Mode().Perm().String(), "hint", "chmod 600 "+l.path)
	}
	l.mu.Lock()
	l.stat, l.byUser = fi, by
	fns := append([]func(){}, l.onChange...)
	l.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Lookup returns the gateway "{site}/{id}", enabled or not.
func (l *Live) Lookup(user string) (Gateway, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g, ok := l.byUser[user]
	return g, ok
}

// Len returns the number of gateways known.
func (l *Live) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byUser)
}

// PasswordHash returns the bcrypt hash of an enabled gateway that has a
// password. Like CertAllowed, it looks at the file again before saying
// no, so a gateway added by the CLI a moment ago is not refused while Run
// has yet to notice (a stat per refusal; a change that takes a gateway
// away is still seen within CheckEvery by Run).
func (l *Live) PasswordHash(user string) ([]byte, bool) {
	hash := func() ([]byte, bool) {
		g, ok := l.Lookup(user)
		if !ok || !g.Enabled || g.PasswordHash == "" {
			return nil, false
		}
		return []byte(g.PasswordHash), true
	}
	if h, ok := hash(); ok || !l.reloadIfChanged() {
		return h, ok
	}
	return hash()
}

// CertAllowed reports whether user is an enabled gateway and serial one
// of its certificates, not revoked.
func (l *Live) CertAllowed(user, serial string) bool {
	allowed := func() bool {
		g, ok := l.Lookup(user)
		return ok && g.Enabled && g.ValidCert(serial)
	}
	return allowed() || l.reloadIfChanged() && allowed()
}
