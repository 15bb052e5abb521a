package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Broker is a Mosquitto broker run for one test.
type Broker struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	Port    int
	proc    *process
	stopped bool
}

func findMosquitto() string {
	if p := os.Getenv("LULING_MOSQUITTO"); p != "" {
		return p
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Mosquitto starts a broker on a free loopback port with anonymous access,
// persistence (so a restart keeps sessions and queued messages, as a
// production broker must), and queue limits large enough that a test's
// bursts are not dropped. The broker stops when the test ends.
func Mosquitto(t testing.TB) *Broker {
	t.Helper()
	bin := findMosquitto()
	if bin == "" {
		missing(t, "mosquitto", "install it with `apt-get install mosquitto` or run `make services`")
	}
	b := &Broker{t: t, bin: bin, dir: t.TempDir(), Port: FreePort(t)}
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	conf := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location %s/
autosave_interval 1
max_inflight_messages 100
max_queued_messages 1000000
max_queued_bytes 0
message_size_limit 0
log_dest stdout
log_type error
log_type warning
`, b.Port, b.dir)
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		t.Fatalf("testenv: write mosquitto config: %v", err)
	}
	b.Start()
	t.Cleanup(func() { b.Stop() })
	return b
}

// URL returns tcp://127.0.0.1:port.
func (b *Broker) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", b.Port) }

// Start (re)starts the broker on the same port and data folder.
func (b *Broker) Start() {
	b.t.Helper()
	var err error
	// The port may take a moment to be released after a stop.
	for i := 0; i < 50; i++ {
		b.proc, err = startProcess(b.bin, "-c", b.conf)
		if err != nil {
			b.t.Fatalf("testenv: start mosquitto: %v", err)
		}
		if err = waitTCP(fmt.Sprintf("127.0.0.1:%d", b.Port), 5*time.Second); err == nil && !b.proc.exited() {
			b.stopped = false
			return
		}
		b.proc.stop(syscall.SIGKILL)
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("testenv: mosquitto did not start: %v\n%s", err, b.proc.out.String())
}

// Stop stops the broker gracefully (it saves its persistence file).
func (b *Broker) Stop() {
	if b.proc != nil {
		b.proc.stop(syscall.SIGTERM)
	}
	b.stopped = true
}

// Kill stops the broker with SIGKILL.
func (b *Broker) Kill() {
	if b.proc != nil {
		b.proc.stop(syscall.SIGKILL)
	}
	b.stopped = true
}

// Output returns what the broker logged.
func (b *Broker) Output() string {
	if b.proc == nil {
		return ""
	}
	return b.proc.out.String()
}
