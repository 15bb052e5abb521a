package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/internal/testenv"
)

// devsim parking --doors writes a config whose doors use the simulated GPIO
// lines it serves, and the credentials.sync command for its cards.
func TestParkingWithDoors(t *testing.T) {
	dir, err := os.MkdirTemp("", "devsim-") // short: the socket path
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"parking", "--bays", "2", "--buses", "1", "--doors", "2", "--dir", dir,
			"--access-every", "1h", "--write-config", cfgPath}, &out, &errOut)
	}()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 20*time.Second, "the credentials command", func() bool { return strings.Contains(out.String(), "credentials-sync.json") })

	opts, err := all.ConfigOptions()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, append(opts, config.SkipFileChecks())...)
	if err != nil {
		t.Fatalf("the gateway rejects the written config: %v", err)
	}
	sock := filepath.Join(dir, "gpio.sock")
	if len(cfg.Doors) != 2 || cfg.Doors[0].Name != "lobby" || cfg.Doors[1].Readers[0] != "reader-2" || cfg.GPIO.Simulator != sock {
		t.Fatalf("doors %+v, gpio %+v", cfg.Doors, cfg.GPIO)
	}
	c := simgpio.Dial(sock, simgpio.ClientOptions{})
	defer c.Close()
	for _, d := range cfg.Doors {
		for _, line := range []string{d.Strike.Name, d.Contact.Name, d.Exit.Name} {
			if _, err := c.Open(line); err != nil {
				t.Errorf("door %s: %v", d.Name, err)
			}
		}
	}
	var cmd struct {
		Name string `json:"name"`
		Args struct {
			Version     int    `json:"version"`
			Credentials string `json:"credentials"`
		} `json:"args"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "credentials-sync.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cmd); err != nil || cmd.Name != "credentials.sync" || cmd.Args.Version != 1 ||
		!strings.Contains(cmd.Args.Credentials, `"card":"10:1101"`) {
		t.Errorf("credentials command %s: %v", data, err)
	}
}
