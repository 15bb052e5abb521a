package main

import (
	"context"
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

// devsim parking --lanes writes a config with the lot counted at an entry
// and an exit lane whose lines it serves: on a simulator of its own, or on
// the doors' when there are doors.
func TestParkingWithLanes(t *testing.T) {
	for _, variant := range []string{"lanes", "doors", "signs"} {
		t.Run(variant, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "devsim-") // short: the socket path
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			cfgPath := filepath.Join(dir, "gateway.yaml")
			args := []string{"parking", "--bays", "2", "--buses", "1", "--lanes", "--dir", dir,
				"--access-every", "1h", "--lane-every", "1h", "--lane-capacity", "12", "--write-config", cfgPath}
			switch variant {
			case "doors":
				args = append(args, "--doors", "1")
			case "signs":
				sign, rule := filepath.Join(dir, "guidance-display"), filepath.Join(dir, "zone-guidance")
				os.WriteFile(sign, []byte("sign plugin"), 0o755)
				os.WriteFile(rule, []byte("rule plugin"), 0o755)
				args = append(args, "--sign-plugin", sign, "--guidance-plugin", rule)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var out, errOut syncBuffer
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, args, &out, &errOut)
			}()
			defer func() { cancel(); <-done }()
			testenv.WaitFor(t, 20*time.Second, "the lanes started", func() bool { return strings.Contains(out.String(), "lanes gate-in and gate-out") })
			opts, err := all.ConfigOptions()
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(cfgPath, append(opts, config.SkipFileChecks())...)
			if err != nil {
				t.Fatalf("the gateway rejects the written config: %v", err)
			}
			if len(cfg.Lots) != 1 || cfg.Lots[0].Name != "demo-lot" || cfg.Lots[0].Capacity != 12 || len(cfg.Lanes) != 2 ||
				cfg.Lanes[0].Direction != "in" || cfg.Lanes[0].Wiegand == nil || cfg.Lanes[1].Lot != "demo-lot" {
				t.Fatalf("lots %+v lanes %+v", cfg.Lots, cfg.Lanes)
			}
			if sign := cfg.Lots[0].Sign; (variant == "signs") != (sign != nil) || (sign != nil && sign.Device != "sign-gate") {
				t.Fatalf("entrance sign %+v with %s", sign, variant)
			}
			if cfg.GPIO.Simulator != filepath.Join(dir, "gpio.sock") {
				t.Fatalf("gpio %+v", cfg.GPIO)
			}
			c := simgpio.Dial(cfg.GPIO.Simulator, simgpio.ClientOptions{})
			defer c.Close()
			for _, line := range cfg.GPIOLines {
				if _, err := c.Open(line); err != nil {
					t.Errorf("line %s: %v", line, err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "credentials-sync.json")); err != nil {
				t.Errorf("no credentials command for the residents' tags: %v", err)
			}
		})
	}
}
