package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/luling-edge/luling/cloud/broker"
	"github.com/luling-edge/luling/cloud/provision"
	"github.com/luling-edge/luling/cloud/registry"
)

// gatewayView is a registry entry as the API shows it: no password hash.
type gatewayView struct {
	Site        string          `json:"site"`
	ID          string          `json:"id"`
	Enabled     bool            `json:"enabled"`
	HasPassword bool            `json:"has_password"`
	Certs       []registry.Cert `json:"certificates"`
	Created     time.Time       `json:"created"`
}

func view(g registry.Gateway) gatewayView {
	if g.Certs == nil {
		g.Certs = []registry.Cert{}
	}
	return gatewayView{Site: g.Site, ID: g.ID, Enabled: g.Enabled, HasPassword: g.PasswordHash != "", Certs: g.Certs, Created: g.Created}
}

// maxRequestBytes bounds a registry request body (a bundle template
// included).
const maxRequestBytes = 256 << 10

// registerAPI adds the registry's routes under /api/v1/registry/gateways
// (reads need a viewer token, changes an operator token: see protect).
// Every change is applied to the file and then reloaded, so the broker
// acts on it (a disabled gateway is disconnected) before the response.
func (i *identity) registerAPI(mux *http.ServeMux) {
	if i.file == nil {
		return
	}
	const base = "/api/v1/registry/gateways"
	mux.HandleFunc("GET "+base, func(w http.ResponseWriter, r *http.Request) {
		gws, err := i.file.List()
		if err != nil {
			apiError(w, err)
			return
		}
		out := make([]gatewayView, 0, len(gws))
		for _, g := range gws {
			out = append(out, view(g))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST "+base, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Site     string `json:"site"`
			ID       string `json:"id"`
			Password string `json:"password"`
		}
		if !decode(w, r, &req) {
			return
		}
		hash, err := hashOrEmpty(req.Password)
		if err != nil {
			apiError(w, err)
			return
		}
		if _, err := i.file.Add(req.Site, req.ID); err != nil {
			apiError(w, err)
			return
		}
		if hash != "" {
			if err := i.file.SetPassword(req.Site, req.ID, hash); err != nil {
				apiError(w, err)
				return
			}
		}
		i.respond(w, http.StatusCreated, req.Site, req.ID)
	})
	one := base + "/{site}/{id}"
	mux.HandleFunc("GET "+one, func(w http.ResponseWriter, r *http.Request) {
		i.respond(w, http.StatusOK, r.PathValue("site"), r.PathValue("id"))
	})
	mux.HandleFunc("DELETE "+one, func(w http.ResponseWriter, r *http.Request) {
		if err := i.file.Remove(r.PathValue("site"), r.PathValue("id")); err != nil {
			apiError(w, err)
			return
		}
		i.live.Reload()
		w.WriteHeader(http.StatusNoContent)
	})
	for _, act := range []string{"enable", "disable"} {
		mux.HandleFunc("POST "+one+"/"+act, func(w http.ResponseWriter, r *http.Request) {
			if err := i.file.SetEnabled(r.PathValue("site"), r.PathValue("id"), act == "enable"); err != nil {
				apiError(w, err)
				return
			}
			i.respond(w, http.StatusOK, r.PathValue("site"), r.PathValue("id"))
		})
	}
	mux.HandleFunc("PUT "+one+"/password", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Password string `json:"password"` // "" removes it
		}
		if !decode(w, r, &req) {
			return
		}
		hash, err := hashOrEmpty(req.Password)
		if err != nil {
			apiError(w, err)
			return
		}
		if err := i.file.SetPassword(r.PathValue("site"), r.PathValue("id"), hash); err != nil {
			apiError(w, err)
			return
		}
		i.respond(w, http.StatusOK, r.PathValue("site"), r.PathValue("id"))
	})
	mux.HandleFunc("DELETE "+one+"/certificates/{serial}", func(w http.ResponseWriter, r *http.Request) {
		if err := i.file.RevokeCert(r.PathValue("site"), r.PathValue("id"), strings.ToLower(r.PathValue("serial"))); err != nil {
			apiError(w, err)
			return
		}
		i.respond(w, http.StatusOK, r.PathValue("site"), r.PathValue("id"))
	})
	mux.HandleFunc("POST "+one+"/bundle", i.bundle)
}

// bundle issues a certificate and answers with the gateway's provisioning
// bundle (application/gzip); the gateway is registered if it is new.
func (i *identity) bundle(w http.ResponseWriter, r *http.Request) {
	if i.ca == nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "cloudd has no site CA: start it with -ca-dir"})
		return
	}
	var req struct {
		Brokers  []string `json:"brokers"`
		Validity string   `json:"validity"` // Go duration; a year when empty
		Template string   `json:"template"` // gateway.yaml to start from
	}
	if !decode(w, r, &req) {
		return
	}
	pr := provision.Request{Site: r.PathValue("site"), Gateway: r.PathValue("id"), Brokers: req.Brokers, Template: []byte(req.Template), Add: true}
	if req.Validity != "" {
		d, err := time.ParseDuration(req.Validity)
		if err != nil || d <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("validity %q: want a positive duration such as 8760h", req.Validity)})
			return
		}
		pr.Validity = d
	}
	i.mu.Lock()
	b, err := provision.Issue(i.file, i.ca, pr)
	i.mu.Unlock()
	if err != nil {
		apiError(w, err)
		return
	}
	i.live.Reload()
	var buf bytes.Buffer
	if err := b.Write(&buf); err != nil {
		apiError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="luling-bundle-%s-%s.tar.gz"`, b.Site, b.Gateway))
	w.Header().Set("X-Luling-Certificate-Serial", b.Serial)
	w.Write(buf.Bytes())
}

// hashOrEmpty returns the bcrypt hash of a password, or "" for none.
func hashOrEmpty(password string) (string, error) {
	if password == "" {
		return "", nil
	}
	return broker.HashPassword([]byte(password))
}

// respond reloads the registry (so the broker acts on the change) and
// answers with the gateway's entry.
func (i *identity) respond(w http.ResponseWriter, code int, site, id string) {
	i.live.Reload()
	g, err := i.file.Get(site, id)
	if err != nil {
		apiError(w, err)
		return
	}
	writeJSON(w, code, view(g))
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "request body: " + err.Error()})
		return false
	}
	return true
}

// apiError answers err with the status its kind calls for.
func apiError(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrNoCert):
		code = http.StatusNotFound
	case errors.Is(err, registry.ErrExists):
		code = http.StatusConflict
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
