package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/luling-edge/luling/payload"
)

// Duration is a JSON duration: a Go duration string ("10s", "1.5m") or a
// number of seconds.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want a duration such as \"10s\" or a number of seconds", s)
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f < 0 || f > 1e6 {
		return fmt.Errorf("duration %s: want a duration such as \"10s\" or a number of seconds", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Register adds the command routes to mux:
//
//	POST /api/v1/gateways/{site}/{gateway}/commands
//	GET  /api/v1/gateways/{site}/{gateway}/commands/{id}
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/gateways/{site}/{gateway}/commands", s.post)
	mux.HandleFunc("GET /api/v1/gateways/{site}/{gateway}/commands/{id}", s.get)
}

func (s *Service) post(w http.ResponseWriter, r *http.Request) {
	site, gw := r.PathValue("site"), r.PathValue("gateway")
	data, err := io.ReadAll(io.LimitReader(r.Body, payload.MaxCommandBytes+1))
	if err != nil {
		jsonError(w, http.StatusBadRequest, "", fmt.Sprintf("read request body: %v", err))
		return
	}
	if len(data) > payload.MaxCommandBytes {
		jsonError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body over %d bytes", payload.MaxCommandBytes))
		return
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var req Request
	if err := dec.Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, "", fmt.Sprintf("request body: %v (want {\"name\": \"device.write\", \"args\": {…}, \"timeout\": \"10s\", \"queue\": false})", err))
		return
	}
	if dec.More() {
		jsonError(w, http.StatusBadRequest, "", "request body: data after the JSON object")
		return
	}
	out, err := s.Send(r.Context(), site, gw, req)
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(out.Reply)
		w.Write([]byte("\n"))
	case errors.Is(err, ErrNoReply) && req.Queue:
		msg := "sent; no reply yet: the gateway may still run it"
		if out.Queued {
			msg = "queued in this cloudd instance: published when the gateway comes online"
		}
		writeJSON(w, http.StatusAccepted, map[string]any{
			"id": out.ID, "status": "queued", "expires": out.Expires.UTC().Format(time.RFC3339Nano),
			"message": fmt.Sprintf("%s, until %s; GET /api/v1/gateways/%s/%s/commands/%s for the reply", msg, out.Expires.UTC().Format(time.RFC3339), site, gw, out.ID),
		})
	case errors.Is(err, ErrNoReply):
		jsonError(w, http.StatusGatewayTimeout, out.ID, err.Error()+"; the command expired with the timeout, so the gateway will not run it later")
	case errors.Is(err, ErrBadRequest):
		jsonError(w, http.StatusBadRequest, out.ID, err.Error())
	case errors.Is(err, ErrUnknownGateway):
		jsonError(w, http.StatusNotFound, out.ID, err.Error())
	case errors.Is(err, ErrOffline), errors.Is(err, ErrBusy):
		jsonError(w, http.StatusConflict, out.ID, err.Error())
	case errors.Is(err, ErrTooMany):
		jsonError(w, http.StatusServiceUnavailable, out.ID, err.Error())
	default: // ErrNoBroker
		jsonError(w, http.StatusBadGateway, out.ID, err.Error())
	}
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	site, gw, id := r.PathValue("site"), r.PathValue("gateway"), r.PathValue("id")
	b, ok := s.Reply(site, gw, id)
	if !ok {
		jsonError(w, http.StatusNotFound, id, fmt.Sprintf("command %s to %s/%s: no reply seen yet (replies are kept in memory, the most recent %d bytes)", id, site, gw, s.cfg.CacheBytes))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
	w.Write([]byte("\n"))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, code int, id, msg string) {
	m := map[string]any{"error": msg}
	if id != "" {
		m["id"] = id
	}
	writeJSON(w, code, m)
}
