package safefile

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	if err := Replace(p, []byte("new body"), 0o600); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new body" {
		t.Errorf("content %q", b)
	}
	if after.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", after.Mode().Perm())
	}
	if Same(before, after) {
		t.Error("Same reports a replaced file unchanged")
	}
	again, _ := os.Stat(p)
	if !Same(after, again) || !Same(nil, nil) || Same(nil, after) {
		t.Error("Same wrong on an unchanged or missing file")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := Replace(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Error("Replace into a missing folder succeeded")
	}
}

// TestLockSerializes: read-modify-write under Lock from many goroutines
// loses no increment.
func TestLockSerializes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "n")
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := Lock(p + ".lock")
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			b, _ := os.ReadFile(p)
			if err := Replace(p, append(b, 'x'), 0o600); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if b, _ := os.ReadFile(p); len(b) != 20 {
		t.Errorf("%d increments survived, want 20", len(b))
	}
}
