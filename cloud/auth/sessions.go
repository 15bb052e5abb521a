package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/internal/safefile"
)

// Session cookie and CSRF names.
const (
	SessionCookie = "luling_session"
	// CSRFHeader or the form field CSRFField carries a session's CSRF
	// token on every request that is not GET, HEAD or OPTIONS.
	CSRFHeader = "X-CSRF-Token"
	CSRFField  = "csrf"
)

// ErrRateLimited is returned by Login while too many logins failed for the
// name or the client address.
var ErrRateLimited = errors.New("too many failed logins")

// SessionOptions tune Sessions.
type SessionOptions struct {
	// Users is the user file (UserFile); empty means no accounts.
	Users string
	// TTL is a session's lifetime from login; 12 h when 0.
	TTL time.Duration
	// Secure marks the cookie Secure (set it when cloudd is reached over
	// HTTPS, directly or behind a proxy).
	Secure bool
	// MaxFailures failed logins for one name, or 4× as many from one
	// address, within FailWindow lock further attempts until the window
	// ends; 5 and 5 min when 0.
	MaxFailures int
	FailWindow  time.Duration
	// CheckEvery is how often at most the user file is looked at for
	// changes; 1 s when 0.
	CheckEvery time.Duration
	// Now is the time source; time.Now when nil.
	Now func() time.Time
	// Logger receives logins, failures and file errors; discarded when nil.
	Logger *slog.Logger
}

type session struct {
	name    string
	csrf    string
	expires time.Time
}

type failures struct {
	n     int
	until time.Time // end of the window that started with the first failure
}

// maxSessions bounds the session table: a flood of logins cannot grow it
// without end.
const maxSessions = 100_000

// Sessions is the web platform's Authenticator: a login with a name and
// password from the user file opens a session, kept in memory and named by
// a random 256-bit id in an HttpOnly, SameSite=Strict cookie. Each session
// has a CSRF token that every state-changing request must carry (header
// X-CSRF-Token or form field csrf). The role comes from the user file at
// each request, so a removed account or a changed role takes effect within
// CheckEvery. Sessions live in one cloudd's memory: a restart logs everyone
// out, and several instances behind one address need sticky routing.
type Sessions struct {
	o   SessionOptions
	log *slog.Logger

	dummyOnce sync.Once
	dummy     []byte // hash compared when the name is unknown, so timing tells nothing

	mu       sync.Mutex
	sessions map[string]*session
	fails    map[string]*failures
	checked  time.Time
	stat     fs.FileInfo
	users    map[string]user
	loadErr  error
}

