package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/luling-edge/luling/cloud/auth"
)

const userUsage = `usage:
  cloudd user add    [-users FILE] -name NAME -role viewer|operator   add an account; the password is read from stdin
  cloudd user passwd [-users FILE] NAME                               change an account's password (read from stdin)
  cloudd user list   [-users FILE]                                    list the accounts (names, roles, creation times)
  cloudd user remove [-users FILE] NAME                               remove an account
FILE defaults to $LULING_CLOUD_USERS. A running cloudd sees changes within a second.`

// usersFlag adds -users to fs, with the LULING_CLOUD_USERS fallback.
func usersFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "users", os.Getenv("LULING_CLOUD_USERS"), "file of web platform accounts (bcrypt hashes), managed with cloudd user [LULING_CLOUD_USERS]")
}

// readPassword reads one line from stdin (a terminal, a pipe or a file).
func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if err := auth.ValidPassword(pw); err != nil {
		return "", &usageError{msg: "password on stdin: " + err.Error()}
	}
	return pw, nil
}

// userCmd is `cloudd user add|passwd|list|remove`.
func userCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{msg: "user: want add, passwd, list or remove\n" + userUsage}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("cloudd user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path, name, role string
	usersFlag(fs, &path)
	if sub == "add" {
		fs.StringVar(&name, "name", "", "login name")
		fs.StringVar(&role, "role", "", "viewer (read-only) or operator (may send commands)")
	}
	pos, err := parseMixed(fs, args, userUsage)
	if err != nil {
		return err
	}
	if path == "" {
		return &usageError{msg: "user " + sub + ": -users FILE (or LULING_CLOUD_USERS) is required"}
	}
	uf := &auth.UserFile{Path: path}
	switch sub {
	case "add":
		if len(pos) > 0 {
			return &usageError{msg: fmt.Sprintf("user add: unexpected argument %q (use -name)", pos[0])}
		}
		if name == "" {
			return &usageError{msg: "user add: -name is required"}
		}
		r, err := auth.ParseRole(role)
		if err != nil {
			return &usageError{msg: "user add: -role: " + err.Error()}
		}
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		if err := uf.Add(name, r, pw); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "cloudd: user %q (%s) added to %s\n", name, r, path)
		return nil
	case "passwd", "remove":
		if len(pos) != 1 {
			return &usageError{msg: "user " + sub + ": want exactly one user NAME"}
		}
		if sub == "remove" {
			if err := uf.Remove(pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "cloudd: user %q removed from %s\n", pos[0], path)
			return nil
		}
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		if err := uf.SetPassword(pos[0], pw); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "cloudd: password of %q changed in %s\n", pos[0], path)
		return nil
	case "list":
		if len(pos) > 0 {
			return &usageError{msg: fmt.Sprintf("user list: unexpected argument %q", pos[0])}
		}
		list, err := uf.List()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
		for _, u := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Role, u.Created.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	}
	return &usageError{msg: fmt.Sprintf("user %s: want add, passwd, list or remove\n%s", sub, userUsage)}
}
