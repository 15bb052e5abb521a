// Package safefile holds the two things cloudd's small state files (API
// tokens, accounts, the gateway registry) need to be changed by a CLI
// while a running cloudd reads them: an atomic replace that never shows
// half a file, and an advisory lock so that two commands at once apply
// their changes one after the other. UpdateJSON combines them.
package safefile

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Replace writes path atomically with mode perm: a new temporary file in
// the same directory, fsync, rename over path, fsync of the directory.
func Replace(path string, body []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Same reports whether a and b describe the same version of a file: the
// same inode, size and modification time. Either may be nil (no file).
func Same(a, b fs.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// UpdateJSON is the read-modify-write of a JSON state file: under the
// file's lock (PATH.lock), list its entries, change them and Replace the
// file (mode 0600) with the indented JSON that wrap makes of the result.
// what names the file in errors.
func UpdateJSON[T any](path, what string, list func() ([]T, error), change func([]T) ([]T, error), wrap func([]T) any) error {
	unlock, err := Lock(path + ".lock")
	if err != nil {
		return fmt.Errorf("%s %s: lock: %w", what, path, err)
	}
	defer unlock()
	entries, err := list()
	if err != nil {
		return err
	}
	if entries, err = change(entries); err != nil {
		return err
	}
	b, err := json.MarshalIndent(wrap(entries), "", "  ")
	if err == nil {
		err = Replace(path, append(b, '\n'), 0o600)
	}
	if err != nil {
		return fmt.Errorf("%s %s: write: %w", what, path, err)
	}
	return nil
}
