package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/luling-edge/luling/cloud/broker"
	"github.com/luling-edge/luling/cloud/pki"
	"github.com/luling-edge/luling/cloud/provision"
	"github.com/luling-edge/luling/cloud/registry"
	"github.com/luling-edge/luling/internal/safefile"
)

const identityUsage = `usage:
  cloudd gateway add       SITE GW [-password-stdin]   register a gateway (enabled, no credentials yet)
  cloudd gateway list                                   list gateways, their state and certificates
  cloudd gateway disable   SITE GW                      refuse it and disconnect it; enable undoes it
  cloudd gateway enable    SITE GW
  cloudd gateway remove    SITE GW                      forget it (and its certificates) and disconnect it
  cloudd gateway passwd    SITE GW [-clear]             set its MQTT password from stdin (stored as a bcrypt hash)
  cloudd gateway provision SITE GW -broker URL[,URL] -out FILE [-template gateway.yaml] [-validity 8760h]
                                                        register it if new, issue a client certificate, write its bundle
  cloudd gateway revoke    SITE GW SERIAL               revoke one of its certificates and disconnect sessions using it
  cloudd ca server-cert    -host NAME[,NAME] -cert FILE -key FILE [-validity 8760h]
                                                        issue the embedded broker's TLS certificate from the site CA
Every command takes -registry FILE ($LULING_CLOUD_REGISTRY); provision and ca take
-ca-dir DIR ($LULING_CLOUD_CA_DIR). A running cloudd sees changes within a second.`

// identityCmd is `cloudd gateway …` and `cloudd ca …`.
func identityCmd(group string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{msg: group + ": want a subcommand\n" + identityUsage}
	}
	sub, args := args[0], args[1:]
	name := group + " " + sub
	fs := flag.NewFlagSet("cloudd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	regPath := fs.String("registry", os.Getenv("LULING_CLOUD_REGISTRY"), "gateway registry file [LULING_CLOUD_REGISTRY]")
	caDir := fs.String("ca-dir", os.Getenv("LULING_CLOUD_CA_DIR"), "site CA folder [LULING_CLOUD_CA_DIR]")
	pwStdin := fs.Bool("password-stdin", false, "add: also set the MQTT password, read from stdin")
	clearPw := fs.Bool("clear", false, "passwd: remove the password (certificates only)")
	brokers := fs.String("broker", "", "provision: broker URL(s) for the gateway, comma-separated, e.g. ssl://cloud.example.org:8883")
	out := fs.String("out", "", "provision: bundle file to write (tar.gz)")
	template := fs.String("template", "", "provision: gateway.yaml to start from (buses, devices); a minimal one when empty")
	validity := fs.Duration("validity", 365*24*time.Hour, "provision, ca server-cert: certificate validity")
	hosts := fs.String("host", "", "ca server-cert: DNS names or IP addresses, comma-separated")
	certOut := fs.String("cert", "", "ca server-cert: certificate file to write")
	keyOut := fs.String("key", "", "ca server-cert: key file to write (mode 0600)")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return &usageError{msg: identityUsage}
			}
			return &usageError{msg: err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	want := map[string]int{"gateway add": 2, "gateway list": 0, "gateway disable": 2, "gateway enable": 2, "gateway remove": 2,
		"gateway passwd": 2, "gateway provision": 2, "gateway revoke": 3, "ca server-cert": 0}
	n, ok := want[name]
	if !ok {
		return &usageError{msg: fmt.Sprintf("%s: unknown subcommand\n%s", name, identityUsage)}
	}
	if len(pos) != n {
		return &usageError{msg: fmt.Sprintf("%s: want %d arguments, got %d\n%s", name, n, len(pos), identityUsage)}
	}
	if group == "ca" {
		return serverCert(*caDir, *hosts, *certOut, *keyOut, *validity, stderr)
	}
	if *regPath == "" {
		return &usageError{msg: name + ": -registry FILE (or LULING_CLOUD_REGISTRY) is required"}
	}
	f := &registry.File{Path: *regPath}
	var site, gw string
	if n >= 2 {
		site, gw = pos[0], pos[1]
		if err := registry.CheckID(site, gw); err != nil {
			return &usageError{msg: name + ": " + err.Error()}
		}
	}
	done := func(what string) error {
		fmt.Fprintf(stderr, "cloudd: %s/%s %s in %s\n", site, gw, what, *regPath)
		return nil
	}
	switch sub {
	case "list":
		return listGateways(f, stdout)
	case "add":
		var hash string
		if *pwStdin {
			h, err := hashFromStdin(name, stdin)
			if err != nil {
				return err
			}
			hash = h
		}
		if _, err := f.Add(site, gw); err != nil {
			return err
		}
		if hash != "" {
			if err := f.SetPassword(site, gw, hash); err != nil {
				return err
			}
		}
		return done("added")
	case "disable", "enable":
		if err := f.SetEnabled(site, gw, sub == "enable"); err != nil {
			return err
		}
		return done(sub + "d")
	case "remove":
		if err := f.Remove(site, gw); err != nil {
			return err
		}
		return done("removed")
	case "passwd":
		hash := ""
		if !*clearPw {
			h, err := hashFromStdin(name, stdin)
			if err != nil {
				return err
			}
			hash = h
		}
		if err := f.SetPassword(site, gw, hash); err != nil {
			return err
		}
		return done("password set")
	case "revoke":
		if err := f.RevokeCert(site, gw, strings.ToLower(pos[2])); err != nil {
			return err
		}
		return done("certificate " + pos[2] + " revoked")
	}
	// provision
	if *caDir == "" || *out == "" || *brokers == "" {
		return &usageError{msg: name + ": -ca-dir, -broker and -out are required"}
	}
	req := provision.Request{Site: site, Gateway: gw, Brokers: strings.Split(*brokers, ","), Validity: *validity, Add: true}
	if *template != "" {
		b, err := os.ReadFile(*template)
		if err != nil {
			return fmt.Errorf("%s: -template: %w", name, err)
		}
		req.Template = b
	}
	// Before a certificate is issued and recorded: one whose bundle
	// cannot be written would be valid with nobody holding its key.
	if fi, err := os.Stat(filepath.Dir(*out)); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s: -out %s: folder %s does not exist", name, *out, filepath.Dir(*out))
	}
	ca, err := pki.Open(*caDir, "luling")
	if err != nil {
		return err
	}
	b, err := provision.Issue(f, ca, req)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := b.Write(&buf); err != nil {
		return err
	}
	if err := safefile.Replace(*out, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("%s: write %s: %w", name, *out, err)
	}
	return done(fmt.Sprintf("provisioned: certificate %s valid until %s, bundle %s", b.Serial, b.NotAfter.Format(time.RFC3339), *out))
}

