package pipeline

import (
	"reflect"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

func bay(occupied bool, dist float64, t time.Time) payload.Record {
	return payload.Record{Measurement: "parking_bay", Time: t,
		Tags:   map[string]string{"device": "bay-1", "bay": "1"},
		Fields: map[string]payload.Value{"occupied": payload.Bool(occupied), "distance_cm": payload.Float(dist)}}
}

func TestReportByException(t *testing.T) {
	f := New()
	pol := &Policy{Deadband: map[string]float64{"distance_cm": 5}, MaxSilence: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		rec  payload.Record
		want bool
		why  string
	}{
		{bay(false, 250, t0), true, "first reading of a series"},
		{bay(false, 252, t0.Add(time.Second)), false, "within deadband"},
		{bay(false, 254, t0.Add(2*time.Second)), false, "still within deadband of the last reported 250"},
		{bay(false, 256, t0.Add(3*time.Second)), true, "beyond deadband of 250"},
		{bay(true, 256, t0.Add(4*time.Second)), true, "bool changed"},
		{bay(true, 256, t0.Add(63*time.Second)), false, "59 s of silence"},
		{bay(true, 256, t0.Add(64*time.Second)), true, "max silence reached"},
	}
	for i, s := range steps {
		got := f.Apply(pol, []payload.Record{s.rec})
		if (len(got) == 1) != s.want {
			t.Fatalf("step %d (%s): reported=%v, want %v", i, s.why, len(got) == 1, s.want)
		}
	}
}

func TestSeriesAreIndependent(t *testing.T) {
	f := New()
	t0 := time.Now()
	a := bay(false, 250, t0)
	b := bay(false, 250, t0)
	b.Tags = map[string]string{"device": "bay-2", "bay": "2"}
	if got := f.Apply(&Policy{MaxSilence: time.Hour}, []payload.Record{a, b}); len(got) != 2 {
		t.Fatalf("two new series: got %d records", len(got))
	}
	if f.Len() != 2 {
		t.Fatalf("series tracked: %d", f.Len())
	}
	a.Time = t0.Add(time.Second)
	b.Time = a.Time
	b.Fields = map[string]payload.Value{"occupied": payload.Bool(true), "distance_cm": payload.Float(250)}
	got := f.Apply(&Policy{MaxSilence: time.Hour}, []payload.Record{a, b})
	if len(got) != 1 || got[0].Tags["device"] != "bay-2" {
		t.Fatalf("only bay-2 changed, got %+v", got)
	}
}

func TestNilPolicyReportsEverything(t *testing.T) {
	f := New()
	t0 := time.Now()
	for i := 0; i < 3; i++ {
		if got := f.Apply(nil, []payload.Record{bay(false, 250, t0)}); len(got) != 1 {
			t.Fatalf("reading %d dropped without a policy", i)
		}
	}
}

func TestFieldSetChangeIsAChange(t *testing.T) {
	f := New()
	t0 := time.Now()
	f.Apply(&Policy{MaxSilence: time.Hour}, []payload.Record{bay(false, 250, t0)})
	r := bay(false, 250, t0)
	delete(r.Fields, "distance_cm") // sensor lost its echo
	if got := f.Apply(&Policy{MaxSilence: time.Hour}, []payload.Record{r}); len(got) != 1 {
		t.Fatal("a field that disappeared was not reported")
	}
}

func TestStamp(t *testing.T) {
	t0 := time.Now()
	own := t0.Add(-time.Second)
	recs := []payload.Record{{}, {Time: own}}
	Stamp(recs, t0)
	if !recs[0].Time.Equal(t0) || !recs[1].Time.Equal(own) {
		t.Fatalf("%v", recs)
	}
}

func BenchmarkApply500Devices(b *testing.B) {
	f := New()
	pol := &Policy{Deadband: map[string]float64{"distance_cm": 5}, MaxSilence: time.Minute}
	recs := make([]payload.Record, 500)
	t0 := time.Now()
	for i := range recs {
		recs[i] = bay(i%2 == 0, 250, t0)
		recs[i].Tags = map[string]string{"device": "bay-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), "lot": "a"}
	}
	buf := make([]payload.Record, len(recs))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(buf, recs)
		f.Apply(pol, buf)
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}

// Neither an unchanged nor a changed reading of a known series allocates.
func TestApplyAllocations(t *testing.T) {
	f := New()
	pol := &Policy{MaxSilence: time.Hour}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	same, moved := bay(false, 250, t0), bay(false, 300, t0)
	buf := make([]payload.Record, 1)
	apply := func(r payload.Record) int {
		buf[0] = r
		return len(f.Apply(pol, buf))
	}
	apply(same)
	if n := testing.AllocsPerRun(100, func() {
		if apply(same) != 0 {
			t.Fatal("an unchanged reading was reported")
		}
	}); n != 0 {
		t.Errorf("an unchanged reading allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		apply(moved)
		apply(same)
	}); n != 0 {
		t.Errorf("changed readings allocate %v times, want 0", n)
	}
	if apply(same) != 0 || apply(moved) != 1 {
		t.Error("the last reported fields are not what the next reading is compared with")
	}
}

// A series costs one small entry: the filter keeps the reported record's
// fields map, not a copy of it (which was as large as the device's last
// record, for every series).
func TestFilterKeepsTheReportedMap(t *testing.T) {
	f := New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first, second := bay(false, 250, t0), bay(false, 300, t0.Add(time.Second))
	f.Apply(nil, []payload.Record{first})
	f.Apply(nil, []payload.Record{second})
	if f.Len() != 1 {
		t.Fatalf("%d series, want 1", f.Len())
	}
	for _, l := range f.series {
		if reflect.ValueOf(l.fields).UnsafePointer() != reflect.ValueOf(second.Fields).UnsafePointer() {
			t.Errorf("the filter keeps %v in a map of its own, want the reported record's", l.fields)
		}
	}
}
