package gateway

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"testing"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/internal/testenv"
)

// childEnv names the config file TestGatewayChild runs.
const childEnv = "LULING_GATEWAY_CHILD"

// TestGatewayChild is the gateway process of the crash tests and the card
// to strike benchmark: it runs a gateway from the config file named by
// $LULING_GATEWAY_CHILD until it is killed or its stdin closes, logging
// warnings to stderr. Without the variable it does nothing.
func TestGatewayChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("runs only as the child process of a crash test or benchmark")
	}
	opts, err := all.ConfigOptions()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{Version: "child", Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }() //nolint:errcheck // EOF or an error both mean stop
	if err := gw.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// child is a gateway process; exited is closed once it has ended.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// gatewayChild starts TestGatewayChild in a process of its own on the
// config file cfgPath. The test's cleanup stops it (closing its stdin) if
// it still runs, and logs its output when the test failed.
func gatewayChild(t testing.TB, cfgPath string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGatewayChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+cfgPath)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() { defer close(c.exited); cmd.Wait() }() //nolint:errcheck // a killed child exits with an error
	t.Cleanup(func() {
		stdin.Close()
		<-c.exited
		if t.Failed() {
			t.Logf("gateway child output:\n%s", out.String())
		}
	})
	return c
}
