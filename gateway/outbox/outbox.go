package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luling-edge/luling/payload"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxBytes           = 64 << 20
	DefaultSegmentBytes       = 4 << 20
	DefaultMaxBatchRecords    = 500
	DefaultMaxBatchBytes      = 256 << 10
	DefaultAckPersistInterval = time.Second
	// DefaultCommitInterval is the commit window gatewayd configures. The
	// zero CommitInterval means no window: a group is whatever queued up
	// while the previous write and fsync ran.
	DefaultCommitInterval = 2 * time.Millisecond
)

// minDefaultSegment is the smallest segment size the default picks.
const minDefaultSegment = 4 << 10

// maxPendingBytes caps the bodies one Pending call returns (it always
// returns at least one message), so a replay of a large backlog does not
// balloon memory.
const maxPendingBytes = 4 << 20

var (
	// ErrFull is returned by Append when the outbox has no room: telemetry
	// when only events are left and the bound is reached, events beyond the
	// hard ceiling (MaxBytes + 25%). The records were not stored.
	ErrFull = errors.New("outbox full")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("outbox closed")
)

// Options configure an Outbox. Zero values take the defaults above.
type Options struct {
	Dir     string // folder holding the segments and the state file; created if missing
	Site    string // site id written into every batch
	Gateway string // gateway id written into every batch

	MaxBytes     int64 // bound on disk for both logs together (default 64 MiB)
	SegmentBytes int64 // segment file size (default MaxBytes/16, 4 KiB to 4 MiB)

	// CommitInterval is how long a group waits to collect more records
	// after the first one arrived. 0 commits as soon as the previous commit
	// finished; see DefaultCommitInterval.
	CommitInterval time.Duration
	// TelemetryWindow, when positive, is how long appends of telemetry
	// alone may wait to share one commit (one fsync): a bounded window
	// that bounds fsyncs per second whatever the number of devices. An
	// event append commits at once (after CommitInterval), taking the
	// waiting telemetry along. 0 commits telemetry like events.
	TelemetryWindow time.Duration

	MaxBatchRecords int // records per message (default 500, at most payload.MaxRecords)
	MaxBatchBytes   int // body bytes per message (default 256 KiB)

	// AckPersistInterval is how often acknowledgements are written to the
	// state file (default 1 s). Acks not yet written are redelivered after a
	// crash; the cloud removes those duplicates by sequence number.
	AckPersistInterval time.Duration

	// HoldFor bounds how long a message the broker acknowledged (Sent)
	// waits for the cloud's confirmation (Confirm) before it is let go
	// anyway (default 1 h). See delivery.go.
	HoldFor time.Duration

	Logger *slog.Logger
	Now    func() time.Time // seal time of batches, hold times (default time.Now)
}

// Counts is a number of messages and the records they held.
type Counts struct {
	Messages int64
	Records  int64
}

// Stats is a snapshot of the outbox. Counters run since Open.
type Stats struct {
	Bytes        int64  // segment bytes on disk, both logs
	Segments     int    // segment files
	Unacked      Counts // stored and not acknowledged
	NextSeq      uint64 // sequence number the next message gets
	AckedThrough uint64 // every message up to this one is acknowledged or gone
	LastAcked    uint64 // highest sequence number acknowledged

	// DroppedOldest are unacknowledged telemetry messages deleted, whole
	// segments at a time, to keep the outbox under MaxBytes.
	DroppedOldest Counts
	// DroppedCorrupt are messages whose stored frame failed its checksum
	// when read back for sending.
	DroppedCorrupt Counts
	// RefusedTelemetry counts telemetry records refused (ErrFull) because
	// only events were left and the bound was reached.
	RefusedTelemetry int64
	// RefusedEvents counts event records refused (ErrFull) past the hard
	// ceiling.
	RefusedEvents int64
	// DroppedMissing are messages recovery did not find on disk although
	// they had been committed (a damaged, truncated or deleted segment);
	// their records are unknown and counted as one each (a lower bound).
	DroppedMissing Counts
	// Skipped counts sequence numbers given up without a message: reserved
	// before an unclean stop and not used, or lost to a failed write. They
	// are declared (LossUnused) so the cloud does not wait for them.
	Skipped int64
	// Losses is the number of declared loss ranges not yet forgotten
	// (ForgetLosses).
	Losses int
	// SentThrough: every message up to it was sent (PUBACK) or confirmed.
	SentThrough uint64
	// HoldExpired counts messages sent and let go after HoldFor without
	// the cloud's confirmation.
	HoldExpired int64
	// TruncatedBytes is what recovery cut off torn segment tails, and
	// SkippedBytes what it stepped over inside segments (damaged entries).
	TruncatedBytes int64
	SkippedBytes   int64

	AppendedRecords  int64
	AppendedMessages int64
	Groups           int64 // group commits (one write + fsync per segment touched)
	Overlapped       int64 // groups written while the previous group's fsync ran
	Fsyncs           int64 // data files, folder and state file
	BytesWritten     int64 // segment bytes written
	StateWrites      int64
}

