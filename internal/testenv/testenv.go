// Package testenv starts the real services that tests need: a Mosquitto
// broker and an InfluxDB 1.8 server, each on a free loopback port with a
// generated configuration and a fresh data folder.
//
// `make test` installs both (Mosquitto from the OS packages, influxd with go
// install into .tools/bin) and sets LULING_REQUIRE_SERVICES=1, so a missing
// service fails the test run. Run directly with `go test`, a test whose
// service is missing is skipped with a message saying how to install it.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RepoRoot returns the folder holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func missing(t testing.TB, what, how string) {
	t.Helper()
	if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
		t.Fatalf("testenv: %s not found: %s", what, how)
	}
	t.Skipf("testenv: %s not found (%s); skipping", what, how)
}

func waitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// process is a service child process with its output kept for failure reports.
type process struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

func startProcess(name string, args ...string) (*process, error) {
	p := &process{out: new(bytes.Buffer), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop sends sig and waits up to 10 s, then kills.
func (p *process) stop(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
