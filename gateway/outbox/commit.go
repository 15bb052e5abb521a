package outbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/luling-edge/luling/payload"
)

// run is the committer: the one goroutine that writes segment files and the
// state file. Open starts it, Close stops it (quit) and waits for it (done).
func (o *Outbox) run() {
	defer close(o.done)
	tick := time.NewTicker(o.opts.AckPersistInterval)
	defer tick.Stop()
	var stateAt time.Time
	for {
		quitting := false
		select {
		case <-o.wake:
		case <-tick.C:
		case reply := <-o.hkReq:
			reply <- o.housekeep(true)
			continue
		case <-o.quit:
			quitting = true
		}
		if !quitting && o.opts.CommitInterval > 0 && o.queued() {
			t := time.NewTimer(o.opts.CommitInterval)
			select {
			case <-t.C:
			case <-o.now: // an AppendNow is queued
			case <-o.quit:
				quitting = true
			}
			t.Stop()
		}
		if !quitting {
			quitting = o.telemetryWindow()
		}
		hkDue := stateAt.Add(o.opts.AckPersistInterval)
		if stateAt.IsZero() {
			hkDue = time.Now().Add(o.opts.AckPersistInterval) // the first commits of a start
		}
		o.commitQueued(quitting, hkDue)
		if quitting {
			return
		}
		due := time.Since(stateAt) >= o.opts.AckPersistInterval
		if due {
			o.expireHolds()
			o.ensureSpare()
		}
		if err := o.housekeep(due); err != nil {
			o.log.Error("outbox: housekeeping failed; will retry", "err", err)
		} else if due {
			stateAt = time.Now()
		}
	}
}

// housekeepSerial runs housekeeping on the committer and waits for it.
func (o *Outbox) housekeepSerial() error {
	reply := make(chan error, 1)
	select {
	case o.hkReq <- reply:
		return <-reply
	case <-o.done:
		return ErrClosed
	}
}

func (o *Outbox) queued() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue) > 0
}

// telemetryWindow holds a queue of telemetry alone until its oldest append
// waited TelemetryWindow, so a steady trickle of readings costs one commit
// per window instead of one per reading. An event ends the wait at once
// (the telemetry rides along). It reports whether Close came meanwhile.
func (o *Outbox) telemetryWindow() (quitting bool) {
	if o.opts.TelemetryWindow <= 0 {
		return false
	}
	for {
		o.mu.Lock()
		var oldest time.Time
		events := o.noWindow || o.commitNow
		o.commitNow = false
		for _, r := range o.queue {
			if r.kind == payload.Event || r.now {
				events = true
			}
			if oldest.IsZero() || r.at.Before(oldest) {
				oldest = r.at
			}
		}
		o.mu.Unlock()
		wait := o.opts.TelemetryWindow - time.Since(oldest)
		if events || oldest.IsZero() || wait <= 0 {
			return false
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-o.wake: // a new append (maybe an event): look again
		case <-o.quit:
			t.Stop()
			return true
		}
		t.Stop()
	}
}

// CommitTelemetry ends the current telemetry window at once: what is
// queued is committed now, and later appends wait a window again. A writer
// that bounds its telemetry not yet durable calls it when the bound is
// reached, rather than stall until the window ends (which capped a busy
// gateway at that bound per window).
func (o *Outbox) CommitTelemetry() {
	o.mu.Lock()
	o.commitNow = true
	o.mu.Unlock()
	o.signal(o.wake)
	o.signal(o.now) // nor wait out CommitInterval: the group is there
}

// signal wakes the committer through c (wake or now) without blocking.
func (o *Outbox) signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// EndTelemetryWindow commits the telemetry waiting in the window now and
// holds none from then on. The owner calls it when it stops, so that its
// last appends do not wait a window before Close.
func (o *Outbox) EndTelemetryWindow() {
	o.mu.Lock()
	o.noWindow = true
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *Outbox) take() []*request {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.queue
	o.queue = nil
	for _, r := range g {
		r.taken = true
	}
	return g
}

// pendingWrite is what one group adds to one segment file.
type pendingWrite struct {
	seg     *segment
	base    int64 // file size before the group
	buf     []byte
	created bool
	entries []entry
	recs    int64
}

