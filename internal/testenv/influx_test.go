package testenv

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A [data] setting that is not a plain name, one that would move testenv's
// folders, or a value over several lines is refused before anything starts.
func TestStartInfluxWithRefusesBadSettings(t *testing.T) {
	for _, c := range []struct {
		key, value, want string
	}{
		{"index-version\n[http]", `"tsi1"`, "want a setting name"},
		{"Index", `"tsi1"`, "want a setting name"},
		{"dir", `"/tmp"`, "dir and wal-dir are testenv's"},
		{"wal-dir", `"/tmp"`, "dir and wal-dir are testenv's"},
		{"index-version", "\"tsi1\"\n[http]", "want one TOML value"},
		{"index-version", "", "want one TOML value"},
	} {
		_, err := StartInfluxWith("/nonexistent/influxd", t.TempDir(), 1, 2, map[string]string{c.key: c.value})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q = %q: err %v, want one saying %q", c.key, c.value, err, c.want)
		}
	}
}

// A setting given to StartInfluxWith reaches the server: with
// index-version tsi1 the database's shard keeps a TSI index folder.
func TestStartInfluxWithSetting(t *testing.T) {
	bin := FindInfluxd()
	if bin == "" {
		missing(t, "influxd", "run `make services`")
	}
	dir := t.TempDir()
	in, err := StartInfluxWith(bin, dir, FreePort(t), FreePort(t), map[string]string{"index-version": `"tsi1"`})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := in.CreateDatabase("tsi"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Query("tsi", `SELECT * FROM m`); err != nil {
		t.Fatal(err)
	}
	if err := writeLine(in.URL, "tsi", "m,t=a v=1 1700000000000000000"); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 30*time.Second, "a TSI index folder in the shard", func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "data", "tsi", "autogen", "*", "index"))
		return len(m) > 0
	})
}

func writeLine(url, db, line string) error {
	resp, err := http.Post(url+"/write?db="+db, "text/plain", strings.NewReader(line))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("write: HTTP %d: %s", resp.StatusCode, b)
	}
	return nil
}
