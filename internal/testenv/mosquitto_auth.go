package testenv

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// MosquittoConf starts a broker with the configuration text conf, written
// to mosquitto.conf in dir, and waits until it listens on 127.0.0.1:port
// (conf must open that listener). Other files the configuration names
// (password file, ACL file, certificates) are the caller's; when the broker
// runs as root without `user root` it drops to the mosquitto user, so they
// must be readable by it. The broker stops when the test ends.
func MosquittoConf(t testing.TB, dir, conf string, port int) *Broker {
	t.Helper()
	bin := findMosquitto()
	if bin == "" {
		missing(t, "mosquitto", "install it with `apt-get install mosquitto` or run `make services`")
	}
	b := &Broker{t: t, bin: bin, dir: dir, Port: port, conf: filepath.Join(dir, "mosquitto.conf")}
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		t.Fatalf("testenv: write mosquitto config: %v", err)
	}
	b.Start()
	t.Cleanup(func() { b.Stop() })
	return b
}

// MosquittoPasswd writes a Mosquitto password file at path for the given
// users and passwords: with `mosquitto_passwd -b` when it is installed,
// otherwise with the hashes it writes (PBKDF2-SHA512, 101 iterations, a
// 12-byte salt: "$7$101$salt$hash", base64).
func MosquittoPasswd(t testing.TB, path string, users map[string]string) {
	t.Helper()
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	if tool, err := exec.LookPath("mosquitto_passwd"); err == nil {
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		for _, u := range names {
			if out, err := exec.Command(tool, "-b", path, u, users[u]).CombinedOutput(); err != nil {
				t.Fatalf("testenv: mosquitto_passwd %s: %v\n%s", u, err, out)
			}
		}
		return
	}
	var sb strings.Builder
	for _, u := range names {
		h, err := MosquittoHash(users[u])
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		fmt.Fprintf(&sb, "%s:%s\n", u, h)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// MosquittoHash returns a password hash in the format of Mosquitto 2's
// password file.
func MosquittoHash(password string) (string, error) {
	const iterations = 101
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha512.New, password, salt, iterations, sha512.Size)
	if err != nil {
		return "", err
	}
	enc := base64.StdEncoding
	return fmt.Sprintf("$7$%d$%s$%s", iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}