// A written group is sealed and written to its segment files; its fsync
// runs on a goroutine of its own (startSync) while the committer seals and
// writes the next group. It is published (index, Pending, the results of
// its appends) only after that fsync returned, and groups are published in
// order.
type written struct {
	accepted []*request
	writes   []*pendingWrite
	actives  [2]*segment // active segments before the group, for undo
	first    uint64      // its first seq
	next     uint64      // one past its last seq
	dirDirty bool        // the folder needs an fsync too
	retry    bool        // on ENOSPC, commit the group once more (see write)

	synced chan struct{} // closed when the fsyncs are done; fsyncs and err are set then
	fsyncs int
	err    error
}

// commitQueued commits what is queued as a pipeline: while one group's
// fsync runs, the next group that is due (see due) is sealed and written,
// so the latency of an fsync no longer caps throughput, and appends that
// are not due yet wait for the fsync as before. With quitting it commits
// until the queue is empty. It drains the pipeline (returns) once a group
// is durable and nothing is due, when housekeeping is due (hkDue: the state
// file) or waiting (segments to delete).
func (o *Outbox) commitQueued(quitting bool, hkDue time.Time) {
	var prev *written
	group := o.take()
	for len(group) > 0 {
		prev = o.write(group, true, prev)
		group = o.takeDue(prev, quitting, hkDue)
	}
	if prev != nil {
		o.finish(prev, nil)
	}
	if o.queued() {
		o.signal(o.wake) // takeDue may have taken the wake-up of what is left
	}
}

// takeDue returns the group to write while prev's fsync runs: what is
// queued, once it is due; nil once prev's fsync returned first (or there is
// no prev), or when housekeeping should run first. When quitting it takes
// whatever is queued.
func (o *Outbox) takeDue(prev *written, quitting bool, hkDue time.Time) []*request {
	for {
		if quitting {
			return o.take()
		}
		if prev == nil || !time.Now().Before(hkDue) || o.housekeepWaiting() {
			return nil
		}
		if o.due() {
			return o.take()
		}
		select {
		case <-prev.synced:
			return nil
		case <-o.wake:
		case <-o.now:
		case <-o.quit:
			quitting = true
		}
	}
}

// due reports whether what is queued should be committed without waiting
// any longer: an AppendNow or CommitTelemetry asked for it, or the oldest
// append waited CommitInterval and (for telemetry alone) its window.
func (o *Outbox) due() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return false
	}
	if o.commitNow {
		o.commitNow = false
		return true
	}
	events := o.noWindow || o.opts.TelemetryWindow <= 0
	oldest := o.queue[0].at
	for _, r := range o.queue {
		if r.now {
			return true
		}
		events = events || r.kind == payload.Event
		if r.at.Before(oldest) {
			oldest = r.at
		}
	}
	age := time.Since(oldest)
	return age >= o.opts.CommitInterval && (events || age >= o.opts.TelemetryWindow)
}

// housekeepWaiting reports whether housekeeping has segments to delete.
func (o *Outbox) housekeepWaiting() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.orphans) > 0 {
		return true
	}
	for k := range o.logs {
		lg := &o.logs[k]
		for _, s := range lg.segs {
			if s != lg.active && s.unacked == 0 {
				return true
			}
		}
	}
	return false
}

// commitGroup admits, seals, writes and syncs one group on its own (no
// group in flight), then publishes it to the index and wakes every Append
// of the group. When the write fails for lack of space and retry is set,
// the group is admitted and written once more: the disk is then the bound,
// so the oldest telemetry is dropped (declared) to make room, rather than
// the group's own readings and events being refused.
func (o *Outbox) commitGroup(group []*request, retry bool) {
	if w := o.write(group, retry, nil); w != nil {
		o.finish(w, nil)
	}
}

