package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// lotRow is one zone's last parking_lot point.
type lotRow struct {
	site, gateway, lot, zone string
	capacity, occupied, free int64
	source                   string // sensors, counting or combined ("" before the field existed)
}

// counted reports whether the row is a lot's whole count from its
// entrance lanes: the lot's total, beside its sensor zones.
func (r lotRow) counted() bool {
	return r.zone == "" && (r.source == "counting" || r.source == "combined")
}

// lotQuery asks one InfluxDB for the lots' last points.
type lotQuery struct{ url, db, token, site string }

// runLots prints parking occupancy per lot and zone from InfluxDB, once or
// continuously: what a property manager's dashboard shows, for a terminal.
func runLots(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flagSet("lots", "[-influx URL] [-db NAME] [-site SITE] [-watch 2s]", stderr)
	influx := fs.String("influx", "http://127.0.0.1:8086", "InfluxDB URL")
	db := fs.String("db", "community", "database (InfluxDB 2.x: bucket mapped to a database)")
	token := fs.String("token", "", `InfluxDB token ("user:password" for 1.x with auth)`)
	site := fs.String("site", "", "only this site")
	watch := fs.Duration("watch", 0, "refresh every interval on one line (0: print once)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s lots: unexpected arguments %q\n", programName, fs.Args())
		return exitUsage
	}
	if *watch < 0 {
		fmt.Fprintf(stderr, "%s lots: -watch %v: want a positive interval or 0\n", programName, *watch)
		return exitUsage
	}
	q := lotQuery{url: strings.TrimRight(*influx, "/"), db: *db, token: *token, site: *site}
	if *watch == 0 {
		rows, err := q.fetch(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "%s lots: %v\n", programName, err)
			return exitFailed
		}
		if len(rows) == 0 {
			fmt.Fprintln(stdout, "no parking_lot points in the last day")
			return exitOK
		}
		fmt.Fprintf(stdout, "%-12s %-12s %-16s %-8s %8s %8s %8s\n", "SITE", "GATEWAY", "LOT", "ZONE", "CAPACITY", "OCCUPIED", "FREE")
		for _, r := range rows {
			fmt.Fprintf(stdout, "%-12s %-12s %-16s %-8s %8d %8d %8d\n", r.site, r.gateway, r.lot, r.zone, r.capacity, r.occupied, r.free)
		}
		return exitOK
	}
	t := time.NewTicker(*watch)
	defer t.Stop()
	for {
		rows, err := q.fetch(ctx)
		line := ""
		if err != nil {
			line = "influxdb: " + err.Error()
		} else {
			line = summarize(rows)
		}
		fmt.Fprintf(stdout, "\r\033[K%s %s", time.Now().Format("15:04:05"), line)
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout)
			return exitOK
		case <-t.C:
		}
	}
}

func (q lotQuery) fetch(ctx context.Context) ([]lotRow, error) {
	where := "time > now() - 1d"
	if q.site != "" {
		where += " AND \"site\"='" + strings.ReplaceAll(q.site, "'", `\'`) + "'"
	}
	stmt := `SELECT last("capacity"), last("occupied"), last("free"), last("source") FROM "parking_lot" WHERE ` + where + ` GROUP BY "site","gateway","lot","zone"`
	form := url.Values{"db": {q.db}, "q": {stmt}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.url+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if q.token != "" {
		req.Header.Set("Authorization", "Token "+q.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/query: HTTP %d: %s", q.url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var r struct {
		Results []struct {
			Error  string `json:"error"`
			Series []struct {
				Tags   map[string]string `json:"tags"`
				Values [][]any           `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s/query: unexpected answer: %v", q.url, err)
	}
	var rows []lotRow
	for _, res := range r.Results {
		if res.Error != "" {
			return nil, fmt.Errorf("%s/query: %s", q.url, res.Error)
		}
		for _, s := range res.Series {
			if len(s.Values) == 0 || len(s.Values[0]) < 4 {
				continue
			}
			v := s.Values[0]
			row := lotRow{site: s.Tags["site"], gateway: s.Tags["gateway"], lot: s.Tags["lot"], zone: s.Tags["zone"]}
			row.capacity, row.occupied, row.free = num(v[1]), num(v[2]), num(v[3])
			if len(v) > 4 {
				row.source, _ = v[4].(string)
			}
			rows = append(rows, row)
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		return a.site+"\x00"+a.gateway+"\x00"+a.lot+"\x00"+a.zone < b.site+"\x00"+b.gateway+"\x00"+b.lot+"\x00"+b.zone
	})
	return rows, nil
}

// summarize renders one line: "demo-lot a 12/32 b 30/32 | total 42/64 occupied, 22 free".
func summarize(rows []lotRow) string {
	if len(rows) == 0 {
		return "waiting for parking_lot points..."
	}
	var b strings.Builder
	var capacity, occupied int64
	counted := map[string]bool{} // lots counted at their lanes: their total is the count
	for _, r := range rows {
		counted[r.site+"\x00"+r.lot] = counted[r.site+"\x00"+r.lot] || r.counted()
	}
	lot := ""
	for _, r := range rows {
		if r.lot != lot {
			if lot != "" {
				b.WriteString(" |")
			}
			fmt.Fprintf(&b, " %s:", r.lot)
			lot = r.lot
		}
		zone := r.zone
		if r.counted() {
			zone = "gates"
		}
		fmt.Fprintf(&b, " %s %d/%d", zone, r.occupied, r.capacity)
		if r.counted() || !counted[r.site+"\x00"+r.lot] {
			capacity += r.capacity
			occupied += r.occupied
		}
	}
	fmt.Fprintf(&b, " | total %d/%d occupied, %d free", occupied, capacity, capacity-occupied)
	return strings.TrimSpace(b.String())
}

// num reads an InfluxQL integer column (null reads as 0).
func num(v any) int64 {
	n, _ := v.(json.Number)
	i, _ := n.Int64()
	return i
}
