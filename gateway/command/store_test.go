package command_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/payload"
)

// TestIDLogStaysSmall runs many commands, each expiring a minute after it
// was issued, over simulated hours: the log is rewritten as it fills with
// dead records and forgotten ids, so it never grows past its bound.
func TestIDLogStaysSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("fsyncs thousands of records")
	}
	dir := t.TempDir()
	r := newRig(t, dir, nil)
	path := filepath.Join(dir, command.StoreFile)
	msg := strings.Repeat("x", 200)
	largest := int64(0)
	for i := range 3000 {
		id := fmt.Sprintf("n-%d", i)
		now := r.clock.Now()
		c := payload.Command{ID: id, Name: "rule.enable", Args: map[string]any{"rule": msg}, Issued: now, Expires: now.Add(time.Minute)}
		b, _ := c.Encode()
		r.exec.Handle(topic(id), b)
		if rep := r.reply(id); rep.Status != payload.ReplyError { // unknown rule: error, but ran and recorded
			t.Fatalf("%s: %+v", id, rep)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, st.Size())
		r.clock.Advance(10 * time.Second)
	}
	// Live ids: those that expired less than an hour and a minute ago
	// (about 370 at one per 10 s), about 600 bytes each, plus 256 KiB of
	// dead records at most.
	if limit := int64(370*700 + 256<<10 + 4096); largest > limit {
		t.Errorf("id log grew to %d bytes, want at most %d", largest, limit)
	}
	if largest < 256<<10 {
		t.Errorf("id log never reached its rewrite threshold (%d bytes): the test does not test it", largest)
	}
}
