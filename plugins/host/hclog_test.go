package host

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// go-plugin names the plugin's path under "plugin", which the host's
// logger already carries: the bridge drops that attribute only, and keeps
// go-plugin's other attributes and logger names.
func TestHCLoggerWithDropsPluginPath(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, nil)).With("device", "sign-1", "plugin", "/opt/p")
	l := newHCLogger(base).With("plugin", "/opt/p", "id", 42).Named("stdio")
	l.Info("plugin process exited", "plugin", "/opt/p", "code", 0)
	out := buf.String()
	if n := strings.Count(out, "plugin=/opt/p"); n != 1 {
		t.Errorf("plugin attribute appears %d times, want once: %s", n, out)
	}
	for _, want := range []string{"device=sign-1", "id=42", "code=0", "logger=stdio"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line lacks %s: %s", want, out)
		}
	}
}
