package outbox

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// A full disk (ENOSPC) must not wedge the outbox:
//
//   - A spare file (spareName, spareBytes) is kept in the folder. When the
//     state file cannot be written for lack of space, the spare is deleted
//     and the write tried again, so acknowledgements can still be recorded
//     and acknowledged segments deleted. It is made again once the disk has
//     room.
//   - A commit that fails with ENOSPC makes the bytes now on disk the bound
//     for diskRetry and is tried once more: it and the next appends drop
//     the oldest telemetry segments (declared, counted in DroppedOldest) to
//     make room, as the bound does, and a fully acknowledged active segment
//     is deleted too.
//   - Open on a full disk does not fail for want of a state write: it logs
//     it and starts.
//   - Failures are logged once, then at most every failLogEvery with the
//     number of failures in between.
const (
	spareName    = "spare"
	spareBytes   = 256 << 10
	diskRetry    = 30 * time.Second
	failLogEvery = 10 * time.Second
)

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskFullLocked reports whether a commit failed for lack of space within
// the last diskRetry.
func (o *Outbox) diskFullLocked(now time.Time) bool { return now.Before(o.diskFullUntil) }

// noteCommitFailure records a failed commit: the disk bound after ENOSPC,
// and a rate-limited log line.
func (o *Outbox) noteCommitFailure(err error, records int) {
	now := time.Now()
	o.mu.Lock()
	if isNoSpace(err) {
		o.diskFullUntil = now.Add(diskRetry)
		o.diskBound = o.bytes
	}
	o.fails++
	logIt := now.Sub(o.failLogged) >= failLogEvery
	suppressed := o.failsSuppressed
	if logIt {
		o.failLogged = now
		o.failsSuppressed = 0
	} else {
		o.failsSuppressed++
	}
	bytes := o.bytes
	o.mu.Unlock()
	if logIt {
		o.log.Error("outbox: commit failed; appends of this group are not stored", "records", records, "err", err,
			"disk_full", isNoSpace(err), "bytes", bytes, "suppressed_since_last", suppressed)
	}
}

// noteCommitSuccess logs the end of a failure streak.
func (o *Outbox) noteCommitSuccess() {
	o.mu.Lock()
	fails := o.fails
	o.fails, o.failsSuppressed, o.failLogged = 0, 0, time.Time{}
	o.mu.Unlock()
	if fails > 0 {
		o.log.Info("outbox: commits succeed again", "failed_commits", fails)
	}
}

// releaseSpare deletes the spare file to make room; it reports whether
// there was one.
func (o *Outbox) releaseSpare() bool {
	err := os.Remove(filepath.Join(o.opts.Dir, spareName))
	if err != nil {
		return false
	}
	o.log.Warn("outbox: disk full; released the spare file to record the state", "dir", o.opts.Dir)
	return true
}

// ensureSpare makes the spare file when it is missing or short and the
// disk is not known to be full. Best effort: without it the outbox works,
// but a full disk may keep it from recording acknowledgements.
func (o *Outbox) ensureSpare() {
	o.mu.Lock()
	full := o.diskFullLocked(time.Now())
	o.mu.Unlock()
	path := filepath.Join(o.opts.Dir, spareName)
	if fi, err := os.Stat(path); full || (err == nil && fi.Size() == spareBytes) {
		return
	}
	err := writeSpare(path)
	o.mu.Lock()
	o.st.Fsyncs++
	o.mu.Unlock()
	if err != nil {
		os.Remove(path)
		o.log.Warn("outbox: cannot make the spare file; a full disk may keep acknowledgements from being recorded", "file", path, "err", err)
	}
}

func writeSpare(path string) error {
	_, err := writeSynced(path, make([]byte, spareBytes))
	return err
}

// writeStateRoom writes the state file, releasing the spare file once if
// the disk is full.
func (o *Outbox) writeStateRoom(st *state) (int, error) {
	n, err := writeState(o.opts.Dir, o.dir, st)
	if err != nil && isNoSpace(err) && o.releaseSpare() {
		os.Remove(filepath.Join(o.opts.Dir, stateTemp))
		var m int
		m, err = writeState(o.opts.Dir, o.dir, st)
		n += m
	}
	return n, err
}