// write admits, seals and writes group behind prev, the group in flight
// (nil for none), then finishes prev and starts the fsync of the group. It
// returns the group now in flight: the new one, or prev when nothing new
// was written, or nil. Anything off the straight path (a drop to make
// room, a failed write) first finishes prev, so that it meets the outbox
// as it was before pipelining: every earlier group published or undone.
func (o *Outbox) write(group []*request, retry bool, prev *written) *written {
	if prev != nil && !o.fits(group, prev) {
		o.finish(prev, nil)
		prev = nil
	}
	accepted, dropped := o.admit(group)
	dirDirty := false
	if len(dropped) > 0 {
		// The losses should be on record before segments go. The counter
		// is safe either way (the reservation is on record before any
		// number is written), so on a full disk the files go first: a crash
		// before the state is written declares them missing instead.
		err := o.saveState()
		if err != nil && !isNoSpace(err) {
			o.log.Error("outbox: cannot record state before dropping segments; keeping their files until the next try", "err", err)
			o.mu.Lock()
			for _, s := range dropped {
				o.bytes += s.size // still on disk
			}
			o.orphans = append(o.orphans, dropped...)
			o.mu.Unlock()
		} else {
			o.removeFiles(dropped)
			dirDirty = true
			if err != nil {
				o.syncDir()
				dirDirty = false
				if err := o.saveState(); err != nil {
					o.log.Warn("outbox: disk full; dropped segments before recording the state", "err", err)
				}
			}
		}
	}
	if len(accepted) == 0 {
		if dirDirty {
			o.syncDir()
		}
		return prev
	}

	w := &written{accepted: accepted, retry: retry, dirDirty: dirDirty,
		actives: [2]*segment{o.logs[0].active, o.logs[1].active}}
	if prev != nil {
		w.first = prev.next
	} else {
		o.mu.Lock()
		w.first = o.nextSeq
		o.mu.Unlock()
	}
	w.next = w.first
	now := o.opts.Now()
	var err error
	for _, kind := range kindsInOrder(accepted) {
		if w.writes, w.next, err = o.seal(kind, accepted, now, w.writes, w.next); err != nil {
			break
		}
	}
	if err == nil {
		err = o.reserve(w.next - 1)
	}
	if err == nil {
		err = o.writeFiles(w.writes)
	}
	// prev goes first, with w behind it: should prev's fsync fail, w is
	// taken back with it and committed again.
	if prev != nil {
		o.mu.Lock()
		o.st.Overlapped++
		o.mu.Unlock()
		if !o.finish(prev, w) {
			return nil
		}
	}
	if err != nil {
		o.undo(w.writes, w.actives)
		o.giveUp(w, err)
		return nil
	}
	o.startSync(w)
	return w
}

