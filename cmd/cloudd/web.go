package main

import (
	"log/slog"
	"net/http"

	"github.com/luling-edge/luling/cloud/auth"
	cloudcmd "github.com/luling-edge/luling/cloud/command"
	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/web"
)

// withPlatform puts the web platform (cloud/web) beside the JSON API:
// /api/…, /metrics and /healthz stay the API behind the guard, which takes
// a bearer token or a logged-in session; every other path is the web
// platform, whose pages need a session. It returns the handler and a
// function that ends the platform's live feeds (call it before shutting
// the server down, or open event streams hold the shutdown up).
func withPlatform(c *config, api *http.ServeMux, tokens auth.Authenticator, f *fleet.Fleet, cmds *cloudcmd.Service, log *slog.Logger) (http.Handler, func(), error) {
	if c.users == "" {
		log.Error("web platform without a user file: nobody can log in",
			"hint", "add an account with: cloudd user add -users FILE -name NAME -role operator; then start cloudd with -users FILE (or LULING_CLOUD_USERS=FILE)")
	}
	sessions := auth.NewSessions(auth.SessionOptions{Users: c.users, Secure: c.secureCookies, Logger: log.With("component", "auth")})
	site, err := web.New(web.Config{
		Influx:   &web.Influx{URL: c.influxURL, DB: c.influxBucket, Token: c.influxToken},
		Fleet:    f,
		Commands: cmds,
		Sessions: sessions,
		Logger:   log.With("component", "web"),
	})
	if err != nil {
		return nil, nil, err
	}
	site.RegisterAPI(api)
	guarded := protect(api, auth.NewGuard(auth.Either(tokens, sessions), "cloudd", log.With("component", "api")))
	mux := http.NewServeMux()
	mux.Handle("/api/", guarded)
	mux.Handle("/metrics", guarded)
	mux.Handle("/healthz", guarded)
	mux.Handle("/", site.Handler())
	return mux, site.Close, nil
}
