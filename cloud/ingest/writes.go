package ingest

import (
	"context"
	"hash/maphash"
	"slices"
	"strconv"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/payload"
)

// Writes in flight.
//
// The writer goroutine admits messages in queue order (sequence check,
// derived parking points) and packs them into jobs of at most BatchPoints
// points. Each job is written by a goroutine of its own, so up to
// Config.Writes requests are in flight at once, and they may complete in
// any order. The writer completes jobs strictly in the order it built
// them: a job whose write landed waits until every earlier job completed.
// Only then are its messages recorded as written, committed (a Source's
// Committer) and acknowledged, and only then are their sequence numbers
// settled in the fleet (fleet.AdmitPending, fleet.Settled), so that no
// acknowledgement to a gateway counts a number whose write is in flight or
// failed. With Writes = 1 this is the plain loop: build, write, complete.

const (
	// DefaultWrites is Config.Writes when unset: two requests in flight
	// hide one InfluxDB round trip.
	DefaultWrites = 2
	// MaxWrites bounds Config.Writes.
	MaxWrites = 64
)

// job is one InfluxDB write and the messages it carries.
type job struct {
	pending []item
	lines   []byte
	offsets []int // end of each pending item's lines
	counts  []int // points per pending item
	npoints int

	// after are the done channels of earlier jobs in flight that carry a
	// derived point of the same series and time as this one: this write
	// waits for them, so the point computed last lands last.
	after []chan struct{}
	lots  []string // keys of its derived points (scratch.lots)

	// Set by the write goroutine before it closes done.
	refused []error   // per item: InfluxDB refused its points for good
	aborted bool      // ctx ended before the write completed: nothing landed for sure
	landed  time.Time // when the write completed
	done    chan struct{}
}

func (j *job) reset() {
	for i := range j.pending {
		j.pending[i] = item{}
	}
	j.pending, j.lines, j.offsets, j.counts, j.npoints = j.pending[:0], j.lines[:0], j.offsets[:0], j.counts[:0], 0
	j.refused, j.aborted, j.landed, j.done = j.refused[:0], false, time.Time{}, nil
	clear(j.after)
	j.after, j.lots = j.after[:0], j.lots[:0]
}

// scratch is the writer goroutine's reusable state for building jobs.
type scratch struct {
	h       maphash.Hash
	keys    influxw.Keys
	derived []payload.Record
	// lots maps a derived point's series and time (gateway, lot, zone,
	// time) to the done channel of the last job in flight that carries
	// it. The records a gateway sends never repeat a series and time in
	// two messages (a redelivery is not written again), but the lot
	// points derived from them may: two bays of one lot changing at the
	// same instant, reported in two messages. Overlapping writes could
	// land those out of order, and InfluxDB keeps the last point written
	// for a series and time.
	lots map[string]chan struct{}
}