// fits reports whether group goes behind prev without dropping or refusing
// anything, counting prev's bytes (not yet in o.bytes) too.
func (o *Outbox) fits(group []*request, prev *written) bool {
	var need int64
	for _, r := range group {
		need += r.est
	}
	for _, pw := range prev.writes {
		need += int64(len(pw.buf))
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.diskFullLocked(time.Now()) && o.bytes+need <= o.opts.MaxBytes
}

// startSync runs w's fsyncs on a goroutine of its own; finish waits for it.
func (o *Outbox) startSync(w *written) {
	w.synced = make(chan struct{})
	hook := o.syncHook
	go func() {
		defer close(w.synced)
		if hook != nil {
			if w.err = hook(w.first, w.next-1); w.err != nil {
				return
			}
		}
		w.fsyncs, w.err = o.syncFiles(w.writes, w.dirDirty)
	}()
}

// finish waits for w's fsync and publishes w, or takes it back when the
// fsync failed. next, written behind w and not yet synced, is taken back
// first in that case (its bytes follow w's), its numbers skipped, and its
// appends committed again; finish then reports false.
func (o *Outbox) finish(w, next *written) bool {
	<-w.synced
	if w.err != nil {
		if next != nil {
			o.undo(next.writes, next.actives)
		}
		o.undo(w.writes, w.actives)
		o.mu.Lock()
		o.st.Fsyncs += int64(w.fsyncs)
		o.mu.Unlock()
		if next != nil {
			o.skipTo(next.next)
		}
		o.giveUp(w, w.err)
		if next != nil {
			o.commitGroup(next.accepted, next.retry)
		}
		return false
	}

	o.mu.Lock()
	var bytes, recs, msgs int64
	for _, pw := range w.writes {
		s := pw.seg
		if pw.created {
			lg := o.kindLog(s.kind)
			lg.segs = append(lg.segs, s)
		}
		s.entries = append(s.entries, pw.entries...)
		s.size = pw.base + int64(len(pw.buf))
		s.unacked += len(pw.entries)
		s.unRecs += pw.recs
		bytes += int64(len(pw.buf))
		recs += pw.recs
		msgs += int64(len(pw.entries))
	}
	o.bytes += bytes
	o.nextSeq = w.next
	o.committed = w.next - 1
	o.st.Groups++
	o.st.Fsyncs += int64(w.fsyncs)
	o.st.BytesWritten += bytes
	o.st.AppendedRecords += recs
	o.st.AppendedMessages += msgs
	if !o.closed {
		close(o.changed)
		o.changed = make(chan struct{})
	}
	o.mu.Unlock()
	o.noteCommitSuccess()
	for _, r := range w.accepted {
		r.done <- nil
	}
	return true
}

// giveUp ends a group whose write or fsync failed and was taken back: its
// numbers are skipped and declared, and its appends get err, or, on a
// full disk, the group is admitted and written once more (commitGroup).
func (o *Outbox) giveUp(w *written, err error) {
	o.skipTo(w.next)
	o.noteCommitFailure(err, countRecords(w.accepted))
	if w.retry && isNoSpace(err) {
		o.commitGroup(w.accepted, false)
		return
	}
	for _, r := range w.accepted {
		r.done <- err
	}
}

// skipTo moves the counter to next, declaring the numbers skipped: a
// number that may have reached the disk is never used again, and the cloud
// need not wait for it.
func (o *Outbox) skipTo(next uint64) {
	o.mu.Lock()
	if first := o.nextSeq; next > first {
		o.addLossLocked(payload.SeqRange{First: first, Last: next - 1}, payload.LossUnused)
		o.st.Skipped += int64(next - first)
		o.nextSeq = next
	}
	o.mu.Unlock()
}

// reserve makes sure the state file allows numbers up to last before a
// segment holding them is written, reserving a block at a time.
func (o *Outbox) reserve(last uint64) error {
	o.mu.Lock()
	if last <= o.reserved {
		o.mu.Unlock()
		return nil
	}
	prev := o.reserved
	o.reserved = last + reserveBlock - 1
	o.mu.Unlock()
	if err := o.saveState(); err != nil {
		o.mu.Lock()
		o.reserved = prev
		o.mu.Unlock()
		return err
	}
	return nil
}

func countRecords(reqs []*request) int {
	n := 0
	for _, r := range reqs {
		n += r.records()
	}
	return n
}

func kindsInOrder(reqs []*request) []payload.Kind {
	var ks []payload.Kind
	for _, r := range reqs {
		if !slices.Contains(ks, r.kind) {
			ks = append(ks, r.kind)
		}
	}
	return ks
}

// admit applies the bound to each request of the group in arrival order.
// Over MaxBytes, whole oldest telemetry segments are dropped from the index
// (returned, for the caller to delete); telemetry that still does not fit is
// refused, and so are events beyond the ceiling. Nothing is dropped for a
// request that would be refused anyway.
func (o *Outbox) admit(group []*request) (accepted []*request, dropped []*segment) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var pending int64
	bound := o.opts.MaxBytes
	if o.diskFullLocked(time.Now()) {
		bound = min(bound, o.diskBound)
	}
	for _, r := range group {
		limit := bound
		if r.kind == payload.Event {
			limit = max(o.ceiling, bound)
		}
		var tbytes int64
		for _, s := range o.logs[0].segs {
			tbytes += s.size
		}
		need := o.bytes + pending + r.est
		if need-tbytes > limit {
			n := int64(r.records())
			if r.kind == payload.Telemetry {
				o.st.RefusedTelemetry += n
			} else {
				o.st.RefusedEvents += n
			}
			if !o.refusing[r.kind-1] {
				// Logged once per episode; Stats counts every refused record.
				o.refusing[r.kind-1] = true
				o.log.Warn("outbox: full; refusing records until there is room again", "kind", r.kind.String(), "records", n,
					"bytes", o.bytes, "max_bytes", o.opts.MaxBytes, "ceiling", o.ceiling,
					"refused_telemetry", o.st.RefusedTelemetry, "refused_events", o.st.RefusedEvents)
			}
			r.done <- fmt.Errorf("outbox: %s: %d %s records refused (%d bytes stored, bound %d): %w",
				o.opts.Dir, n, r.kind, o.bytes, limit, ErrFull)
			continue
		}
		if need > bound {
			dropped = append(dropped, o.dropOldestLocked(need-bound)...)
		}
		if o.refusing[r.kind-1] {
			o.refusing[r.kind-1] = false
			o.log.Info("outbox: accepting records again", "kind", r.kind.String(),
				"refused_telemetry", o.st.RefusedTelemetry, "refused_events", o.st.RefusedEvents)
		}
		pending += r.est
		accepted = append(accepted, r)
	}
	return accepted, dropped
}

