package influxw

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
)

// Sentinel errors for what callers branch on.
var (
	// ErrUnavailable means the write did not happen and may succeed later:
	// InfluxDB is unreachable, overloaded (5xx, 429) or not yet configured
	// for us (401, 403, 404 database not found).
	ErrUnavailable = errors.New("influxdb unavailable")
	// ErrRejected means InfluxDB refused the points themselves (400, 413,
	// 422); retrying the same lines cannot succeed.
	ErrRejected = errors.New("influxdb rejected the points")
)

// Config selects the InfluxDB server and bucket.
type Config struct {
	URL     string        // http://host:8086
	Token   string        // 2.x token, or "user:password" / "" for 1.8
	Org     string        // ignored by 1.8
	Bucket  string        // 1.8: the database name
	Timeout time.Duration // per request; default 20s
}

// Writer writes line protocol to one bucket. It is safe for concurrent use.
type Writer struct {
	cfg    Config
	client influxdb2.Client
	api    api.WriteAPIBlocking
}

// New returns a Writer. It makes no network call.
func New(cfg Config) (*Writer, error) {
	if cfg.URL == "" {
		return nil, errors.New("influxw: empty InfluxDB URL")
	}
	if cfg.Bucket == "" {
		return nil, errors.New("influxw: empty bucket")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	opts := influxdb2.DefaultOptions().
		SetLogLevel(0).
		SetPrecision(time.Nanosecond).
		SetHTTPRequestTimeout(uint(cfg.Timeout / time.Second))
	c := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	return &Writer{cfg: cfg, client: c, api: c.WriteAPIBlocking(cfg.Org, cfg.Bucket)}, nil
}

// Write sends lines (newline-separated line protocol) in one request. The
// error wraps ErrUnavailable or ErrRejected.
func (w *Writer) Write(ctx context.Context, lines []byte) error {
	if len(lines) == 0 {
		return nil
	}
	err := w.api.WriteRecord(ctx, string(lines))
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("influxdb %s bucket %s: %w: %w", w.cfg.URL, w.cfg.Bucket, ErrUnavailable, ctx.Err())
	}
	var he *ihttp.Error
	if errors.As(err, &he) {
		switch he.StatusCode {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			return fmt.Errorf("influxdb %s bucket %s: HTTP %d: %w: %s", w.cfg.URL, w.cfg.Bucket, he.StatusCode, ErrRejected, describe(he))
		case 0:
			return fmt.Errorf("influxdb %s bucket %s: %w: %s", w.cfg.URL, w.cfg.Bucket, ErrUnavailable, describe(he))
		}
		return fmt.Errorf("influxdb %s bucket %s: HTTP %d: %w: %s", w.cfg.URL, w.cfg.Bucket, he.StatusCode, ErrUnavailable, describe(he))
	}
	return fmt.Errorf("influxdb %s bucket %s: %w: %v", w.cfg.URL, w.cfg.Bucket, ErrUnavailable, err)
}

func describe(he *ihttp.Error) string {
	switch {
	case he.Message != "":
		return he.Message
	case he.Err != nil:
		return he.Err.Error()
	}
	return he.Code
}

// Close releases idle connections.
func (w *Writer) Close() { w.client.Close() }
