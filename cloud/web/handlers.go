package web

import (
	"context"
	"errors"
	"net/http"
	"sort"

	"github.com/luling-edge/luling/cloud/auth"
	"github.com/luling-edge/luling/cloud/fleet"
)

func (s *Server) areaPage(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	a, err := s.area(r.Context())
	if err != nil {
		s.errorPage(w, r, p, http.StatusBadGateway, "reading InfluxDB: "+err.Error())
		return
	}
	s.render(w, http.StatusOK, "area", "", page{Title: "Area", User: p, Now: s.now(), Nav: "area", Data: a})
}

func (s *Server) areaLive(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	s.stream(w, r, "area", "area", func(ctx context.Context) ([]byte, error) {
		a, err := s.area(ctx)
		if err != nil {
			return nil, err
		}
		return s.fragment("area", "area-body", page{Now: s.now(), Data: a})
	})
}

func (s *Server) lotPage(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	site, lot := r.PathValue("site"), r.PathValue("lot")
	rng := r.URL.Query().Get("range")
	if rng != "7d" {
		rng = "24h"
	}
	v, err := s.lot(r.Context(), site, lot)
	if err == nil {
		v.Range = rng
		v.Plot, err = s.lotPlot(r.Context(), site, lot, rng)
	}
	if err != nil {
		s.errorPage(w, r, p, http.StatusBadGateway, "reading InfluxDB: "+err.Error())
		return
	}
	if len(v.Zones) == 0 {
		s.errorPage(w, r, p, http.StatusNotFound, "lot "+lot+" of site "+site+": InfluxDB holds no bays of it and no gateway has it configured")
		return
	}
	s.render(w, http.StatusOK, "lot", "", page{Title: "Lot " + lot, User: p, Now: s.now(), Nav: "area", Data: v})
}

func (s *Server) lotLive(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	site, lot := r.PathValue("site"), r.PathValue("lot")
	s.stream(w, r, "lot/"+site+"/"+lot, "lot", func(ctx context.Context) ([]byte, error) {
		v, err := s.lot(ctx, site, lot)
		if err != nil {
			return nil, err
		}
		return s.fragment("lot", "lot-body", page{Now: s.now(), Data: v})
	})
}

func (s *Server) gatewaysPage(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	gws := s.fleet.Gateways()
	sort.Slice(gws, func(i, j int) bool {
		if gws[i].Online != gws[j].Online {
			return !gws[i].Online // offline first: they need attention
		}
		if gws[i].Site != gws[j].Site {
			return gws[i].Site < gws[j].Site
		}
		return gws[i].Gateway < gws[j].Gateway
	})
	s.render(w, http.StatusOK, "gateways", "", page{Title: "Gateways", User: p, Now: s.now(), Nav: "gateways", Data: gws})
}

// gatewayPageData is the gateway view, the commands it offers and the
// result of a command.
type gatewayPageData struct {
	*GatewayView
	Commands  any
	CanAct    bool
	HasSender bool
	Form      commandForm
	Result    *CommandResult
}

func (s *Server) gatewayPage(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	site, gw := r.PathValue("site"), r.PathValue("gw")
	v, err := s.gateway(r.Context(), site, gw)
	if errors.Is(err, errNoGateway) {
		s.errorPage(w, r, p, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		s.errorPage(w, r, p, http.StatusBadGateway, "reading InfluxDB: "+err.Error())
		return
	}
	d := gatewayPageData{GatewayView: v, Commands: formCommands, CanAct: p.Role.Allows(auth.Operator), HasSender: s.cmds != nil}
	s.render(w, http.StatusOK, "gateway", "", page{Title: site + "/" + gw, User: p, Now: s.now(), Nav: "gateways", Data: d})
}

func readCommandForm(r *http.Request) commandForm {
	return commandForm{
		Name: r.PostFormValue("name"), Device: r.PostFormValue("device"), Point: r.PostFormValue("point"), Value: r.PostFormValue("value"),
		Version: r.PostFormValue("version"), Credentials: r.PostFormValue("credentials"),
	}
}

// commandConfirm answers the command form with what would be sent and a
// button that sends it: nothing reaches a gateway without that second step.
func (s *Server) commandConfirm(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	s.commandStep(w, r, p, false)
}

// gatewayLive streams the gateway view's health, devices and plugins.
func (s *Server) gatewayLive(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	site, gw := r.PathValue("site"), r.PathValue("gw")
	if _, ok := s.fleet.Gateway(site, gw); !ok {
		http.Error(w, "gateway "+site+"/"+gw+": "+errNoGateway.Error(), http.StatusNotFound)
		return
	}
	s.stream(w, r, "gateway/"+site+"/"+gw, "gateway", func(ctx context.Context) ([]byte, error) {
		v, err := s.gateway(ctx, site, gw)
		if err != nil {
			return nil, err
		}
		return s.fragment("gateway", "gateway-body", page{Now: s.now(), Data: v})
	})
}

// commandSend sends the confirmed command and shows the gateway's reply.
func (s *Server) commandSend(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	s.commandStep(w, r, p, true)
}

func (s *Server) commandStep(w http.ResponseWriter, r *http.Request, p auth.Principal, send bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	site, gw := r.PathValue("site"), r.PathValue("gw")
	if s.cmds == nil {
		s.errorPage(w, r, p, http.StatusServiceUnavailable, "this cloudd sends no commands")
		return
	}
	if _, ok := s.fleet.Gateway(site, gw); !ok {
		s.errorPage(w, r, p, http.StatusNotFound, "gateway "+site+"/"+gw+": "+errNoGateway.Error())
		return
	}
	f := readCommandForm(r)
	req, err := f.request()
	if err != nil {
		s.errorPage(w, r, p, http.StatusBadRequest, err.Error())
		return
	}
	d := gatewayPageData{GatewayView: &GatewayView{Gateway: fleet.Gateway{Site: site, Gateway: gw}}, CanAct: true, HasSender: true, Form: f}
	frag := "command-confirm"
	if send {
		res := s.sendCommand(r.Context(), site, gw, req)
		s.log.Info("command sent from the web platform", "user", p.Name, "site", site, "gateway", gw, "name", req.Name, "id", res.ID, "status", res.Status)
		d.Result = &res
		frag = "command-result"
	}
	pg := page{Title: site + "/" + gw, User: p, Now: s.now(), Nav: "gateways", Data: d}
	if r.Header.Get("HX-Request") != "" {
		s.render(w, http.StatusOK, "gateway", frag, pg)
		return
	}
	// Without JavaScript: the step as a page of its own.
	s.render(w, http.StatusOK, "command", "", pg)
}

func (s *Server) accessPage(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := r.URL.Query()
	result := q.Get("result")
	switch result {
	case "", "granted", "denied", "alarm":
	default:
		result = ""
	}
	v, err := s.access(r.Context(), q.Get("q"), result)
	if err != nil {
		s.errorPage(w, r, p, http.StatusBadGateway, "reading InfluxDB: "+err.Error())
		return
	}
	pg := page{Title: "Access", User: p, Now: s.now(), Nav: "access", Data: v}
	if r.Header.Get("HX-Request") != "" { // the search as you type
		s.render(w, http.StatusOK, "access", "access-log", pg)
		return
	}
	s.render(w, http.StatusOK, "access", "", pg)
}

func (s *Server) solarPage(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	v, err := s.solar(r.Context())
	if err != nil {
		s.errorPage(w, r, p, http.StatusBadGateway, "reading InfluxDB: "+err.Error())
		return
	}
	s.render(w, http.StatusOK, "solar", "", page{Title: "Solar", User: p, Now: s.now(), Nav: "solar", Data: v})
}