// Dropped is the total of records and messages the outbox lost on purpose
// or to corruption: what explains a sequence gap the cloud sees. Refused
// records never got a sequence number and count as records only.
func (s Stats) Dropped() Counts {
	return Counts{
		Messages: s.DroppedOldest.Messages + s.DroppedCorrupt.Messages + s.DroppedMissing.Messages,
		Records: s.DroppedOldest.Records + s.DroppedCorrupt.Records + s.DroppedMissing.Records +
			s.RefusedTelemetry + s.RefusedEvents,
	}
}

// segment is one segment file and the index of its entries.
type segment struct {
	kind    payload.Kind
	first   uint64
	path    string
	f       *os.File
	size    int64 // committed bytes
	end     int64 // bytes written, by groups not yet durable too; owned by the committer
	entries []entry
	unacked int
	unRecs  int64
	gone    bool // closed and deleted; guarded by Outbox.filesMu
}

type kindLog struct {
	kind payload.Kind
	segs []*segment // ascending seq
	// active is the segment new entries go to; owned by the committer.
	active *segment
}

// request is one Append waiting for its group commit.
type request struct {
	kind  payload.Kind
	enc   []byte    // encoded records, back to back
	offs  []int     // record i is enc[offs[i]:offs[i+1]]
	est   int64     // upper bound of the bytes it adds on disk
	at    time.Time // when it was queued
	taken bool      // the committer has it; it can no longer be withdrawn
	now   bool      // AppendNow: commit without waiting for a window
	done  chan error
}

func (r *request) records() int { return len(r.offs) - 1 }

// Outbox is the durable store between the pipeline and the uplink. It is
// safe for concurrent use.
type Outbox struct {
	opts    Options
	log     *slog.Logger
	dir     *os.File
	lock    *os.File
	ceiling int64
	hdrMax  int          // largest possible batch header, for size estimates
	recSize atomic.Int64 // bytes per record of the last Encode, to size the next

	// syncHook, when set (tests), runs on the fsync goroutine of each
	// group (numbers first to last) before its fsyncs; an error it returns
	// stands for a failed fsync.
	syncHook func(first, last uint64) error

	wake  chan struct{}
	now   chan struct{}   // an AppendNow is queued: cut the commit interval short
	hkReq chan chan error // run housekeeping now and reply (tests)
	quit  chan struct{}
	done  chan struct{}

	// filesMu guards the lifetime of segment files for readers: Pending
	// reads under RLock, the committer closes and deletes under Lock.
	filesMu sync.RWMutex

	mu         sync.Mutex
	queue      []*request
	changed    chan struct{} // closed when messages become pending or on Close
	closed     bool
	failed     error // set when a failed write could not be undone
	noWindow   bool  // EndTelemetryWindow was called
	commitNow  bool  // CommitTelemetry was called since the window last ended
	logs       [2]kindLog
	nextSeq    uint64 // next seq to assign; all below are assigned
	committed  uint64 // highest seq that is durable
	reserved   uint64 // highest seq the state file allows to assign
	losses     []payload.Loss
	holds      []holdPoint // ascending; see expireHolds
	holdWarned bool

	// Disk full (diskfull.go).
	diskFullUntil   time.Time // a commit failed with ENOSPC; bound by diskBound until then
	diskBound       int64
	fails           int // failed commits in a row
	failsSuppressed int
	failLogged      time.Time
	bytes           int64
	lastAcked       uint64
	ackDirty        bool
	orphans         []*segment // dropped from the index, files not yet deleted
	refusing        [2]bool    // a refusal was logged and nothing accepted since
	st              Stats
}

func (o *Outbox) kindLog(k payload.Kind) *kindLog { return &o.logs[k-1] }

