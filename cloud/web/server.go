// Package web is cloudd's web platform: the pages property managers and
// operators use on a desk or a tablet in the site office.
//
//	/                       area view: every site and lot, gateways, alerts, solar, access
//	/lots/{site}/{lot}      lot view: zones and bays as a grid, occupancy plot
//	/access                 doors, readers and the access event log (searchable)
//	/solar                  inverters, MPPT strings, energy and the yield plot
//	/gateways               every gateway, online or not
//	/gateways/{site}/{gw}   gateway view: health, devices, plugins, commands (operators)
//	/live/…                 the live parts of those pages as server-sent events
//	/login, /logout         accounts from cloud/auth (Sessions)
//
// Pages are html/template rendered on the server; htmx (with its SSE
// extension) swaps the live fragments in and posts the command forms, and
// uPlot draws the plots. Both are vendored under static/vendor with their
// licences and embedded: no Node build step. The data comes from InfluxDB
// (InfluxQL, one request per view section) and from cloudd's fleet state;
// there is no second database. Each live view has one poller however many
// browsers watch it (see live).
package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/luling-edge/luling/cloud/auth"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the platform needs.
type Config struct {
	Influx   *Influx
	Fleet    Fleet
	Commands Commander // nil: the gateway view offers no commands
	Sessions *auth.Sessions
	// Refresh is how often live views re-read InfluxDB while someone
	// watches; 1 s when 0.
	Refresh time.Duration
	// Now is the clock (time.Now when nil); its location decides where
	// "today" starts.
	Now    func() time.Time
	Logger *slog.Logger
}

// Server is the web platform. Close ends its live feeds.
type Server struct {
	influx   *Influx
	fleet    Fleet
	cmds     Commander
	sessions *auth.Sessions
	now      func() time.Time
	log      *slog.Logger
	live     *live
	areas    shared[*Area]
	pages    map[string]*template.Template
}

// New returns the platform.
func New(c Config) (*Server, error) {
	if c.Influx == nil || c.Fleet == nil || c.Sessions == nil {
		return nil, errors.New("web: Influx, Fleet and Sessions are required")
	}
	s := &Server{influx: c.Influx, fleet: c.Fleet, cmds: c.Commands, sessions: c.Sessions, now: c.Now, log: c.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if c.Refresh <= 0 {
		c.Refresh = time.Second
	}
	s.live = newLive(c.Refresh, s.log)
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close ends every live feed, so that open event streams finish and the
// HTTP server can shut down.
func (s *Server) Close() { s.live.close() }

var funcs = template.FuncMap{
	"pct": func(part, whole int) int {
		if whole <= 0 {
			return 0
		}
		return part * 100 / whole
	},
	"sub":  func(a, b int) int { return a - b },
	"f1":   func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"kw":   func(w float64) string { return fmt.Sprintf("%.1f kW", w/1000) },
	"kwh":  func(wh float64) string { return fmt.Sprintf("%.1f kWh", wh/1000) },
	"mib":  func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) },
	"pctf": func(share float64) string { return fmt.Sprintf("%.0f %%", share*100) },
	"path": url.PathEscape,
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := now.Sub(t).Round(time.Second)
		if d < 0 {
			d = 0
		}
		return d.String() + " ago"
	},
	"clock": func(t time.Time) string { return t.Format("15:04:05") },
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"severities": func() []string { return severities },
}

// parseTemplates parses each page with the layout and the fragments.
func (s *Server) parseTemplates() error {
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/fragments.html")
	if err != nil {
		return fmt.Errorf("web: templates: %w", err)
	}
	names, _ := fs.Glob(templateFS, "templates/*.html")
	s.pages = map[string]*template.Template{}
	for _, n := range names {
		n = strings.TrimPrefix(n, "templates/")
		if n == "layout.html" || n == "fragments.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+n)
		if err != nil {
			return fmt.Errorf("web: template %s: %w", n, err)
		}
		s.pages[strings.TrimSuffix(n, ".html")] = t
	}
	return nil
}

// Handler serves the platform's pages.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, http.FileServerFS(static))))
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.Handle("POST /logout", s.require(auth.Viewer, s.logout))
	mux.Handle("GET /{$}", s.require(auth.Viewer, s.areaPage))
	mux.Handle("GET /live/area", s.require(auth.Viewer, s.areaLive))
	mux.Handle("GET /lots/{site}/{lot}", s.require(auth.Viewer, s.lotPage))
	mux.Handle("GET /live/lots/{site}/{lot}", s.require(auth.Viewer, s.lotLive))
	mux.Handle("GET /access", s.require(auth.Viewer, s.accessPage))
	mux.Handle("GET /solar", s.require(auth.Viewer, s.solarPage))
	mux.Handle("GET /gateways", s.require(auth.Viewer, s.gatewaysPage))
	mux.Handle("GET /gateways/{site}/{gw}", s.require(auth.Viewer, s.gatewayPage))
	mux.Handle("GET /live/gateways/{site}/{gw}", s.require(auth.Viewer, s.gatewayLive))
	mux.Handle("POST /gateways/{site}/{gw}/command", s.require(auth.Operator, s.commandConfirm))
	mux.Handle("POST /gateways/{site}/{gw}/command/send", s.require(auth.Operator, s.commandSend))
	mux.Handle("/", s.require(auth.Viewer, func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		s.errorPage(w, r, p, http.StatusNotFound, fmt.Sprintf("%s: no such page", r.URL.Path))
	}))
	return securityHeaders(mux)
}