// dropOldestLocked removes oldest telemetry segments from the index until
// at least excess bytes are freed or no telemetry is left.
func (o *Outbox) dropOldestLocked(excess int64) []*segment {
	lg := &o.logs[0]
	var out []*segment
	var freed int64
	for freed < excess && len(lg.segs) > 0 {
		s := lg.segs[0]
		lg.segs = lg.segs[1:]
		if s == lg.active {
			lg.active = nil
		}
		freed += s.size
		o.bytes -= s.size
		o.st.DroppedOldest.Messages += int64(s.unacked)
		o.st.DroppedOldest.Records += s.unRecs
		o.declareUnackedLocked(s, payload.LossFull)
		first, last := s.entries[0].seq, s.entries[len(s.entries)-1].seq
		o.log.Warn("outbox: over the bound; dropped oldest telemetry segment",
			"file", s.path, "seq_first", first, "seq_last", last,
			"dropped_messages", s.unacked, "dropped_records", s.unRecs,
			"total_dropped_messages", o.st.DroppedOldest.Messages, "total_dropped_records", o.st.DroppedOldest.Records)
		o.ackDirty = true
		out = append(out, s)
	}
	return out
}

// seal packs the group's records of one kind into messages, numbered from
// next, framed into the kind's active segment (rolling to new segments as
// they fill). Each record was encoded once, by Append; a body is the batch
// header from payload.AppendBatch followed by those records, byte for byte
// what AppendBatch writes for the whole batch.
func (o *Outbox) seal(kind payload.Kind, reqs []*request, now time.Time, writes []*pendingWrite, next uint64) ([]*pendingWrite, uint64, error) {
	lg := o.kindLog(kind)
	// Buffers are sized for what is left to seal (an upper estimate), up
	// to a segment, so that a group's bytes are not copied again as a
	// buffer grows.
	var left int64
	for _, r := range reqs {
		if r.kind == kind {
			left += r.est
		}
	}
	bufFor := func(base int64) []byte {
		return make([]byte, 0, min(left, max(o.opts.SegmentBytes-base, 0))+4<<10)
	}
	var w *pendingWrite
	if lg.active != nil {
		for _, x := range writes {
			if x.seg == lg.active {
				w = x
			}
		}
		if w == nil {
			w = &pendingWrite{seg: lg.active, base: lg.active.end, buf: bufFor(lg.active.end)}
			writes = append(writes, w)
		}
	}
	create := func(first uint64) (*pendingWrite, error) {
		if w != nil {
			left -= int64(len(w.buf))
		}
		return o.createSegment(kind, first, bufFor(0))
	}
	open := false
	var msgStart, recs int
	var seq uint64
	maxBody := o.opts.MaxBatchBytes
	begin := func() error {
		seq = next
		next++
		if w == nil {
			nw, err := create(seq)
			if err != nil {
				return err
			}
			lg.active = nw.seg
			writes = append(writes, nw)
			w = nw
		}
		msgStart = len(w.buf)
		w.buf = beginFrame(w.buf)
		var err error
		w.buf, err = payload.AppendBatch(w.buf, &payload.Batch{Site: o.opts.Site, Gateway: o.opts.Gateway, Seq: seq, Kind: kind, Sent: now})
		if err != nil {
			return fmt.Errorf("outbox: %s: encode batch %d: %w", o.opts.Dir, seq, err)
		}
		w.buf = w.buf[:len(w.buf)-2] // reopen the empty "records":[] array
		recs = 0
		open = true
		return nil
	}
	end := func() error {
		w.buf = append(w.buf, "]}"...)
		finishFrame(w.buf, msgStart, seq, kind, recs)
		if (len(w.entries) > 0 || w.base > segHeaderSize) && w.base+int64(len(w.buf)) > o.opts.SegmentBytes {
			nw, err := create(seq)
			if err != nil {
				return err
			}
			nw.buf = append(nw.buf, w.buf[msgStart:]...)
			w.buf = w.buf[:msgStart]
			lg.active = nw.seg
			writes = append(writes, nw)
			w = nw
			msgStart = segHeaderSize
		}
		w.entries = append(w.entries, entry{
			seq: seq, off: uint32(w.base + int64(msgStart)),
			size: uint32(len(w.buf) - msgStart - frameOverhead), recs: uint32(recs),
		})
		w.recs += int64(recs)
		open = false
		return nil
	}
	for _, r := range reqs {
		if r.kind != kind {
			continue
		}
		for i := range r.records() {
			rec := r.enc[r.offs[i]:r.offs[i+1]]
			if open {
				body := len(w.buf) - msgStart - frameOverhead
				if recs == o.opts.MaxBatchRecords || body+1+len(rec)+2 > maxBody {
					if err := end(); err != nil {
						return writes, next, err
					}
				}
			}
			if !open {
				if err := begin(); err != nil {
					return writes, next, err
				}
			}
			if recs > 0 {
				w.buf = append(w.buf, ',')
			}
			w.buf = append(w.buf, rec...)
			recs++
		}
	}
	if open {
		if err := end(); err != nil {
			return writes, next, err
		}
	}
	return writes, next, nil
}

