package access_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/gateway/command"
)

func TestStoreSurvivesRestartWithoutClearNumbers(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	mustSync(t, s, 7,
		access.Credential{ID: "emp-1", Card: "123:45678"},
		access.Credential{ID: "emp-2", Card: "4660:65000", Until: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
	)
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

	s2 := openStore(t, dir) // a restart
	if s2.Version() != 7 || s2.Len() != 2 {
		t.Fatalf("reopened store: version %d, %d credentials; want 7 and 2", s2.Version(), s2.Len())
	}
	if id, ok, _ := s2.Check("123:45678", "lobby", at); !ok || id != "emp-1" {
		t.Errorf("after restart 123:45678 → %q %v, want emp-1 granted", id, ok)
	}
	if _, ok, why := s2.Check("4660:65000", "lobby", at.AddDate(1, 0, 0)); ok || why != access.ReasonExpired {
		t.Errorf("validity not kept across restart: %v %s", ok, why)
	}
	body, err := os.ReadFile(filepath.Join(dir, access.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"45678", "65000", "123:45678"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("store file holds %q in clear: %s", secret, body)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, access.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v; want 0600", err, fi.Mode())
	}
	// Another gateway (another key) cannot match the same hashes.
	other := openStore(t, t.TempDir())
	if other.Mask("123:45678") == s2.Mask("123:45678") {
		t.Error("two gateways hash a card the same way")
	}
	// Losing the key voids the set instead of failing the gateway.
	if err := os.Remove(filepath.Join(dir, access.KeyFile)); err != nil {
		t.Fatal(err)
	}
	s3 := openStore(t, dir)
	if s3.Version() != 0 || s3.Len() != 0 {
		t.Errorf("store without its key: version %d, %d credentials; want empty", s3.Version(), s3.Len())
	}
}

func TestSyncVersions(t *testing.T) {
	s := openStore(t, t.TempDir())
	mustSync(t, s, 5, access.Credential{ID: "a", Card: "1:1"})
	if _, err := s.Sync(4, nil); !errors.Is(err, access.ErrStale) {
		t.Errorf("older version: %v, want ErrStale", err)
	}
	if changed, err := s.Sync(5, nil); err != nil || changed || s.Len() != 1 {
		t.Errorf("same version: changed %v, err %v, len %d; want unchanged", changed, err, s.Len())
	}
	if _, err := s.Sync(6, []access.Credential{{ID: "a", Card: "1:1"}, {ID: "b", Card: "1:1"}}); err == nil {
		t.Error("two credentials with one card accepted")
	}
	if s.Version() != 5 {
		t.Errorf("refused sync changed the version to %d", s.Version())
	}
	mustSync(t, s, 6) // an empty set revokes everything
	if _, ok, _ := s.Check("1:1", "x", time.Now()); ok {
		t.Error("revoked card still granted")
	}
}

func syncArgs(version any, creds string) map[string]any {
	return map[string]any{"version": version, "credentials": creds}
}

func TestSyncHandler(t *testing.T) {
	s := openStore(t, t.TempDir())
	h := s.Handler()
	act, err := h(command.NewArgs(syncArgs(json.Number("2"),
		`[{"id":"emp-9","card":"7:700","schedule":[{"days":"mon-sun","from":"00:00","until":"24:00"}]}]`)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := act.Run(context.Background())
	if err != nil || res["version"] != int64(2) || res["credentials"] != 1 || res["changed"] != true {
		t.Fatalf("run: %v %v", res, err)
	}
	if _, ok, why := s.Check("7:700", "d", time.Now()); !ok {
		t.Errorf("synced card denied: %s", why)
	}
	bad := []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"credentials": "[]"}, `missing argument "version"`},
		{syncArgs(json.Number("1.5"), "[]"), "want an integer"},
		{syncArgs(json.Number("3"), "{}"), "want a JSON array"},
		{syncArgs(json.Number("3"), `[{"id":"x","card":"1:1","pin":"1"}]`), "pin"},
		{syncArgs(json.Number("3"), `[{"id":"x","card":"1:1","until":"soon"}]`), `credentials[0] (x): until "soon"`},
		{syncArgs(json.Number("3"), `[{"id":"x","card":"1:1","schedule":[{"days":"funday","from":"07:00","until":"08:00"}]}]`), `days "funday"`},
		{syncArgs(json.Number("3"), `[{"id":"x","card":""}]`), "card"},
		{map[string]any{"version": json.Number("3"), "credentials": "[]", "force": true}, `unknown argument "force"`},
	}
	for _, b := range bad {
		_, err := h(command.NewArgs(b.args))
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("args %v: error %v, want one mentioning %q", b.args, err, b.want)
		}
	}
	// A stale sync runs and fails with ErrStale.
	act, err = h(command.NewArgs(syncArgs(json.Number("1"), "[]")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := act.Run(context.Background()); !errors.Is(err, access.ErrStale) {
		t.Errorf("stale sync: %v", err)
	}
}

func FuzzParseCredentials(f *testing.F) {
	f.Add(`[{"id":"a","card":"1:1","from":"2026-01-01T00:00:00Z","until":"2027-01-01T00:00:00Z","schedule":[{"days":"mon-fri,sun","from":"07:00","until":"19:00"}],"doors":["x"]}]`)
	f.Add(`[]`)
	f.Add(`[{"id":"a","card":"1:1","schedule":[{"days":"fri-mon","from":"22:00","until":"24:00"}]}]`)
	f.Add(`[{"id":"","card":"1"}]`)
	f.Add(`[{"id":"a","card":"1:1","schedule":[{"days":"sat","from":"25:00","until":"x"}]}]`)
	f.Fuzz(func(t *testing.T, text string) {
		creds, err := access.ParseCredentials(text)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "credentials") {
				t.Fatalf("error %q does not name the argument", err)
			}
			return
		}
		for _, c := range creds {
			if c.ID == "" || c.Card == "" {
				t.Fatalf("accepted credential without id or card: %+v", c)
			}
			for _, w := range c.Schedule {
				if len(w.Days) == 0 || w.From < 0 || w.From >= 1440 || w.Until < 0 || w.Until > 1440 {
					t.Fatalf("accepted window %+v", w)
				}
			}
		}
	})
}

func TestCardIDFromOSDP(t *testing.T) {
	// docs/access-control.md: H10301 facility 1, number 1 as an OSDP RAW reply.
	id, err := access.CardIDHex("80800080", 26)
	if err != nil || id != "1:1" {
		t.Errorf("CardIDHex = %q, %v; want 1:1", id, err)
	}
	// Not a Wiegand format (bad parity): kept whole, never misread.
	if id, _ := access.CardIDHex("80800000", 26); id != "raw:26:80800000" {
		t.Errorf("bad-parity card = %q, want raw:26:80800000", id)
	}
	if _, err := access.CardIDHex("8080", 26); err == nil {
		t.Error("short card_hex accepted")
	}
}
