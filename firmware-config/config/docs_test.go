package config

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/luling-edge/luling/internal/yamlx"
)

// TestDocsListEveryKey keeps docs/config.md in step with the loader: every
// key has a table row, and the documented defaults are the code's.
func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	row := func(key string) string {
		i := strings.Index(doc, "| `"+key+"` |")
		if i < 0 {
			return ""
		}
		j := strings.IndexByte(doc[i:], '\n')
		return doc[i : i+j]
	}
	for _, keys := range [][]string{rootKeys, logKeys, uplinkKeys, tlsKeys, outboxKeys, statusKeys, pipelineKeys, busKeys, deviceKeys, gpioKeys, lotKeys, pointKeys, laneKeys, barrierKeys} {
		for _, k := range keys {
			if row(k) == "" {
				t.Errorf("docs/config.md has no row for key %q", k)
			}
		}
	}
	defaults := map[string]string{
		"level": DefaultLogLevel, "format": DefaultLogFormat, "qos": strconv.Itoa(DefaultQoS),
		"keepalive": yamlx.FmtDur(DefaultKeepalive), "connect_timeout": yamlx.FmtDur(DefaultConnectTimeout),
		"max_inflight": strconv.Itoa(DefaultMaxInflight), "reconnect_max": "60s",
		"max_bytes": FormatSize(DefaultOutboxMaxBytes), "commit_interval": yamlx.FmtDur(DefaultCommitInterval),
		"telemetry_window":  yamlx.FmtDur(DefaultTelemetryWindow),
		"batch_max_records": strconv.Itoa(DefaultBatchMaxRecords), "listen": DefaultStatusListen,
		"health_interval": yamlx.FmtDur(DefaultHealthInterval), "baud": strconv.Itoa(DefaultBaud),
		"data_bits": strconv.Itoa(DefaultDataBits), "parity": DefaultParity, "stop_bits": strconv.Itoa(DefaultStopBits),
		"timeout": yamlx.FmtDur(DefaultBusTimeout), "backoff_max": yamlx.FmtDur(DefaultBackoffMax), "poll": yamlx.FmtDur(DefaultPoll),
	}
	if DefaultReconnectMax.String() != "1m0s" {
		t.Errorf("reconnect_max default changed: update the docs row")
	}
	for k, v := range defaults {
		cells := strings.Split(row(k), "|")
		if len(cells) < 4 || !strings.Contains(cells[3], "`"+v+"`") {
			t.Errorf("docs/config.md: default of %s should be `%s`: %s", k, v, row(k))
		}
	}
	if !strings.Contains(row("max_silence"), "`"+yamlx.FmtDur(DefaultMaxSilence)+"`") {
		t.Errorf("docs/config.md: pipeline max_silence default: %s", row("max_silence"))
	}
}
