//go:build !linux

package modbussim

import "io"

func newPollReader(r io.Reader) io.Reader { return r }