// hashFromStdin reads one line from stdin and returns its bcrypt hash.
func hashFromStdin(name string, stdin io.Reader) (string, error) {
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("%s: read stdin: %w", name, err)
	}
	if line = strings.TrimRight(line, "\r\n"); line == "" {
		return "", &usageError{msg: name + ": empty password on stdin"}
	}
	return broker.HashPassword([]byte(line))
}

func listGateways(f *registry.File, stdout io.Writer) error {
	gws, err := f.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tENABLED\tPASSWORD\tCERTIFICATES (serial: state)\tCREATED")
	for _, g := range gws {
		var certs []string
		for _, c := range g.Certs {
			state := "valid until " + c.NotAfter.Format("2006-01-02")
			if c.Revoked != nil {
				state = "revoked " + c.Revoked.Format(time.RFC3339)
			}
			certs = append(certs, c.Serial+": "+state)
		}
		fmt.Fprintf(tw, "%s\t%t\t%t\t%s\t%s\n", g.User(), g.Enabled, g.PasswordHash != "", strings.Join(certs, "; "), g.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

// serverCert is `cloudd ca server-cert`.
func serverCert(caDir, hosts, certOut, keyOut string, validity time.Duration, stderr io.Writer) error {
	if caDir == "" || hosts == "" || certOut == "" || keyOut == "" {
		return &usageError{msg: "ca server-cert: -ca-dir, -host, -cert and -key are required"}
	}
	ca, err := pki.Open(caDir, "luling")
	if err != nil {
		return err
	}
	is, err := ca.IssueServer(strings.Split(hosts, ","), validity)
	if err != nil {
		return err
	}
	// The key first: cloudd reloads the pair when either file changes.
	if err := safefile.Replace(keyOut, is.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("ca server-cert: write %s: %w", keyOut, err)
	}
	if err := safefile.Replace(certOut, is.CertPEM, 0o644); err != nil {
		return fmt.Errorf("ca server-cert: write %s: %w", certOut, err)
	}
	fmt.Fprintf(stderr, "cloudd: server certificate for %s (serial %s, valid until %s) in %s, key in %s; gateways trust %s/%s\n",
		hosts, is.Serial, is.NotAfter.Format(time.RFC3339), certOut, keyOut, caDir, pki.CertFile)
	return nil
}
