package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luling-edge/luling/cloud/auth"
)

func TestUserCmd(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.json")
	cloudd := func(stdin string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
	if _, err := cloudd("correct horse\n", "user", "add", "-users", users, "-name", "alice", "-role", "operator"); err != nil {
		t.Fatal(err)
	}
	var ue *usageError
	if _, err := cloudd("short\n", "user", "add", "-users", users, "-name", "bob", "-role", "viewer"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "8 to 72") {
		t.Errorf("short password: %v", err)
	}
	if _, err := cloudd("long enough\n", "user", "add", "-users", users, "-name", "bob", "-role", "admin"); !errors.As(err, &ue) {
		t.Errorf("bad role: %v", err)
	}
	if _, err := cloudd("", "user", "list"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "-users FILE") {
		t.Errorf("no file: %v", err)
	}
	out, err := cloudd("", "user", "list", "-users", users)
	if err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "operator") {
		t.Fatalf("list: %q %v", out, err)
	}
	if _, err := cloudd("battery staple\n", "user", "passwd", "-users", users, "alice"); err != nil {
		t.Fatal(err)
	}
	list, _ := (&auth.UserFile{Path: users}).List()
	if len(list) != 1 || !strings.HasPrefix(list[0].Bcrypt, "$2") {
		t.Fatalf("file: %+v", list)
	}
	if _, err := cloudd("", "user", "remove", "-users", users, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := cloudd("", "user", "remove", "-users", users, "alice"); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("second remove: %v", err)
	}
}