func (o *Outbox) createSegment(kind payload.Kind, first uint64, buf []byte) (*pendingWrite, error) {
	path := filepath.Join(o.opts.Dir, segmentName(kind, first))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("outbox: create segment %s: %w", path, err)
	}
	s := &segment{kind: kind, first: first, path: path, f: f}
	return &pendingWrite{seg: s, buf: appendSegHeader(buf, kind), created: true}, nil
}

// writeFiles writes every pending write at its offset, without syncing.
func (o *Outbox) writeFiles(writes []*pendingWrite) error {
	for _, w := range writes {
		if len(w.buf) == 0 {
			continue
		}
		if _, err := w.seg.f.WriteAt(w.buf, w.base); err != nil {
			return fmt.Errorf("outbox: write %s at offset %d: %w", w.seg.path, w.base, err)
		}
		w.seg.end = w.base + int64(len(w.buf))
	}
	return nil
}

// syncFiles syncs each file written, and the folder when files were
// created or removed. It returns the fsyncs done.
func (o *Outbox) syncFiles(writes []*pendingWrite, dirDirty bool) (int, error) {
	n := 0
	for _, w := range writes {
		if len(w.buf) == 0 {
			continue
		}
		n++
		if err := w.seg.f.Sync(); err != nil {
			return n, fmt.Errorf("outbox: sync %s: %w", w.seg.path, err)
		}
		dirDirty = dirDirty || w.created
	}
	if dirDirty {
		n++
		if err := o.dir.Sync(); err != nil {
			return n, fmt.Errorf("outbox: sync folder %s: %w", o.opts.Dir, err)
		}
	}
	return n, nil
}

