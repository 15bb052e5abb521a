package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/luling-edge/luling/cloud/auth"
	"github.com/luling-edge/luling/internal/cliflag"
)

const tokenUsage = `usage:
  cloudd token create [-tokens FILE] -name NAME -role viewer|operator   print a new API token (shown only this once)
  cloudd token list   [-tokens FILE]                                     list the tokens (names, roles, creation times)
  cloudd token revoke [-tokens FILE] NAME                                revoke a token
FILE defaults to $LULING_CLOUD_TOKENS. A running cloudd sees changes within a second.`

// tokensFlag adds -tokens to fs, with the LULING_CLOUD_TOKENS fallback.
func tokensFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "tokens", os.Getenv("LULING_CLOUD_TOKENS"), "file of hashed HTTP API tokens, managed with cloudd token [LULING_CLOUD_TOKENS]")
}

// tokenCmd is `cloudd token create|list|revoke`.
func tokenCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{msg: "token: want create, list or revoke\n" + tokenUsage}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("cloudd token "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path, name, role string
	tokensFlag(fs, &path)
	if sub == "create" {
		fs.StringVar(&name, "name", "", "name of the token: who or what uses it (grafana, platform, alice)")
		fs.StringVar(&role, "role", "", "viewer (read-only) or operator (may send commands)")
	}
	// Flags may come before or after revoke's NAME.
	pos, err := parseMixed(fs, args, tokenUsage)
	if err != nil {
		return err
	}
	if path == "" {
		return &usageError{msg: "token " + sub + ": -tokens FILE (or LULING_CLOUD_TOKENS) is required"}
	}
	tf := &auth.TokenFile{Path: path}
	switch sub {
	case "create":
		if len(pos) > 0 {
			return &usageError{msg: fmt.Sprintf("token create: unexpected argument %q (use -name)", pos[0])}
		}
		if name == "" {
			return &usageError{msg: "token create: -name is required"}
		}
		r, err := auth.ParseRole(role)
		if err != nil {
			return &usageError{msg: "token create: -role: " + err.Error()}
		}
		tok, err := tf.Create(name, r)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "cloudd: token %q (%s) added to %s; it is shown only now: send it as \"Authorization: Bearer TOKEN\"\n", name, r, path)
		_, err = fmt.Fprintln(stdout, tok)
		return err
	case "list":
		if len(pos) > 0 {
			return &usageError{msg: fmt.Sprintf("token list: unexpected argument %q", pos[0])}
		}
		list, err := tf.List()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
		for _, t := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Role, t.Created.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	case "revoke":
		if len(pos) != 1 {
			return &usageError{msg: "token revoke: want exactly one token NAME"}
		}
		if err := tf.Revoke(pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "cloudd: token %q revoked in %s\n", pos[0], path)
		return nil
	}
	return &usageError{msg: fmt.Sprintf("token %s: want create, list or revoke\n%s", sub, tokenUsage)}
}

// parseMixed parses fs from args, where flags and positional arguments may
// come in any order, and returns the positional ones. Help and bad flags
// are usage errors (help shows usage).
func parseMixed(fs *flag.FlagSet, args []string, usage string) ([]string, error) {
	pos, err := cliflag.ParseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, &usageError{msg: usage}
	}
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	return pos, nil
}
