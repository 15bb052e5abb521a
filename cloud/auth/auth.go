// Package auth is who may do what on cloudd's HTTP surfaces.
//
// A request is authenticated into a Principal (a name and a Role) by an
// Authenticator; Guard.Require(role) lets it through only when the
// principal's role is at least the one the route needs. Roles are ordered:
// a Viewer reads (fleet state, command replies, metrics), an Operator also
// acts (sends commands to gateways). The API's bearer tokens are one
// Authenticator (TokenAuthenticator, backed by a TokenFile); the web
// platform's user accounts are another (Sessions, backed by a UserFile of
// bcrypt hashes: a login opens a session with a CSRF token), on the same
// roles and the same Guard; Either combines them.
//
// Failures answer in the manner of RFC 6750: 401 with
// "WWW-Authenticate: Bearer" when the credentials are missing or wrong,
// 403 when they are right but the role is too small. The body is JSON
// ({"error": "…"}) like the rest of the API.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// Role is what a principal may do. The zero Role may do nothing.
type Role int

// The roles, in increasing order of power: each includes the ones before.
const (
	RoleNone Role = iota
	Viewer        // read-only: fleet state, command replies, metrics
	Operator      // Viewer, and may send commands to gateways
)

// ParseRole parses "viewer" or "operator".
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	}
	return RoleNone, fmt.Errorf("role %q: want viewer or operator", s)
}

// String returns the role's name as ParseRole takes it.
func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	}
	return "none"
}

// Allows reports whether a principal with role r may do what needs role
// need.
func (r Role) Allows(need Role) bool { return need > RoleNone && r >= need }

// Principal is an authenticated caller.
type Principal struct {
	Name string // the token's name or the user's login
	Role Role
	// CSRF is a session's CSRF token, which its state-changing requests
	// carry; empty for tokens.
	CSRF string
}

// Authenticator turns a request's credentials into a principal. It returns
// ErrNoCredentials when the request carries none and ErrBadCredentials
// (possibly wrapped with the reason) when they are not valid.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// Sentinel errors of Authenticator.
var (
	ErrNoCredentials  = errors.New("no credentials")
	ErrBadCredentials = errors.New("invalid credentials")
)

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal that Guard.Require put into a request's
// context.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// Guard applies an Authenticator to HTTP handlers.
type Guard struct {
	auth  Authenticator
	realm string
	log   *slog.Logger
}

// NewGuard returns a guard that authenticates with a. realm names the
// service in WWW-Authenticate ("cloudd"); log receives refused requests
// (debug for missing credentials, info for wrong ones and too small roles)
// and every request allowed as Operator (info: who acted). A nil log
// discards.
func NewGuard(a Authenticator, realm string, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{auth: a, realm: realm, log: log}
}

// Require returns middleware that serves next only to principals whose role
// allows need, with the principal in the request's context.
func (g *Guard) Require(need Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := g.auth.Authenticate(r)
			switch {
			case errors.Is(err, ErrNoCredentials):
				g.log.Debug("api request without credentials refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
				w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q", g.realm))
				writeError(w, http.StatusUnauthorized, fmt.Sprintf("authentication required: send \"Authorization: Bearer TOKEN\" with a token of role %s or higher", need))
				return
			case err != nil:
				g.log.Info("api request with invalid credentials refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "err", err)
				w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q, error=\"invalid_token\"", g.realm))
				writeError(w, http.StatusUnauthorized, err.Error())
				return
			case !p.Role.Allows(need):
				g.log.Info("api request refused: role too small", "principal", p.Name, "role", p.Role, "need", need, "method", r.Method, "path", r.URL.Path)
				w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q, error=\"insufficient_scope\"", g.realm))
				writeError(w, http.StatusForbidden, fmt.Sprintf("%s %s needs role %s; %q has role %s", r.Method, r.URL.Path, need, p.Name, p.Role))
				return
			}
			if need >= Operator {
				g.log.Info("api request", "principal", p.Name, "role", p.Role, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
