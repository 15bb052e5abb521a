package rules

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

type discard struct{}

func (discard) Write(context.Context, string, string, payload.Value) error { return nil }
func (discard) Emit(context.Context, payload.Kind, []payload.Record)       {}

// benchRules is 200 rules over parking bays of 10 zones: per zone the bay
// LEDs, overstay, noisy sensor, the free count and zone full (60), and 140
// rules for single reserved bays.
func benchRules() string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for z := range 10 {
		fmt.Fprintf(&b, `  - name: led-red-%[1]d
    trigger: {measurement: parking_bay, tags: {zone: z%[1]d}}
    when: occupied
    actions: [{write: {device: "{{ device }}", point: led, value: red}}]
  - name: led-green-%[1]d
    trigger: {measurement: parking_bay, tags: {zone: z%[1]d}}
    when: "!occupied"
    actions: [{write: {device: "{{ device }}", point: led, value: green}}]
  - name: overstay-%[1]d
    trigger: {measurement: parking_bay, tags: {zone: z%[1]d}}
    when: occupied && held_for("occupied") > duration("2h")
    actions: [{alert: {message: 'bay {{ tags.bay }} occupied for {{ held_for("occupied") }}'}}]
  - name: noisy-%[1]d
    trigger: {measurement: parking_bay, tags: {zone: z%[1]d}, changed: [occupied]}
    when: count_within("60s") > 6
    cooldown: 10m
    actions: [{alert: {severity: info, message: 'bay {{ tags.bay }} flaps'}}]
  - name: free-%[1]d
    trigger: {measurement: parking_bay, tags: {zone: z%[1]d}}
    actions: [{set: {name: z%[1]d-free, value: '{{ 50 - count_true("occupied") }}'}}]
  - name: full-%[1]d
    trigger: {virtual: z%[1]d-free}
    when: value == 0
    actions: [{alert: {message: zone z%[1]d is full}}]
`, z)
	}
	for i := range 140 {
		fmt.Fprintf(&b, `  - name: reserved-%[1]d
    trigger: {measurement: parking_bay, tags: {bay: "%03[1]d"}}
    when: occupied && distance_cm < 150
    actions: [{alert: {message: 'reserved bay {{ tags.bay }} taken'}}]
`, i*3)
	}
	return b.String()
}

// BenchmarkObserve200Rules500Devices: one op is one record of one of 500
// bay sensors evaluated against 200 rules (all on parking_bay, so every
// record is matched against every rule's selector). Reports the latency of
// one Observe call (p50, p99; target p99 <= 1 ms), records per second, and
// the worst per-rule evaluation p99 from Stats (few samples per rule: it
// shows scheduler and GC pauses of a busy machine).
func BenchmarkObserve200Rules500Devices(b *testing.B) {
	clk := newFakeClock()
	e, err := New(mustParse(b, benchRules()), Options{Clock: clk, Writer: discard{}, Emitter: discard{}, QueueLen: 1024})
	if err != nil {
		b.Fatal(err)
	}
	if n := len(e.Names()); n != 200 {
		b.Fatalf("%d rules", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	recs := make([]payload.Record, 500)
	for i := range recs {
		recs[i] = bay(fmt.Sprintf("bay-%03d", i), fmt.Sprintf("z%d", i/50), fmt.Sprintf("%03d", i), false, t0)
	}
	var h histogram
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		r := recs[i%500]
		// Every device changes state every 7th cycle, so edges fire.
		r.Fields = map[string]payload.Value{"occupied": payload.Bool((i/500)%7 == 0 != (i%3 == 0)), "distance_cm": payload.Float(120)}
		r.Time = t0.Add(time.Duration(i) * time.Millisecond)
		one := []payload.Record{r}
		t := time.Now()
		e.Observe(one)
		h.add(time.Since(t))
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(h.quantile(0.5).Nanoseconds()), "p50-ns/record")
	b.ReportMetric(float64(h.quantile(0.99).Nanoseconds()), "p99-ns/record")
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
	var worst time.Duration
	for _, r := range e.Stats().Rules {
		worst = max(worst, r.P99)
	}
	b.ReportMetric(float64(worst.Nanoseconds()), "worst-rule-p99-ns")
}