// add admits one item into j: the dropped announcement is applied, the
// batch runs the sequence check and, when it is to be written, its points
// and derived points are appended.
func (in *Ingest) add(j *job, s *scratch, it item) {
	n := 0
	if d := it.dropped; d != nil {
		in.declare(d)
	}
	if b := it.batch; b != nil {
		start := len(j.lines)
		dropped := in.filter(b)
		for i := range b.Records {
			j.lines = influxw.AppendLine(j.lines, &s.keys, b.Site, b.Gateway, &b.Records[i])
			j.lines = append(j.lines, '\n')
		}
		s.h.Reset()
		s.h.WriteByte(byte(b.Kind))
		s.h.Write(j.lines[start:])
		it.hash = s.h.Sum64()
		res, expected := in.fleet.AdmitPending(b, it.hash)
		it.write = res.Write()
		if it.write {
			it.pend = b
			n = len(b.Records)
			s.derived = in.fleet.Derive(s.derived[:0], b)
			for i := range s.derived {
				j.lines = influxw.AppendLine(j.lines, &s.keys, b.Site, b.Gateway, &s.derived[i])
				j.lines = append(j.lines, '\n')
				s.order(j, b, &s.derived[i])
			}
			n += len(s.derived)
			in.dropRecords(b, dropped)
		} else {
			j.lines = j.lines[:start]
		}
		switch res {
		case fleet.SeqJump:
			it.batch = nil
			in.reject(&Rejection{Reason: fleet.ReasonSeqJump, Site: b.Site, Gateway: b.Gateway, Err: in.jumpError(it.msg.Topic(), b.Seq, expected)})
		case fleet.SeqConflict:
			a := conflictAlert(b)
			j.lines = influxw.AppendLine(j.lines, &s.keys, b.Site, b.Gateway, &a)
			j.lines = append(j.lines, '\n')
			n = 1
			if ok, sup := in.limit.allow("conflict"); ok {
				in.log.Error("sequence conflict: a number seen before arrived with different content; not written, the first write is kept",
					"site", b.Site, "gateway", b.Gateway, "seq", b.Seq, "records", len(b.Records), "suppressed_since_last", sup)
			}
		case fleet.SeqGap, fleet.SeqReset, fleet.SeqLate, fleet.SeqFarBelow:
			if ok, sup := in.limit.allow("seq"); ok {
				st, _ := in.fleet.Gateway(b.Site, b.Gateway)
				in.log.Warn("sequence "+res.String(), "site", b.Site, "gateway", b.Gateway, "seq", b.Seq, "expected", expected, "gaps_open", st.Seq.GapsOpen, "suppressed_since_last", sup)
			}
		}
	}
	j.pending = append(j.pending, it)
	j.npoints += n
	j.offsets = append(j.offsets, len(j.lines))
	j.counts = append(j.counts, n)
}

// order makes j's write wait for an earlier job in flight that carries a
// point of the same series and time as the derived record d.
func (s *scratch) order(j *job, b *payload.Batch, d *payload.Record) {
	k := b.Site + "/" + b.Gateway + "\x00" + d.Measurement + "\x00" + d.Tags["lot"] + "\x00" + d.Tags["zone"] + "\x00" + strconv.FormatInt(d.Time.UnixNano(), 10)
	if ch, ok := s.lots[k]; ok && ch != j.done && !slices.Contains(j.after, ch) {
		j.after = append(j.after, ch)
	}
	if s.lots == nil {
		s.lots = make(map[string]chan struct{})
	}
	s.lots[k] = j.done
	j.lots = append(j.lots, k)
}

// forget removes a completed job's points from s.lots.
func (s *scratch) forget(j *job) {
	for _, k := range j.lots {
		if s.lots[k] == j.done {
			delete(s.lots, k)
		}
	}
}

// writeLoop is the single consumer of the queue. It builds jobs, starts
// their writes (at most Config.Writes at once) and completes them in
// order.
func (in *Ingest) writeLoop(ctx context.Context) {
	every := in.cfg.Grace / 4
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	ackTick := time.NewTicker(in.cfg.AckEvery)
	defer ackTick.Stop()
	var (
		s        scratch
		inflight []*job // started, oldest first
		free     []*job
		landed   time.Time // latest completion of a job completed so far
	)
	s.h.SetSeed(in.seed)
	next := func() *job {
		j := &job{}
		if n := len(free); n > 0 {
			j = free[n-1]
			free = free[:n-1]
		}
		j.done = make(chan struct{})
		return j
	}
	for {
		var head <-chan struct{}
		if len(inflight) > 0 {
			head = inflight[0].done
		}
		queue := in.queue
		if len(inflight) >= in.cfg.Writes {
			queue = nil // every write slot taken: wait for the oldest
		}
		var j *job
		select {
		case <-ctx.Done():
			in.stopWrites(ctx, inflight, landed)
			return
		case <-tick.C:
			in.expire()
			continue
		case <-ackTick.C:
			in.publishAcks()
			continue
		case <-head:
			for len(inflight) > 0 && isDone(inflight[0]) {
				done := inflight[0]
				inflight = inflight[1:]
				if done.landed.Before(landed) {
					in.held.Add(1) // landed while an earlier write was still in flight
				}
				landed = later(landed, done.landed)
				in.complete(ctx, done)
				s.forget(done)
				if cap(done.lines) > 4*in.cfg.BatchPoints*256 {
					done.lines = nil // one huge batch must not pin its buffer
				}
				done.reset()
				free = append(free, done)
			}
			in.publishAcks() // every number settled so far is written
			continue
		case it := <-queue:
			j = next()
			in.add(j, &s, it)
		}
	fill:
		for j.npoints < in.cfg.BatchPoints {
			select {
			case it := <-in.queue:
				in.add(j, &s, it)
			default:
				break fill
			}
		}
		j.refused = append(j.refused[:0], make([]error, len(j.pending))...)
		in.inFlight.Add(1)
		go in.write(ctx, j)
		inflight = append(inflight, j)
	}
}