// Open opens or creates the outbox in opts.Dir and recovers what is on
// disk: torn or corrupt segment tails are truncated and logged, fully
// acknowledged segments are deleted, and the sequence counter resumes above
// every number ever assigned.
func Open(opts Options) (*Outbox, error) {
	segDefault := opts.SegmentBytes == 0
	if err := normalize(&opts); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("outbox: create %s: %w", opts.Dir, err)
	}
	if fs := fsSize(opts.Dir); segDefault && fs > 0 && fs < opts.MaxBytes {
		// A bound larger than the disk is met by the disk first (see
		// diskfull.go); segments small enough for the disk keep a drop to
		// 1/16 of what fits.
		opts.SegmentBytes = min(opts.SegmentBytes, max(fs/16, minDefaultSegment))
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	d, err := os.Open(opts.Dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("outbox: open folder %s: %w", opts.Dir, err)
	}
	o := &Outbox{
		opts:    opts,
		log:     opts.Logger.With("outbox", opts.Dir),
		dir:     d,
		lock:    lock,
		ceiling: opts.MaxBytes + opts.MaxBytes/4,
		wake:    make(chan struct{}, 1),
		now:     make(chan struct{}, 1),
		hkReq:   make(chan chan error),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	o.logs[0].kind, o.logs[1].kind = payload.Telemetry, payload.Event
	hdr, err := payload.AppendBatch(nil, &payload.Batch{
		Site: opts.Site, Gateway: opts.Gateway, Seq: math.MaxUint64, Kind: payload.Telemetry,
		Sent: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	})
	if err != nil {
		o.release()
		return nil, fmt.Errorf("outbox: %s: encode batch header: %w", opts.Dir, err)
	}
	o.hdrMax = len(hdr) + 1
	if err := o.recover(); err != nil {
		o.closeFiles()
		o.release()
		return nil, err
	}
	go o.run()
	return o, nil
}

func normalize(o *Options) error {
	if o.Dir == "" {
		return errors.New("outbox: no Dir given")
	}
	if !payload.ValidID(o.Site) {
		return fmt.Errorf("outbox: %s: site %q: want [a-z0-9-]{1,64}", o.Dir, o.Site)
	}
	if !payload.ValidID(o.Gateway) {
		return fmt.Errorf("outbox: %s: gateway %q: want [a-z0-9-]{1,64}", o.Dir, o.Gateway)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes == 0 {
		// A drop by the bound deletes the oldest segment: at most 1/16
		// of the outbox at a time, and any MaxBytes from 4 KiB works.
		o.SegmentBytes = min(DefaultSegmentBytes, max(o.MaxBytes/16, minDefaultSegment))
	}
	if o.MaxBatchRecords == 0 {
		o.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.AckPersistInterval == 0 {
		o.AckPersistInterval = DefaultAckPersistInterval
	}
	if o.HoldFor == 0 {
		o.HoldFor = DefaultHoldFor
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.SegmentBytes < 1<<10 || o.SegmentBytes > 1<<30:
		return fmt.Errorf("outbox: %s: SegmentBytes %d: want 1 KiB to 1 GiB", o.Dir, o.SegmentBytes)
	case o.MaxBytes < o.SegmentBytes:
		return fmt.Errorf("outbox: %s: MaxBytes %d: want at least SegmentBytes (%d)", o.Dir, o.MaxBytes, o.SegmentBytes)
	case o.MaxBatchRecords < 1 || o.MaxBatchRecords > payload.MaxRecords:
		return fmt.Errorf("outbox: %s: MaxBatchRecords %d: want 1 to %d", o.Dir, o.MaxBatchRecords, payload.MaxRecords)
	case o.MaxBatchBytes < 512 || o.MaxBatchBytes > payload.MaxBodyBytes/2:
		return fmt.Errorf("outbox: %s: MaxBatchBytes %d: want 512 to %d", o.Dir, o.MaxBatchBytes, payload.MaxBodyBytes/2)
	case o.CommitInterval < 0 || o.AckPersistInterval < 0 || o.HoldFor < 0 || o.TelemetryWindow < 0:
		return fmt.Errorf("outbox: %s: negative CommitInterval, TelemetryWindow, AckPersistInterval or HoldFor", o.Dir)
	}
	return nil
}

func (o *Outbox) release() {
	o.dir.Close()
	o.lock.Close()
}

func (o *Outbox) closeFiles() {
	for i := range o.logs {
		for _, s := range o.logs[i].segs {
			s.f.Close()
		}
	}
}

// recover rebuilds the index from the segment files and the state file.
func (o *Outbox) recover() error {
	dir := o.opts.Dir
	if err := os.Remove(filepath.Join(dir, stateTemp)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("outbox: remove %s: %w", stateTemp, err)
	}
	st, found, err := readState(dir)
	if err != nil {
		// The state file is replaced atomically, so this is media damage.
		// Without it every stored message counts as unacknowledged (sent
		// again, which the cloud tolerates) and the counter resumes above
		// the highest seq still on disk.
		o.log.Error("outbox: state file unreadable; acknowledgements are lost and stored messages will be sent again",
			"file", filepath.Join(dir, stateName), "err", err)
		st = state{}
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("outbox: list %s: %w", dir, err)
	}
	var maxStored uint64
	var buf []byte
	dirDirty := false
	for _, de := range names {
		kind, first, ok := parseSegmentName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, de.Name())
		s, cut, skipped, err := o.openSegment(path, kind, first, &buf)
		if err != nil {
			return err
		}
		o.st.TruncatedBytes += cut
		o.st.SkippedBytes += skipped
		if s == nil {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("outbox: remove empty segment %s: %w", path, err)
			}
			dirDirty = true
			continue
		}
		for i := range s.entries {
			e := &s.entries[i]
			if st.acked(e.seq) {
				e.acked = true
			} else {
				s.unacked++
				s.unRecs += int64(e.recs)
			}
		}
		maxStored = max(maxStored, s.entries[len(s.entries)-1].seq)
		o.bytes += s.size
		lg := o.kindLog(kind)
		lg.segs = append(lg.segs, s)
	}
	for i := range o.logs {
		slices.SortFunc(o.logs[i].segs, func(a, b *segment) int { return cmpU64(a.first, b.first) })
	}
	// The counter resumes above every number ever assigned or reserved,
	// whatever happened to the segments.
	o.reserved = max(st.reserved, maxStored)
	o.nextSeq = o.reserved + 1
	o.committed = o.reserved
	o.losses = st.losses
	switch {
	case !found && maxStored > 0:
		o.log.Warn("outbox: no state file; every stored message counts as unacknowledged", "dir", dir)
	case found && err == nil:
		o.declareRecovered(&st, maxStored)
	}
	if dirDirty {
		if err := o.dir.Sync(); err != nil {
			return fmt.Errorf("outbox: sync folder %s: %w", dir, err)
		}
	}
	o.lastAcked = st.ackedThrough
	for _, r := range st.ranges {
		o.lastAcked = max(o.lastAcked, r.hi)
	}
	// Write the state now so that lastSeq is on record before any segment is
	// deleted, then drop the segments that are fully acknowledged.
	o.ackDirty = true
	if err := o.housekeep(true); err != nil {
		if !isNoSpace(err) {
			return err
		}
		// Start anyway: acknowledged segments go once the state can be
		// written; appends drop the oldest telemetry to make room.
		o.log.Error("outbox: disk full; starting without recording the state", "dir", dir, "err", err)
		o.diskFullUntil = time.Now().Add(diskRetry)
		o.diskBound = o.bytes
	}
	o.ensureSpare()
	o.log.Info("outbox: opened", "bytes", o.bytes, "next_seq", o.nextSeq,
		"unacked", o.statsLocked().Unacked.Messages, "truncated_bytes", o.st.TruncatedBytes,
		"skipped_bytes", o.st.SkippedBytes, "declared_losses", len(o.losses))
	return nil
}

// openSegment scans one segment file, truncates a bad tail and returns the
// segment with its file open for reading and writing, or nil when nothing
// in it survived (the caller removes it). Damaged entries inside the file
// are stepped over (logged, their bytes returned as skipped) and left in
// place; the messages they held are declared by recovery.
func (o *Outbox) openSegment(path string, kind payload.Kind, first uint64, buf *[]byte) (*segment, int64, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("outbox: open segment %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, 0, fmt.Errorf("outbox: stat segment %s: %w", path, err)
	}
	entries, end, damage, serr := scanSegment(readerOf(f), kind, buf)
	var se *scanError
	if serr != nil && !errors.As(serr, &se) {
		f.Close()
		return nil, 0, 0, fmt.Errorf("outbox: read segment %s: %w", path, serr)
	}
	var skipped int64
	for _, d := range damage {
		skipped += d.n
		o.log.Warn("outbox: segment has a damaged entry; skipping it and keeping the entries after it",
			"file", path, "offset", d.off, "reason", d.err.Error(), "skipped_bytes", d.n)
	}
	if len(entries) > 0 && entries[0].seq != first {
		// The name is decided by the first entry; a mismatch means the file
		// was renamed or overwritten. Keep the entries, warn.
		o.log.Warn("outbox: segment name does not match its first entry", "file", path, "first_seq", entries[0].seq)
	}
	cut := fi.Size() - end
	if serr != nil {
		o.log.Warn("outbox: segment has a torn or corrupt tail; keeping every entry before it",
			"file", path, "offset", se.off, "reason", se.err.Error(), "kept_entries", len(entries), "discarded_bytes", cut)
	}
	if len(entries) == 0 {
		f.Close()
		if fi.Size() > 0 && serr != nil {
			o.log.Warn("outbox: removing segment with no intact entry", "file", path, "bytes", fi.Size())
		}
		return nil, fi.Size() - skipped, skipped, nil
	}
	if cut > 0 {
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, 0, 0, fmt.Errorf("outbox: truncate segment %s to %d bytes: %w", path, end, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, 0, 0, fmt.Errorf("outbox: sync segment %s: %w", path, err)
		}
	}
	return &segment{kind: kind, first: entries[0].seq, path: path, f: f, size: end, end: end, entries: entries}, cut, skipped, nil
}

// readerOf buffers sequential reads of f from its start.
func readerOf(f *os.File) io.Reader {
	return bufio.NewReaderSize(io.NewSectionReader(f, 0, math.MaxInt64), 64<<10)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Append validates and encodes recs, then waits until they are durable in
// the outbox. When it returns nil the records are on disk and will reach
// the uplink (unless telemetry is later dropped to make room). A record the
// cloud's decoder would reject is refused here with an error naming it. If
// ctx ends before the records were handed to a commit, Append returns
// ctx.Err() and nothing was stored; once handed over it waits for that
// commit, which takes one write and fsync.
func (o *Outbox) Append(ctx context.Context, kind payload.Kind, recs []payload.Record) error {
	req, err := o.enqueue(kind, recs, false)
	if err != nil || req == nil {
		return err
	}
	return o.await(ctx, req)
}

// AppendNow is Append for records that an action waits on (a door's
// access decision, made durable before its strike opens): their commit
// starts at once, without waiting for CommitInterval or the telemetry
// window, and takes along whatever else is queued by then, so the records
// of several doors that coincide share one write and fsync.
func (o *Outbox) AppendNow(ctx context.Context, kind payload.Kind, recs []payload.Record) error {
	req, err := o.enqueue(kind, recs, true)
	if err != nil || req == nil {
		return err
	}
	select {
	case o.now <- struct{}{}:
	default:
	}
	return o.await(ctx, req)
}

// await waits for req's commit, or withdraws req when ctx ends before the
// committer took it.
func (o *Outbox) await(ctx context.Context, req *request) error {
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		o.mu.Lock()
		if !req.taken {
			if i := slices.Index(o.queue, req); i >= 0 {
				o.queue = slices.Delete(o.queue, i, i+1)
			}
			o.mu.Unlock()
			return ctx.Err()
		}
		o.mu.Unlock()
		return <-req.done
	}
}

// AppendAsync is Append without the wait: it validates and encodes recs
// and queues them for the next commit, in call order, then returns a
// channel that receives the commit's result (nil: durable) exactly once.
// A caller that appends in order from one goroutine can so keep several
// appends in one telemetry window without waiting for each.
func (o *Outbox) AppendAsync(kind payload.Kind, recs []payload.Record) (<-chan error, error) {
	req, err := o.enqueue(kind, recs, false)
	if err != nil {
		return nil, err
	}
	if req == nil {
		done := make(chan error, 1)
		done <- nil
		return done, nil
	}
	return req.done, nil
}

// Encoded is records that Encode validated and encoded, ready to append
// with AppendEncodedAsync. The zero Encoded holds no records.
type Encoded struct {
	kind payload.Kind
	enc  []byte // encoded records, back to back
	offs []int  // record i is enc[offs[i]:offs[i+1]]
}

// Records is the number of records e holds.
func (e Encoded) Records() int { return max(len(e.offs)-1, 0) }

// Encode validates and encodes recs as Append does, without queueing
// them. A record the cloud's decoder would reject is refused with an error
// naming it, and then none of recs is encoded.
func (o *Outbox) Encode(kind payload.Kind, recs []payload.Record) (Encoded, error) {
	var e Encoded
	err := o.EncodeTo(&e, kind, recs)
	return e, err
}

// EncodeTo is Encode appending to e, which holds records of the same kind
// or none: a writer gathering many small appends into one builds one
// buffer. On an error e is left as it was.
func (o *Outbox) EncodeTo(e *Encoded, kind payload.Kind, recs []payload.Record) error {
	if kind != payload.Telemetry && kind != payload.Event {
		return fmt.Errorf("outbox: %s: append: unknown kind %d", o.opts.Dir, kind)
	}
	if e.kind != 0 && e.kind != kind && e.Records() > 0 {
		return fmt.Errorf("outbox: %s: append: %s records to %s records", o.opts.Dir, kind, e.kind)
	}
	if len(recs) == 0 {
		return nil
	}
	if len(e.offs) == 0 {
		e.offs = make([]int, 1, len(recs)+1)
	}
	e.kind = kind
	enc0, offs0 := len(e.enc), len(e.offs)
	fail := func(err error) error {
		e.enc, e.offs = e.enc[:enc0], e.offs[:offs0]
		return err
	}
	// Room for every record at the size of the last ones encoded, and 1/8
	// more, so that a small append allocates once.
	size := int(o.recSize.Load())
	e.enc = slices.Grow(e.enc, len(recs)*(size+size/8))
	e.offs = slices.Grow(e.offs, len(recs))
	for i := range recs {
		if err := checkRecord(&recs[i]); err != nil {
			return fail(fmt.Errorf("outbox: %s: append %s record %d: %w", o.opts.Dir, kind, i, err))
		}
		var err error
		start := len(e.enc)
		e.enc, err = payload.AppendRecord(e.enc, &recs[i])
		if err != nil {
			return fail(fmt.Errorf("outbox: %s: append %s record %d: %w", o.opts.Dir, kind, i, err))
		}
		if n := len(e.enc) - start; n+o.hdrMax+2 > o.opts.MaxBatchBytes {
			return fail(fmt.Errorf("outbox: %s: append %s record %d (%s): encodes to %d bytes, more than a batch holds (MaxBatchBytes %d)",
				o.opts.Dir, kind, i, recs[i].Measurement, n, o.opts.MaxBatchBytes))
		}
		e.offs = append(e.offs, len(e.enc))
		if i == 0 && len(recs) > 1 && cap(e.enc)-len(e.enc) < (len(recs)-1)*(len(e.enc)-start) {
			// The rest are most likely alike: room for them and 1/8 more.
			n := len(e.enc) - start
			e.enc = slices.Grow(e.enc, (len(recs)-1)*(n+n/8))
		}
	}
	o.recSize.Store(int64((len(e.enc) - enc0) / len(recs)))
	return nil
}

// AppendEncodedAsync is AppendAsync for records that Encode or EncodeTo
// prepared: they are queued as one append, in call order, and the channel
// receives the commit's result (nil: durable) exactly once. The buffers
// of e are taken over, not copied: the caller must not use e again.
func (o *Outbox) AppendEncodedAsync(e Encoded) (<-chan error, error) {
	done := make(chan error, 1)
	if e.Records() == 0 {
		done <- nil
		return done, nil
	}
	if err := o.queue1(&request{kind: e.kind, enc: e.enc, offs: e.offs, done: done}); err != nil {
		return nil, err
	}
	return done, nil
}

// enqueue validates and encodes recs and queues them for the committer; a
// nil request (no records) needs no commit. now marks an AppendNow.
func (o *Outbox) enqueue(kind payload.Kind, recs []payload.Record, now bool) (*request, error) {
	e, err := o.Encode(kind, recs)
	if err != nil || e.Records() == 0 {
		return nil, err
	}
	req := &request{kind: kind, enc: e.enc, offs: e.offs, done: make(chan error, 1), now: now}
	if err := o.queue1(req); err != nil {
		return nil, err
	}
	return req, nil
}

// queue1 estimates req's size on disk and queues it for the committer.
func (o *Outbox) queue1(req *request) error {
	n := int64(req.records())
	msgs := 1 + n/int64(o.opts.MaxBatchRecords) + int64(len(req.enc))/int64(o.opts.MaxBatchBytes-o.hdrMax)
	req.est = int64(len(req.enc)) + n + msgs*int64(o.hdrMax+2+frameOverhead) + segHeaderSize

	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	if o.failed != nil {
		err := o.failed
		o.mu.Unlock()
		return err
	}
	req.at = time.Now()
	o.queue = append(o.queue, req)
	o.mu.Unlock()
	o.signal(o.wake)
	return nil
}

// checkRecord applies the rules of the cloud's decoder (payload.DecodeBatch)
// that encoding alone does not: a batch holding one bad record would be
// rejected whole by the cloud, so a bad record is refused here instead.
func checkRecord(r *payload.Record) error {
	if !payload.ValidName(r.Measurement) {
		return fmt.Errorf("measurement %q: want [A-Za-z_][A-Za-z0-9_.-]*, at most %d characters", r.Measurement, payload.MaxNameLen)
	}
	if r.Time.Year() < 2000 {
		return fmt.Errorf("%s: time %s: want an observation time in year 2000 or later (is the clock set?)", r.Measurement, r.Time.UTC().Format(time.RFC3339))
	}
	if len(r.Tags) > payload.MaxTags {
		return fmt.Errorf("%s: %d tags, more than the %d allowed", r.Measurement, len(r.Tags), payload.MaxTags)
	}
	for k, v := range r.Tags {
		if !payload.ValidName(k) || k == "site" || k == "gateway" {
			return fmt.Errorf("%s: tag name %q is not allowed", r.Measurement, k)
		}
		if v == "" || len(v) > payload.MaxStringLen {
			return fmt.Errorf("%s: tag %q: value must be 1 to %d bytes", r.Measurement, k, payload.MaxStringLen)
		}
	}
	if len(r.Fields) > payload.MaxFields {
		return fmt.Errorf("%s: %d fields, more than the %d allowed", r.Measurement, len(r.Fields), payload.MaxFields)
	}
	for k, v := range r.Fields {
		if !payload.ValidName(k) {
			return fmt.Errorf("%s: field name %q is not allowed", r.Measurement, k)
		}
		if v.Type() == payload.TypeString && len(v.Str()) > payload.MaxStringLen {
			return fmt.Errorf("%s: field %q: string of %d bytes, more than the %d allowed", r.Measurement, k, len(v.Str()), payload.MaxStringLen)
		}
	}
	return payload.CheckSchema(r)
}

// Ack marks messages as acknowledged by the broker, in any order. Unknown
// sequence numbers (already acknowledged, dropped, or never assigned) are
// ignored. A segment is deleted once all its messages are acknowledged.
// Ack only updates memory (the state file follows within
// AckPersistInterval); its only error is ErrClosed.
func (o *Outbox) Ack(seqs ...uint64) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	freed := false
	for _, seq := range seqs {
		s, i := o.find(seq)
		if s == nil || s.entries[i].acked {
			continue
		}
		s.entries[i].acked = true
		s.unacked--
		s.unRecs -= int64(s.entries[i].recs)
		o.lastAcked = max(o.lastAcked, seq)
		o.ackDirty = true
		if s.unacked == 0 {
			freed = true
		}
	}
	o.mu.Unlock()
	if freed {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// find locates a stored message by seq.
func (o *Outbox) find(seq uint64) (*segment, int) {
	for k := range o.logs {
		segs := o.logs[k].segs
		i := sort.Search(len(segs), func(i int) bool { return segs[i].first > seq }) - 1
		if i < 0 {
			continue
		}
		es := segs[i].entries
		j := sort.Search(len(es), func(j int) bool { return es[j].seq >= seq })
		if j < len(es) && es[j].seq == seq {
			return segs[i], j
		}
	}
	return nil, 0
}

// ref is a message chosen by Pending, read after the lock is released.
type ref struct {
	seg *segment
	e   entry
}

// cursor walks one kind's unacknowledged messages in seq order.
type cursor struct {
	segs []*segment
	si   int
	ei   int
}

func newCursor(segs []*segment, after uint64) cursor {
	si := sort.Search(len(segs), func(i int) bool { return segs[i].first > after }) - 1
	c := cursor{segs: segs}
	if si < 0 {
		return c
	}
	c.si = si
	es := segs[si].entries
	c.ei = sort.Search(len(es), func(j int) bool { return es[j].seq > after })
	return c
}

// peek returns the next unacknowledged entry without consuming it.
func (c *cursor) peek() (*segment, *entry) {
	for c.si < len(c.segs) {
		s := c.segs[c.si]
		if s.unacked > 0 {
			for c.ei < len(s.entries) {
				if e := &s.entries[c.ei]; !e.acked {
					return s, e
				}
				c.ei++
			}
		}
		c.si++
		c.ei = 0
	}
	return nil, nil
}

// Pending blocks until at least one unacknowledged message with Seq > after
// is stored (or ctx ends, or the outbox closes) and returns up to max of
// them in sequence order, both kinds merged. after = 0 starts at the oldest
// unacknowledged message: the replay after a reconnect. Bodies are read
// from the segment files; one call returns at most about 4 MiB of bodies
// (always at least one message). The returned bodies belong to the caller.
func (o *Outbox) Pending(ctx context.Context, after uint64, max int) ([]payload.Message, error) {
	if max < 1 {
		return nil, fmt.Errorf("outbox: %s: pending: max %d, want at least 1", o.opts.Dir, max)
	}
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return nil, ErrClosed
		}
		refs := o.collect(after, max)
		ch := o.changed
		o.mu.Unlock()
		if len(refs) > 0 {
			msgs, err := o.read(refs)
			if err != nil || len(msgs) > 0 {
				return msgs, err
			}
			after = refs[len(refs)-1].e.seq
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

func (o *Outbox) collect(after uint64, max int) []ref {
	tc := newCursor(o.logs[0].segs, after)
	ec := newCursor(o.logs[1].segs, after)
	var refs []ref
	var bytes int64
	for len(refs) < max {
		ts, te := tc.peek()
		es, ee := ec.peek()
		var r ref
		switch {
		case te == nil && ee == nil:
			return refs
		case ee == nil || (te != nil && te.seq < ee.seq):
			r = ref{ts, *te}
			tc.ei++
		default:
			r = ref{es, *ee}
			ec.ei++
		}
		if len(refs) > 0 && bytes+int64(r.e.size) > maxPendingBytes {
			break
		}
		bytes += int64(r.e.size)
		refs = append(refs, r)
	}
	return refs
}

// read loads the frames of refs, one ReadAt per run of adjacent frames in
// one segment, and checks each frame's CRC again.
func (o *Outbox) read(refs []ref) ([]payload.Message, error) {
	msgs := make([]payload.Message, 0, len(refs))
	var corrupt []ref
	o.filesMu.RLock()
	for i := 0; i < len(refs); {
		s := refs[i].seg
		j := i + 1
		for j < len(refs) && refs[j].seg == s && int64(refs[j].e.off) == int64(refs[j-1].e.off)+refs[j-1].e.frameLen() {
			j++
		}
		if s.gone {
			i = j
			continue
		}
		start := int64(refs[i].e.off)
		end := int64(refs[j-1].e.off) + refs[j-1].e.frameLen()
		buf := make([]byte, end-start)
		if _, err := s.f.ReadAt(buf, start); err != nil {
			o.filesMu.RUnlock()
			return nil, fmt.Errorf("outbox: read %s at offset %d: %w", s.path, start, err)
		}
		for _, r := range refs[i:j] {
			b := buf[int64(r.e.off)-start : int64(r.e.off)-start+r.e.frameLen()]
			fr, _, err := decodeFrame(b)
			if err == nil && fr.seq != r.e.seq {
				err = fmt.Errorf("%w: seq %d where the index has %d", errBadEntry, fr.seq, r.e.seq)
			}
			if err != nil {
				o.log.Error("outbox: stored message is corrupt; dropping it", "file", s.path, "offset", r.e.off, "seq", r.e.seq, "err", err)
				corrupt = append(corrupt, r)
				continue
			}
			msgs = append(msgs, payload.Message{Seq: fr.seq, Kind: fr.kind, Records: int(fr.recs), Body: fr.body[:len(fr.body):len(fr.body)]})
		}
		i = j
	}
	o.filesMu.RUnlock()
	if len(corrupt) > 0 {
		o.mu.Lock()
		freed := false
		for _, r := range corrupt {
			s, i := o.find(r.e.seq)
			if s == nil || s.entries[i].acked {
				continue
			}
			s.entries[i].acked = true
			s.unacked--
			s.unRecs -= int64(s.entries[i].recs)
			o.st.DroppedCorrupt.Messages++
			o.st.DroppedCorrupt.Records += int64(s.entries[i].recs)
			o.addLossLocked(payload.SeqRange{First: r.e.seq, Last: r.e.seq}, payload.LossCorrupt)
			freed = freed || s.unacked == 0
		}
		o.mu.Unlock()
		if freed {
			select {
			case o.wake <- struct{}{}:
			default:
			}
		}
	}
	return msgs, nil
}

// Stats returns a snapshot of sizes and counters.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.statsLocked()
}

func (o *Outbox) statsLocked() Stats {
	s := o.st
	s.Bytes = o.bytes
	s.NextSeq = o.nextSeq
	s.LastAcked = o.lastAcked
	s.Losses = len(o.losses)
	s.SentThrough = o.sentThroughLocked()
	s.AckedThrough = o.ackedThroughLocked()
	for k := range o.logs {
		for _, seg := range o.logs[k].segs {
			s.Segments++
			s.Unacked.Messages += int64(seg.unacked)
			s.Unacked.Records += seg.unRecs
		}
	}
	return s
}

// ackedThroughLocked is one below the oldest unacknowledged message, or the
// highest committed seq when nothing is unacknowledged.
func (o *Outbox) ackedThroughLocked() uint64 {
	w := o.committed
	for k := range o.logs {
		c := newCursor(o.logs[k].segs, 0)
		if _, e := c.peek(); e != nil && e.seq-1 < w {
			w = e.seq - 1
		}
	}
	return w
}

// Close commits what is queued, writes the state file and releases the
// folder. Calls after Close return ErrClosed.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	o.closed = true
	close(o.changed)
	o.mu.Unlock()
	close(o.quit)
	<-o.done
	// A clean stop records the exact high-water mark, so the next start
	// skips no reserved number.
	o.mu.Lock()
	if o.reserved != o.nextSeq-1 {
		o.reserved = o.nextSeq - 1
		o.ackDirty = true
	}
	o.mu.Unlock()
	err := o.housekeep(true)
	o.filesMu.Lock()
	for k := range o.logs {
		for _, s := range o.logs[k].segs {
			if cerr := s.f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("outbox: close %s: %w", s.path, cerr)
			}
			s.gone = true
		}
	}
	o.filesMu.Unlock()
	o.release()
	return err
}