// undo takes back a failed group: new segments are removed, existing ones
// cut back to their committed size. If that fails too the outbox refuses
// further appends rather than append after bytes it cannot account for.
func (o *Outbox) undo(writes []*pendingWrite, actives [2]*segment) {
	o.logs[0].active, o.logs[1].active = actives[0], actives[1]
	var errs []error
	for _, w := range writes {
		if w.created {
			w.seg.f.Close()
			if err := os.Remove(w.seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if err := w.seg.f.Truncate(w.base); err != nil {
			errs = append(errs, err)
		}
		w.seg.end = w.base
	}
	if err := errors.Join(errs...); err != nil {
		o.log.Error("outbox: cannot undo a failed commit; refusing further appends", "err", err)
		o.mu.Lock()
		o.failed = fmt.Errorf("outbox: %s: a failed commit could not be undone: %w", o.opts.Dir, err)
		o.mu.Unlock()
	}
}

func (o *Outbox) syncDir() {
	err := o.dir.Sync()
	o.mu.Lock()
	o.st.Fsyncs++
	o.mu.Unlock()
	if err != nil {
		o.log.Error("outbox: sync folder failed", "err", err)
	}
}

// housekeep deletes segments whose messages are all acknowledged (never the
// active one), recording the state first, and writes the state file when
// acknowledgements are pending and force is set.
func (o *Outbox) housekeep(force bool) error {
	o.mu.Lock()
	del := o.orphans
	full := o.diskFullLocked(time.Now())
	for k := range o.logs {
		lg := &o.logs[k]
		for _, s := range lg.segs {
			// The active segment is kept (the next append would make a new
			// file), except when the disk is full: then its space counts.
			if (s != lg.active || full) && s.unacked == 0 {
				del = append(del, s)
			}
		}
	}
	need := len(del) > 0 || (force && o.ackDirty)
	o.mu.Unlock()
	if !need {
		return nil
	}
	err := o.saveState()
	if err != nil && (!isNoSpace(err) || len(del) == 0) {
		return err
	}
	if len(del) == 0 {
		return nil
	}
	// With the state written, or on a full disk (acknowledgements not yet
	// on record make a crash declare these numbers missing; the counter is
	// safe, see commit), the segments go.
	o.mu.Lock()
	for _, s := range del {
		lg := o.kindLog(s.kind)
		if i := slices.Index(lg.segs, s); i >= 0 {
			lg.segs = slices.Delete(lg.segs, i, i+1)
		}
		if lg.active == s {
			lg.active = nil
		}
		o.bytes -= s.size
	}
	o.orphans = nil
	o.mu.Unlock()
	o.removeFiles(del)
	o.syncDir()
	if err != nil {
		o.log.Warn("outbox: disk full; deleted acknowledged segments before recording the state", "segments", len(del))
		return o.saveState()
	}
	return nil
}

// removeFiles closes and deletes segment files already taken out of the
// index (and out of o.bytes).
func (o *Outbox) removeFiles(segs []*segment) {
	o.filesMu.Lock()
	for _, s := range segs {
		s.f.Close()
		s.gone = true
	}
	o.filesMu.Unlock()
	for _, s := range segs {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			o.log.Error("outbox: cannot remove segment", "file", s.path, "err", err)
		}
	}
}

// saveState writes the state file from the index.
func (o *Outbox) saveState() error {
	o.mu.Lock()
	st := state{lastSeq: o.nextSeq - 1, reserved: max(o.reserved, o.nextSeq-1), ackedThrough: o.ackedThroughLocked()}
	st.ranges = o.ackedRangesLocked(st.ackedThrough)
	st.losses = slices.Clone(o.losses)
	o.ackDirty = false
	o.mu.Unlock()
	n, err := o.writeStateRoom(&st)
	o.mu.Lock()
	o.st.Fsyncs += int64(n)
	if err != nil {
		o.ackDirty = true
	} else {
		o.st.StateWrites++
	}
	o.mu.Unlock()
	if err != nil {
		return fmt.Errorf("outbox: write state file in %s: %w", o.opts.Dir, err)
	}
	return nil
}

// ackedRangesLocked describes the acknowledged messages above w as ranges:
// runs of acknowledged entries, in seq order across both kinds, not broken
// by an unacknowledged one. A run starts right after the unacknowledged
// entry before it and the last run ends at the last committed number, so
// numbers no longer stored (acknowledged and deleted, or declared lost) are
// covered too: recovery must not mistake them for lost ones. Beyond
// maxStateRanges the rest is left out; those messages are sent again after
// a crash.
func (o *Outbox) ackedRangesLocked(w uint64) []seqRange {
	type pos struct{ si, ei int }
	var p [2]pos
	var rs []seqRange
	run := false
	from := w + 1 // where the next run starts
	for {
		var best *entry
		bk := -1
		for k := range o.logs {
			segs := o.logs[k].segs
			for p[k].si < len(segs) && p[k].ei >= len(segs[p[k].si].entries) {
				p[k].si++
				p[k].ei = 0
			}
			if p[k].si < len(segs) {
				e := &segs[p[k].si].entries[p[k].ei]
				if best == nil || e.seq < best.seq {
					best, bk = e, k
				}
			}
		}
		if best == nil {
			if run {
				rs[len(rs)-1].hi = max(rs[len(rs)-1].hi, o.committed)
			}
			return rs
		}
		p[bk].ei++
		if best.seq <= w {
			continue
		}
		switch {
		case !best.acked:
			run = false
			from = best.seq + 1
		case run:
			rs[len(rs)-1].hi = best.seq
		default:
			if len(rs) == maxStateRanges {
				return rs
			}
			rs = append(rs, seqRange{from, best.seq})
			run = true
		}
	}
}