func isDone(j *job) bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// write writes a job's lines, retrying while InfluxDB is unavailable, and
// when InfluxDB refuses them finds the refused messages one by one. It
// touches nothing but the job and the counters: the writer goroutine
// completes the job.
func (in *Ingest) write(ctx context.Context, j *job) {
	defer close(j.done)
	defer in.inFlight.Add(-1)
	for _, ch := range j.after {
		select {
		case <-ch:
		case <-ctx.Done():
			j.aborted = true
			return
		}
	}
	err := in.writeRetry(ctx, j.lines, len(j.pending))
	if err != nil && ctx.Err() != nil {
		j.aborted = true
		return
	}
	if err != nil { // rejected: find the bad messages one by one
		start := 0
		for i := range j.pending {
			part := j.lines[start:j.offsets[i]]
			start = j.offsets[i]
			if j.pending[i].batch == nil || len(part) == 0 {
				continue
			}
			if len(j.pending) > 1 {
				err = in.writeRetry(ctx, part, 1)
				if err != nil && ctx.Err() != nil {
					j.aborted = true
					return
				}
			}
			j.refused[i] = err
		}
	}
	j.landed = time.Now()
}

// complete records, settles, commits and acknowledges a job whose write
// completed, after every earlier one.
func (in *Ingest) complete(ctx context.Context, j *job) {
	start := 0
	for i := range j.pending {
		it := &j.pending[i]
		if err := j.refused[i]; err != nil {
			in.dropRejected(it, j.lines[start:j.offsets[i]], err)
		}
		start = j.offsets[i]
		if b := it.pend; b != nil {
			in.fleet.Settled(b.Site, b.Gateway, b.Seq)
		}
	}
	in.latency.observe(j.landed, j.pending)
	committed := in.commit(ctx, j.pending)
	for i := range j.pending {
		it := &j.pending[i]
		if b := it.batch; b != nil {
			in.points.Add(uint64(j.counts[i]))
			if it.write {
				in.fleet.Written(b, j.counts[i])
				in.written.Add(1)
			} else {
				in.skipped.Add(1) // a duplicate, or a conflict (its alert point written)
			}
		}
		if committed {
			it.msg.Ack()
			in.acked.Add(1)
		}
		in.queued.Add(-1)
		in.budget.Release(it.size)
	}
}

// stopWrites ends the writer: it waits for every write goroutine (ctx is
// done, so a write still retrying gives up), completes the jobs that
// landed in order up to the first that did not, and leaves the rest
// unacknowledged for redelivery, their numbers recorded as not written
// and not settled (no acknowledgement to a gateway covers them).
func (in *Ingest) stopWrites(ctx context.Context, inflight []*job, landed time.Time) {
	for _, j := range inflight {
		<-j.done
	}
	i := 0
	for ; i < len(inflight) && !inflight[i].aborted; i++ {
		if inflight[i].landed.Before(landed) {
			in.held.Add(1)
		}
		landed = later(landed, inflight[i].landed)
		in.complete(ctx, inflight[i])
	}
	for _, j := range inflight[i:] {
		for k := range j.pending {
			if it := &j.pending[k]; it.batch != nil && it.write {
				in.fleet.Unwritten(it.batch, it.hash)
			}
		}
	}
}
