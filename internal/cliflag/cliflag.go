// Package cliflag holds the command-line conventions the Luling binaries
// share: flags may come before, between or after the positional arguments,
// and every binary answers -version and --version.
package cliflag

import "flag"

// ParseInterspersed parses fs from args, where flags and positional
// arguments may come in any order ("validate gw.yaml -skip-files"), and
// returns the positional arguments in their order. A "--" ends the flags:
// what follows is positional. Errors are fs.Parse's (flag.ErrHelp for -h).
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse consumed a "--" if it stopped there: everything left is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// IsVersion reports whether arg asks for the version (-version or --version).
func IsVersion(arg string) bool {
	return arg == "-version" || arg == "--version"
}
