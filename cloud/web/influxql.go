package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Influx queries InfluxDB 1.8 (or 2.x's 1.x compatibility API) with
// InfluxQL over HTTP: GET /query?db=…&q=…&epoch=ms. Several statements
// separated by ';' go in one request and come back as one Result each.
type Influx struct {
	URL string // http://host:8086
	DB  string
	// Token is "user:password" for 1.8 with authentication, or a 2.x
	// token; empty for none.
	Token string
	// Client is the HTTP client; a client with a 10 s timeout when nil.
	Client *http.Client
}

// Series is one series of a result.
type Series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// Result is the answer to one statement.
type Result struct {
	Series []Series `json:"series"`
	Error  string   `json:"error"`
}

var defaultClient = &http.Client{Timeout: 10 * time.Second}

// maxResponse bounds what one query may answer (64 MiB): a mistaken query
// cannot eat the process's memory.
const maxResponse = 64 << 20

// Query runs the statements and returns one Result per statement, or the
// first error: of the request, of the whole query or of one statement.
func (in *Influx) Query(ctx context.Context, statements ...string) ([]Result, error) {
	q := strings.Join(statements, ";\n")
	u := strings.TrimRight(in.URL, "/") + "/query?" + url.Values{"db": {in.DB}, "q": {q}, "epoch": {"ms"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("influxdb query: %w", err)
	}
	if in.Token != "" {
		if user, pass, ok := strings.Cut(in.Token, ":"); ok {
			req.SetBasicAuth(user, pass)
		} else {
			req.Header.Set("Authorization", "Token "+in.Token)
		}
	}
	c := in.Client
	if c == nil {
		c = defaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("influxdb query: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("influxdb query: read answer: %w", err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("influxdb query: answer over %d bytes", maxResponse)
	}
	res, err := decodeResults(body)
	if err != nil {
		return nil, fmt.Errorf("influxdb query (HTTP %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("influxdb query: HTTP %d", resp.StatusCode)
	}
	if len(res) != len(statements) {
		return nil, fmt.Errorf("influxdb query: %d results for %d statements", len(res), len(statements))
	}
	for i, r := range res {
		if r.Error != "" {
			return nil, fmt.Errorf("influxdb query %q: %s", statements[i], r.Error)
		}
	}
	return res, nil
}

// QueryParallel runs each statement in a request of its own, all at once,
// and returns their results in order: InfluxDB runs the statements of one
// request one after the other, and a view's sections do not depend on each
// other.
func (in *Influx) QueryParallel(ctx context.Context, statements ...string) ([]Result, error) {
	res := make([]Result, len(statements))
	errs := make([]error, len(statements))
	var wg sync.WaitGroup
	for i, st := range statements {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := in.Query(ctx, st)
			if err == nil {
				res[i] = r[0]
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return res, nil
}

// decodeResults decodes the body of /query: {"results": [...]} or
// {"error": "..."}. Numbers stay json.Number.
func decodeResults(b []byte) ([]Result, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var r struct {
		Results []Result `json:"results"`
		Error   string   `json:"error"`
	}
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("answer is not InfluxDB's JSON: %w", err)
	}
	if r.Error != "" {
		return nil, errors.New(r.Error)
	}
	for i, res := range r.Results {
		for j, s := range res.Series {
			for k, row := range s.Values {
				if len(row) != len(s.Columns) {
					return nil, fmt.Errorf("results[%d].series[%d].values[%d]: %d values for %d columns", i, j, k, len(row), len(s.Columns))
				}
			}
		}
	}
	return r.Results, nil
}

// col returns the index of column name in s, or -1.
func (s *Series) col(name string) int {
	for i, c := range s.Columns {
		if c == name {
			return i
		}
	}
	return -1
}

// Float returns row's value in column name as a number.
func (s *Series) Float(row int, name string) (float64, bool) {
	i := s.col(name)
	if i < 0 || row >= len(s.Values) {
		return 0, false
	}
	switch v := s.Values[row][i].(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// Bool returns row's value in column name as a boolean.
func (s *Series) Bool(row int, name string) (bool, bool) {
	i := s.col(name)
	if i < 0 || row >= len(s.Values) {
		return false, false
	}
	v, ok := s.Values[row][i].(bool)
	return v, ok
}

// String returns row's value in column name as a string.
func (s *Series) String(row int, name string) string {
	i := s.col(name)
	if i < 0 || row >= len(s.Values) {
		return ""
	}
	v, _ := s.Values[row][i].(string)
	return v
}

// Time returns row's time (epoch=ms).
func (s *Series) Time(row int) time.Time {
	ms, ok := s.Float(row, "time")
	if !ok {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}

// quote returns s as an InfluxQL string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
