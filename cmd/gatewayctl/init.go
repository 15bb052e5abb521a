package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/luling-edge/luling/gateway/serialport"
)

// runInit scans a bus and writes a commented starting config from what
// answered: placeholders for the site, the gateway and the uplink (which
// validate refuses until they are filled in), the bus with the line
// settings that worked, and one device per unit that answered.
func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flagSet("init", "-port PATH [-auto | -baud N -parity even] [-units 1-247] [-profile NAME] [-o FILE]", stderr)
	lf := addLineFlags(fs, 200*time.Millisecond, true)
	profile := fs.String("profile", "", "the profile of the devices found (a built-in name or a file under profiles_dir); without it the devices are written commented out")
	out := fs.String("o", "", "write the config to FILE (refuses to overwrite one); default standard output")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	pc, list, ok := lf.line("init", fs, stderr)
	if !ok {
		return exitUsage
	}
	profName := ""
	if *profile != "" {
		p, err := findProfile(*profile)
		if err != nil {
			fmt.Fprintf(stderr, "%s init: -profile: %v\n", programName, err)
			return exitUsage
		}
		profName = p.Name
	}
	if pc, ok = lf.settle(ctx, "init", pc, list, stderr, stderr); !ok {
		return exitFailed
	}
	b, closeBus, err := openBus(ctx, pc, *lf.timeout)
	if err != nil {
		fmt.Fprintf(stderr, "%s init: %v\n", programName, err)
		return exitFailed
	}
	sc := &scanner{b: b, stdout: stderr}
	prog := newProgress(stderr, len(list))
	for _, u := range list {
		if ctx.Err() != nil {
			break
		}
		sc.probe(ctx, u)
		prog.done(sc.found)
	}
	closeBus()
	if ctx.Err() != nil {
		return exitFailed
	}
	var text strings.Builder
	err = initTemplate.Execute(&text, initData{
		Port: pc.Name, Line: pc, Units: sc.answered, Profile: profName,
		When: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Scanned: *lf.units,
	})
	if err != nil {
		fmt.Fprintf(stderr, "%s init: %v\n", programName, err)
		return exitFailed
	}
	if *out == "" {
		fmt.Fprint(stdout, text.String())
	} else if err := writeNew(*out, text.String()); err != nil {
		fmt.Fprintf(stderr, "%s init: %v\n", programName, err)
		return exitFailed
	} else {
		fmt.Fprintf(stdout, "wrote %s: %d devices on %s (%s); fill in the placeholders, then: %s validate %s\n", *out, len(sc.answered), pc.Name, pc, programName, *out)
	}
	if len(sc.answered) == 0 {
		fmt.Fprintf(stderr, "%s init: no unit answered on %s (%s): the config has no devices\n", programName, pc.Name, pc)
		return exitFailed
	}
	return exitOK
}

// writeNew writes a file that must not exist yet.
func writeNew(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: not overwriting it (choose another -o)", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type initData struct {
	Port, Profile, When, Scanned string
	Line                         serialport.Config
	Units                        []int
}

var initTemplate = template.Must(template.New("init").Parse(`# Gateway config written by gatewayctl init from a scan of {{.Port}}
# (units {{.Scanned}}, {{.When}}). Fill in every change-me and the broker:
# gatewayctl validate refuses them until you do. Then check it with
#   gatewayctl validate gateway.yaml
# Reference: /usr/share/doc/luling-gateway/config.md
site: change-me               # the site name agreed with the platform
gateway: gw-change-me         # this gateway's name, e.g. gw-01
uplink:
  brokers: [tcp://broker.example.net:1883]   # the platform's broker, e.g. ssl://mqtt.your-city.org:8883
  username: change-me/gw-change-me           # {site}/{gateway}
  password_file: /etc/luling/mqtt.pass       # holds the gateway's MQTT password
outbox:
  path: /var/lib/luling/outbox
status:
  listen: 127.0.0.1:9100
buses:
  - name: rs485-1
    port: {{.Port}}
    baud: {{.Line.Baud}}
    parity: {{if .Line.Parity}}{{.Line.Parity}}{{else}}none{{end}}
{{- if ne .Line.StopBits 1}}
    stop_bits: {{.Line.StopBits}}
{{- end}}
{{if .Units}}devices:
  # One per unit that answered.{{if not .Profile}} Uncomment each and set its profile
  # (gatewayctl read -port {{.Port}} -unit N -profile NAME shows what a profile decodes).{{end}}
{{- range .Units}}
  {{if not $.Profile}}# {{end}}- id: unit-{{printf "%03d" .}}            # rename: bay-001, meter-1, ...
  {{if not $.Profile}}# {{end}}  driver: modbus
  {{if not $.Profile}}# {{end}}  bus: rs485-1
  {{if not $.Profile}}# {{end}}  unit: {{.}}
  {{if not $.Profile}}# {{end}}  profile: {{if $.Profile}}{{$.Profile}}{{else}}PROFILE{{end}}
  {{if not $.Profile}}# {{end}}  poll: 1s
{{- end}}
{{else}}# No unit answered the scan: add the devices under "devices:".
{{end}}`))