// NewSessions returns an empty session table on o.Users.
func NewSessions(o SessionOptions) *Sessions {
	if o.TTL <= 0 {
		o.TTL = 12 * time.Hour
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = 5
	}
	if o.FailWindow <= 0 {
		o.FailWindow = 5 * time.Minute
	}
	if o.CheckEvery <= 0 {
		o.CheckEvery = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Sessions{o: o, log: o.Logger, sessions: map[string]*session{}, fails: map[string]*failures{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mu.Lock()
	s.loadUsers(true)
	s.mu.Unlock()
	return s
}

// Users returns the number of accounts and, when it is 0 because of the
// file, why.
func (s *Sessions) Users() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadUsers(false)
	return len(s.users), s.loadErr
}

// loadUsers re-reads the user file when it changed, at most once per
// CheckEvery unless force. s.mu is held.
func (s *Sessions) loadUsers(force bool) {
	now := s.o.Now()
	if d := now.Sub(s.checked); !force && d >= 0 && d < s.o.CheckEvery {
		return
	}
	s.checked = now
	if s.o.Users == "" {
		s.users, s.loadErr = nil, errors.New("no user file configured (-users)")
		return
	}
	fi, err := os.Stat(s.o.Users)
	if err == nil && safefile.Same(fi, s.stat) {
		return
	}
	var users map[string]user
	if err == nil {
		var b []byte
		if b, err = os.ReadFile(s.o.Users); err == nil {
			_, users, err = parseUserFile(s.o.Users, b)
		}
	}
	if err != nil {
		fi = nil
		err = fmt.Errorf("user file: %w", err)
		s.log.Error("accounts not loaded: nobody can log in", "file", s.o.Users, "err", err,
			"hint", "add an account with: cloudd user add -users "+s.o.Users+" -name NAME -role operator")
	} else {
		s.log.Info("accounts loaded", "file", s.o.Users, "users", len(users))
	}
	s.stat, s.users, s.loadErr = fi, users, err
}

// clientAddr is the request's remote IP (without the port).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Login checks name and password and, when they are right, opens a
// session and sets its cookie on w. Wrong credentials give
// ErrBadCredentials; too many failures ErrRateLimited (with the time to
// wait in the message).
func (s *Sessions) Login(w http.ResponseWriter, r *http.Request, name, password string) (Principal, error) {
	now := s.o.Now()
	keys := [2]string{"user:" + name, "addr:" + clientAddr(r)}
	limits := [2]int{s.o.MaxFailures, 4 * s.o.MaxFailures}
	s.mu.Lock()
	for i, k := range keys {
		if f := s.fails[k]; f != nil && now.Before(f.until) && f.n >= limits[i] {
			s.mu.Unlock()
			s.log.Warn("login refused: rate limited", "user", name, "remote", r.RemoteAddr)
			return Principal{}, fmt.Errorf("%w: try again in %s", ErrRateLimited, f.until.Sub(now).Round(time.Second))
		}
	}
	s.loadUsers(true)
	u, ok := s.users[name]
	cost := bcrypt.DefaultCost
	for _, other := range s.users {
		cost, _ = bcrypt.Cost(other.hash)
		break
	}
	s.mu.Unlock()

	hash := u.hash
	if !ok {
		// Compare with a hash of the accounts' cost all the same.
		s.dummyOnce.Do(func() { s.dummy, _ = bcrypt.GenerateFromPassword([]byte("no such user, no such password"), cost) })
		hash = s.dummy
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !ok {
		s.mu.Lock()
		for _, k := range keys {
			f := s.fails[k]
			if f == nil || !now.Before(f.until) {
				if f == nil && len(s.fails) >= maxSessions {
					s.pruneFails(now)
				}
				f = &failures{until: now.Add(s.o.FailWindow)}
				s.fails[k] = f
			}
			f.n++
		}
		s.mu.Unlock()
		s.log.Info("login failed", "user", name, "remote", r.RemoteAddr)
		return Principal{}, fmt.Errorf("%w: unknown user or wrong password", ErrBadCredentials)
	}
	id, csrf := randomToken(), randomToken()
	s.mu.Lock()
	delete(s.fails, keys[0])
	if len(s.sessions) >= maxSessions {
		s.pruneSessions(now)
	}
	s.sessions[id] = &session{name: name, csrf: csrf, expires: now.Add(s.o.TTL)}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: id, Path: "/", Expires: now.Add(s.o.TTL), MaxAge: int(s.o.TTL / time.Second),
		HttpOnly: true, Secure: s.o.Secure, SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("login", "user", name, "role", u.role, "remote", r.RemoteAddr)
	return Principal{Name: name, Role: u.role, CSRF: csrf}, nil
}

// pruneSessions drops expired sessions, and the oldest half when that is
// not enough. s.mu is held.
func (s *Sessions) pruneSessions(now time.Time) {
	for id, ss := range s.sessions {
		if !now.Before(ss.expires) {
			delete(s.sessions, id)
		}
	}
	for id := range s.sessions {
		if len(s.sessions) < maxSessions/2 {
			break
		}
		delete(s.sessions, id) // map order: an arbitrary half
	}
}

// pruneFails drops failure windows that ended. s.mu is held.
func (s *Sessions) pruneFails(now time.Time) {
	for k, f := range s.fails {
		if !now.Before(f.until) {
			delete(s.fails, k)
		}
	}
}

// Logout ends the request's session and clears its cookie.
func (s *Sessions) Logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.o.Secure, SameSite: http.SameSiteStrictMode})
}

// Authenticate implements Authenticator: the session named by the cookie,
// with the account's current role. A request that may change state (any
// method but GET, HEAD and OPTIONS) must also carry the session's CSRF
// token, or it is refused as ErrBadCredentials.
func (s *Sessions) Authenticate(r *http.Request) (Principal, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Principal{}, ErrNoCredentials
	}
	now := s.o.Now()
	s.mu.Lock()
	ss := s.sessions[c.Value]
	if ss != nil && !now.Before(ss.expires) {
		delete(s.sessions, c.Value)
		ss = nil
	}
	var u user
	var ok bool
	if ss != nil {
		s.loadUsers(false)
		u, ok = s.users[ss.name]
		if !ok {
			delete(s.sessions, c.Value)
		}
	}
	s.mu.Unlock()
	if ss == nil {
		return Principal{}, fmt.Errorf("%w: session expired or unknown: log in again", ErrBadCredentials)
	}
	if !ok {
		return Principal{}, fmt.Errorf("%w: account %q no longer exists", ErrBadCredentials, ss.name)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		tok := r.Header.Get(CSRFHeader)
		if tok == "" {
			tok = r.PostFormValue(CSRFField)
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(ss.csrf)) != 1 {
			return Principal{}, fmt.Errorf("%w: missing or wrong CSRF token (send the session's token as %s or form field %q)", ErrBadCredentials, CSRFHeader, CSRFField)
		}
	}
	return Principal{Name: ss.name, Role: u.role, CSRF: ss.csrf}, nil
}

// randomToken returns 256 random bits, base64url.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Either returns an Authenticator that tries each of as in turn and takes
// the first that finds credentials (an answer other than
// ErrNoCredentials): the JSON API takes a bearer token or a session.
func Either(as ...Authenticator) Authenticator { return either(as) }

type either []Authenticator

func (e either) Authenticate(r *http.Request) (Principal, error) {
	for _, a := range e {
		p, err := a.Authenticate(r)
		if !errors.Is(err, ErrNoCredentials) {
			return p, err
		}
	}
	return Principal{}, ErrNoCredentials
}