// RegisterAPI adds the platform's JSON routes to cloudd's API mux, which
// puts them behind its guard: GET /api/v1/sites (the area view as JSON).
func (s *Server) RegisterAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/sites", func(w http.ResponseWriter, r *http.Request) {
		a, err := s.area(r.Context())
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(a)
	})
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	v := fmt.Sprintf("private, max-age=%d", int(d/time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", v)
		h.ServeHTTP(w, r)
	})
}

// securityHeaders: scripts and styles only from the platform itself, no
// framing, no sniffing. A state-changing request whose Origin names another
// site is refused before anything else (the login form included, which has
// no session and so no CSRF token yet).
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && r.Method != http.MethodGet && r.Method != http.MethodHead {
			if u, err := url.Parse(o); err != nil || u.Host != r.Host {
				http.Error(w, "cross-site request refused: Origin "+o+" is not this site", http.StatusForbidden)
				return
			}
		}
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

type pageHandler func(w http.ResponseWriter, r *http.Request, p auth.Principal)

// require serves h to a session whose role allows need. Without a valid
// session a page request goes to the login page (htmx requests are told
// to go there with HX-Redirect); with too small a role, or a
// state-changing request without the CSRF token, the answer is 403.
func (s *Server) require(need auth.Role, h pageHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.sessions.Authenticate(r)
		switch {
		case errors.Is(err, auth.ErrNoCredentials) || (err != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead)):
			to := "/login"
			if r.Method == http.MethodGet && r.URL.Path != "/" && !strings.HasPrefix(r.URL.Path, "/live/") {
				to += "?next=" + url.QueryEscape(r.URL.RequestURI())
			}
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", to)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
		case err != nil:
			s.log.Info("web request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "err", err)
			s.errorPage(w, r, auth.Principal{}, http.StatusForbidden, strings.TrimPrefix(err.Error(), auth.ErrBadCredentials.Error()+": "))
		case !p.Role.Allows(need):
			s.log.Info("web request refused: role too small", "user", p.Name, "role", p.Role, "need", need, "path", r.URL.Path)
			s.errorPage(w, r, p, http.StatusForbidden, fmt.Sprintf("%s needs the %s role; %s has the %s role", r.URL.Path, need, p.Name, p.Role))
		default:
			if need >= auth.Operator {
				s.log.Info("web request", "user", p.Name, "role", p.Role, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			}
			h(w, r.WithContext(auth.WithPrincipal(r.Context(), p)), p)
		}
	})
}

// page is what every template gets.
type page struct {
	Title string
	User  auth.Principal
	Now   time.Time
	Nav   string
	Data  any
	Error string
	Next  string
}

// render writes template name (a page, or a fragment when frag is set).
func (s *Server) render(w http.ResponseWriter, code int, name, frag string, pg page) {
	t := s.pages[name]
	var buf bytes.Buffer
	var err error
	if t == nil {
		err = fmt.Errorf("no template %q", name)
	} else if frag != "" {
		err = t.ExecuteTemplate(&buf, frag, pg)
	} else {
		err = t.ExecuteTemplate(&buf, "layout", pg)
	}
	if err != nil {
		s.log.Error("web: render", "template", name, "err", err)
		http.Error(w, "internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, p auth.Principal, code int, msg string) {
	if r.Header.Get("HX-Request") != "" {
		s.render(w, code, "error", "error-box", page{Error: msg})
		return
	}
	s.render(w, code, "error", "", page{Title: http.StatusText(code), User: p, Now: s.now(), Error: msg})
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login", "", page{Title: "Log in", Now: s.now(), Next: safeNext(r.URL.Query().Get("next"))})
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	name, pw, next := r.PostFormValue("name"), r.PostFormValue("password"), safeNext(r.PostFormValue("next"))
	_, err := s.sessions.Login(w, r, name, pw)
	switch {
	case errors.Is(err, auth.ErrRateLimited):
		s.render(w, http.StatusTooManyRequests, "login", "", page{Title: "Log in", Now: s.now(), Next: next, Error: err.Error()})
	case err != nil:
		s.render(w, http.StatusUnauthorized, "login", "", page{Title: "Log in", Now: s.now(), Next: next, Error: "Unknown user or wrong password."})
	default:
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	s.sessions.Logout(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// fragment renders template frag of page name into bytes (for live feeds).
func (s *Server) fragment(name, frag string, pg page) ([]byte, error) {
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, frag, pg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// stream sends a live feed as server-sent events named event, each a
// fragment of HTML, until the client leaves or the feed ends.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, key, event string, render func(context.Context) ([]byte, error)) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	ch, stop := s.live.subscribe(key, render)
	defer stop()
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			w.Write([]byte(": keepalive\n\n"))
		case b, ok := <-ch:
			if !ok {
				return
			}
			var buf bytes.Buffer
			buf.WriteString("event: " + event + "\n")
			for _, line := range bytes.Split(b, []byte("\n")) {
				buf.WriteString("data: ")
				buf.Write(bytes.TrimRight(line, "\r"))
				buf.WriteByte('\n')
			}
			buf.WriteByte('\n')
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
