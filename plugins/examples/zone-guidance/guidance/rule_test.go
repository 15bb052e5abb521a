package guidance_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/examples/zone-guidance/guidance"
	"github.com/luling-edge/luling/plugins/sdk"
)

var t0 = time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC)

func configure(t testing.TB, cfg string, log *slog.Logger) *guidance.Rule {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := guidance.New()
	if err := r.Configure(context.Background(), sdk.RuleEnv{Name: "guidance-test", Config: []byte(cfg), Logger: log}); err != nil {
		t.Fatalf("Configure(%s): %v", cfg, err)
	}
	return r
}

// occ and free are parking_bay records of lot p1, as a bay sensor's driver
// makes them.
func occ(zone, bayID string) payload.Record  { return bayRec("p1", zone, bayID, true) }
func free(zone, bayID string) payload.Record { return bayRec("p1", zone, bayID, false) }

func bayRec(lot, zone, bayID string, occupied bool) payload.Record {
	tags := map[string]string{"device": "sensor-" + bayID, "bay": bayID, "zone": zone}
	if lot != "" {
		tags["lot"] = lot
	}
	return payload.Record{
		Measurement: "parking_bay",
		Tags:        tags,
		Fields:      map[string]payload.Value{"occupied": payload.Bool(occupied), "distance_cm": payload.Float(42)},
		Time:        t0,
	}
}

// show writes actions as one line each, so that a test compares them all,
// in order, with what it wants.
func show(acts []sdk.Action) []string {
	out := []string{}
	for _, a := range acts {
		switch a.Kind {
		case sdk.ActionWrite:
			out = append(out, fmt.Sprintf("write %s.%s=%s(%s)", a.Device, a.Point, a.Value.Type(), a.Value))
		case sdk.ActionAlert:
			out = append(out, fmt.Sprintf("alert %s %s: %s", a.Severity, a.Device, a.Message))
		case sdk.ActionEmit, sdk.ActionEvent:
			r := a.Record
			kind := "emit"
			if a.Kind == sdk.ActionEvent {
				kind = "event"
			}
			s := fmt.Sprintf("%s %s zone=%s", kind, r.Measurement, r.Tags["zone"])
			if len(r.Tags) != 1 {
				s += fmt.Sprintf(" tags=%v", r.Tags)
			}
			for _, f := range []string{"free", "occupied", "capacity"} {
				v, ok := r.Fields[f]
				if !ok || v.Type() != payload.TypeInt {
					s += fmt.Sprintf(" %s:missing-or-not-int", f)
					continue
				}
				s += fmt.Sprintf(" %s=%d", f, v.Int())
			}
			if len(r.Fields) != 3 {
				s += fmt.Sprintf(" fields=%v", r.Fields)
			}
			out = append(out, s)
		default:
			out = append(out, fmt.Sprintf("unknown action %+v", a))
		}
	}
	return out
}

func shown(sign string, free int) string { return fmt.Sprintf("write %s.free=int(%d)", sign, free) }

func emitted(zone string, free, occupied, capacity int) string {
	return fmt.Sprintf("emit zone_guidance zone=%s free=%d occupied=%d capacity=%d", zone, free, occupied, capacity)
}

func full(sign, zone string, capacity int) string {
	return fmt.Sprintf("alert warning %s: zone %s is full (%d bays)", sign, zone, capacity)
}

func freeAgain(sign, zone string) string {
	return fmt.Sprintf("alert info %s: zone %s has free bays again", sign, zone)
}

// step is one Evaluate call and the actions it must return.
type step struct {
	name    string
	in      sdk.Input
	want    []string
	comment string
}

func records(recs ...payload.Record) sdk.Input { return sdk.Input{Records: recs, Now: t0} }

func resumed(recs ...payload.Record) sdk.Input {
	return sdk.Input{Records: recs, Now: t0, Resumed: true}
}

func run(t *testing.T, r *guidance.Rule, steps []step) {
	t.Helper()
	for i, s := range steps {
		acts, err := r.Evaluate(context.Background(), s.in)
		if err != nil {
			t.Fatalf("step %d (%s): Evaluate: %v", i, s.name, err)
		}
		want := s.want
		if want == nil {
			want = []string{}
		}
		if got := show(acts); !slices.Equal(got, want) {
			t.Errorf("step %d (%s): actions\n\t%s\nwant\n\t%s", i, s.name, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}
}

const northSouth = `{"zones": {
	"north": {"sign": "sign-north", "capacity": 3},
	"south": {"sign": "sign-south", "capacity": 2}
}}`

func TestDescribe(t *testing.T) {
	d := guidance.New().Describe()
	if d.Name != "zone-guidance" || d.Version != "1.0.0" || d.Description == "" || strings.Contains(d.Description, "\n") {
		t.Errorf("Describe = %+v", d)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name, cfg, want string
	}{
		{"unknown key", `{"zones": {"north": {"sign": "s", "capacity": 1}}, "colour": "red"}`, `unknown key "colour"`},
		{"unknown zone key", `{"zones": {"north": {"sign": "s", "capacity": 1, "sgin": "x"}}}`, `unknown key "sgin"`},
		{"missing sign", `{"zones": {"north": {"capacity": 3}}}`, `key "zones.north.sign": missing`},
		{"empty sign", `{"zones": {"north": {"sign": "", "capacity": 3}}}`, `key "zones.north.sign": missing`},
		{"capacity 0", `{"zones": {"north": {"sign": "s", "capacity": 0}}}`, `key "zones.north.capacity": 0 out of range 1..10000`},
		{"no capacity", `{"zones": {"north": {"sign": "s"}}}`, `key "zones.north.capacity": 0 out of range`},
		{"capacity too big", `{"zones": {"north": {"sign": "s", "capacity": 10001}}}`, `key "zones.north.capacity": 10001 out of range`},
		{"capacity negative", `{"zones": {"north": {"sign": "s", "capacity": -4}}}`, `key "zones.north.capacity": -4 out of range`},
		{"capacity a string", `{"zones": {"north": {"sign": "s", "capacity": "3"}}}`, `key "zones.north.capacity": got a JSON string, want int`},
		{"no zones", `{}`, `key "zones": no zones`},
		{"empty config", ``, `key "zones": no zones`},
		{"empty zones", `{"zones": {}}`, `key "zones": no zones`},
		{"empty zone name", `{"zones": {"": {"sign": "s", "capacity": 1}}}`, `key "zones": a zone with an empty name`},
		{"empty point", `{"zones": {"north": {"sign": "s", "capacity": 1}}, "point": ""}`, `key "point": empty`},
		{"shared sign", `{"zones": {"a": {"sign": "s", "capacity": 1}, "b": {"sign": "s", "capacity": 1}}}`, `key "zones.b.sign": sign "s" already shows zone "a"`},
		{"full_alert a string", `{"zones": {"north": {"sign": "s", "capacity": 1}}, "full_alert": "yes"}`, `key "full_alert": got a JSON string`},
		{"not an object", `[1]`, `got a JSON array`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := guidance.New().Configure(context.Background(), sdk.RuleEnv{Config: []byte(c.cfg), Logger: slog.New(slog.DiscardHandler)})
			if err == nil || !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Configure(%s) = %v, want ErrInvalid containing %q", c.cfg, err, c.want)
			}
		})
	}
}

// A sequence of bay changes, one call each.
func TestSequence(t *testing.T) {
	r := configure(t, northSouth, nil)
	run(t, r, []step{
		{name: "tick before any record", in: sdk.Input{Now: t0, Tick: true}},
		{name: "first car in north", in: records(occ("north", "n1")),
			want: []string{shown("sign-north", 2), emitted("north", 2, 1, 3)}},
		{name: "the same again", in: records(occ("north", "n1"))},
		{name: "a free bay that was free", in: records(free("north", "n2"))},
		{name: "second car", in: records(occ("north", "n2")),
			want: []string{shown("sign-north", 1), emitted("north", 1, 2, 3)}},
		{name: "first car leaves", in: records(free("north", "n1")),
			want: []string{shown("sign-north", 2), emitted("north", 2, 1, 3)}},
		{name: "first record of south, no change", in: records(free("south", "s1")),
			want: []string{shown("sign-south", 2), emitted("south", 2, 0, 2)}},
		{name: "tick", in: sdk.Input{Now: t0, Tick: true}},
		{name: "both zones", in: records(occ("south", "s1"), free("north", "n2")),
			want: []string{
				shown("sign-north", 3), emitted("north", 3, 0, 3),
				shown("sign-south", 1), emitted("south", 1, 1, 2),
			}},
	})
}

// Several changes in one call: one write per zone, with the final count.
func TestBatchFinalCount(t *testing.T) {
	r := configure(t, northSouth, nil)
	run(t, r, []step{
		{name: "batch", in: records(
			occ("north", "n1"), occ("south", "s1"), occ("north", "n2"),
			free("north", "n1"), occ("north", "n3"), occ("north", "n1"), free("north", "n2"),
			occ("south", "s2"), free("south", "s2"), // south went full and back within the call
		), want: []string{
			shown("sign-north", 1), emitted("north", 1, 2, 3),
			shown("sign-south", 1), emitted("south", 1, 1, 2),
		}},
		{name: "changes that cancel out", in: records(occ("north", "n4"), free("north", "n4"), free("south", "s1"), occ("south", "s1"))},
		{name: "a change to the same count as shown, then another", in: records(free("north", "n1"), occ("north", "n1"), free("north", "n3")),
			want: []string{shown("sign-north", 2), emitted("north", 2, 1, 3)}},
	})
}

func TestFullAlerts(t *testing.T) {
	steps := []step{
		{name: "one car", in: records(occ("south", "s1")),
			want: []string{shown("sign-south", 1), emitted("south", 1, 1, 2)}},
		{name: "full", in: records(occ("south", "s2")),
			want: []string{shown("sign-south", 0), emitted("south", 0, 2, 2), full("sign-south", "south", 2)}},
		{name: "still full", in: records(occ("south", "s2"), occ("south", "s1"))},
		{name: "more cars than bays", in: records(occ("south", "s3"))},
		{name: "the extra car leaves", in: records(free("south", "s3"))},
		{name: "free again", in: records(free("south", "s1")),
			want: []string{shown("sign-south", 1), emitted("south", 1, 1, 2), freeAgain("sign-south", "south")}},
		{name: "more free", in: records(free("south", "s2")),
			want: []string{shown("sign-south", 2), emitted("south", 2, 0, 2)}},
		{name: "full at once", in: records(occ("south", "s1"), occ("south", "s2")),
			want: []string{shown("sign-south", 0), emitted("south", 0, 2, 2), full("sign-south", "south", 2)}},
	}
	t.Run("on", func(t *testing.T) { run(t, configure(t, northSouth, nil), steps) })

	t.Run("off", func(t *testing.T) {
		quiet := slices.Clone(steps)
		for i := range quiet {
			quiet[i].want = slices.DeleteFunc(slices.Clone(quiet[i].want), func(s string) bool { return strings.HasPrefix(s, "alert ") })
		}
		run(t, configure(t, `{"zones": {"south": {"sign": "sign-south", "capacity": 2}}, "full_alert": false}`, nil), quiet)
	})

	t.Run("first record fills the zone", func(t *testing.T) {
		r := configure(t, `{"zones": {"kiss-and-ride": {"sign": "sign-kr", "capacity": 1}}}`, nil)
		run(t, r, []step{{name: "full", in: records(occ("kiss-and-ride", "k1")),
			want: []string{shown("sign-kr", 0), emitted("kiss-and-ride", 0, 1, 1), full("sign-kr", "kiss-and-ride", 1)}}})
	})
}

func TestPoint(t *testing.T) {
	r := configure(t, `{"zones": {"north": {"sign": "sign-north", "capacity": 3}}, "point": "count"}`, nil)
	run(t, r, []step{{name: "write", in: records(occ("north", "n1")),
		want: []string{"write sign-north.count=int(2)", emitted("north", 2, 1, 3)}}})
}

func TestIgnored(t *testing.T) {
	r := configure(t, `{"zones": {
		"north": {"sign": "sign-north", "capacity": 3, "lot": "p1"},
		"south": {"sign": "sign-south", "capacity": 2}
	}}`, nil)
	lotRec := payload.Record{Measurement: "parking_lot", Tags: map[string]string{"lot": "p1", "zone": "north"},
		Fields: map[string]payload.Value{"occupied": payload.Int(3), "free": payload.Int(0)}}
	noField := occ("north", "n7")
	noField.Fields = map[string]payload.Value{"distance_cm": payload.Float(12)}
	intField := occ("north", "n8")
	intField.Fields = map[string]payload.Value{"occupied": payload.Int(1)}
	noZone := occ("", "n9")
	delete(noZone.Tags, "zone")
	noID := occ("north", "n10")
	delete(noID.Tags, "bay")
	delete(noID.Tags, "device")
	otherMeasurement := occ("north", "n11")
	otherMeasurement.Measurement = "parking_bays"
	run(t, r, []step{
		{name: "nothing to count", in: records(
			occ("east", "e1"), occ("North", "n1"), bayRec("p2", "north", "n2", true), bayRec("", "north", "n3", true),
			lotRec, noField, intField, noZone, noID, otherMeasurement,
		)},
		// Had any of them counted, north would show less than 2 and
		// south would be written.
		{name: "a bay of north", in: records(occ("north", "n4")),
			want: []string{shown("sign-north", 2), emitted("north", 2, 1, 3)}},
		{name: "south has no lot filter", in: records(bayRec("p2", "south", "s1", true), bayRec("", "south", "s2", true)),
			want: []string{shown("sign-south", 0), emitted("south", 0, 2, 2), full("sign-south", "south", 2)}},
	})
}

// Bays are their lot and bay tags, or their device tag without a bay tag;
// a bay's last record says in which zone it is occupied.
func TestBayIdentity(t *testing.T) {
	r := configure(t, `{"zones": {
		"north": {"sign": "sign-north", "capacity": 5},
		"south": {"sign": "sign-south", "capacity": 5}
	}}`, nil)
	byDevice := func(occupied bool) payload.Record {
		rec := bayRec("p1", "north", "x", occupied)
		delete(rec.Tags, "bay")
		rec.Tags["device"] = "puck-17"
		return rec
	}
	other := bayRec("p1", "north", "b1", true)
	other.Tags["device"] = "sensor-replaced"
	run(t, r, []step{
		{name: "same bay number in two lots", in: records(bayRec("p1", "north", "b1", true), bayRec("p2", "north", "b1", true)),
			want: []string{shown("sign-north", 3), emitted("north", 3, 2, 5)}},
		{name: "a new sensor on the same bay", in: records(other)},
		{name: "a bay known by its device", in: records(byDevice(true)),
			want: []string{shown("sign-north", 2), emitted("north", 2, 3, 5)}},
		{name: "its device again, then free", in: records(byDevice(true), byDevice(false)),
			want: []string{shown("sign-north", 3), emitted("north", 3, 2, 5)}},
		{name: "bay moved to south", in: records(bayRec("p1", "south", "b1", true)),
			want: []string{
				shown("sign-north", 4), emitted("north", 4, 1, 5),
				shown("sign-south", 4), emitted("south", 4, 1, 5),
			}},
		{name: "freed in north, where it no longer is", in: records(bayRec("p1", "north", "b1", false)),
			want: []string{shown("sign-south", 5), emitted("south", 5, 0, 5)}},
	})
}

func TestResume(t *testing.T) {
	const cfg = `{"zones": {
		"north": {"sign": "sign-north", "capacity": 3},
		"south": {"sign": "sign-south", "capacity": 2},
		"west":  {"sign": "sign-west", "capacity": 4}
	}}`

	t.Run("rebuilds", func(t *testing.T) {
		r := configure(t, cfg, nil)
		run(t, r, []step{
			{name: "before the restart", in: records(occ("north", "n1"), occ("north", "n2"), occ("south", "s1"), occ("south", "s2"), occ("west", "w1")),
				want: []string{
					shown("sign-north", 1), emitted("north", 1, 2, 3),
					shown("sign-south", 0), emitted("south", 0, 2, 2), full("sign-south", "south", 2),
					shown("sign-west", 3), emitted("west", 3, 1, 4),
				}},
			// The last record of every series, but n2's and w1's are
			// missing: state starts from empty, so they are not counted.
			// Every zone mentioned is written, changed or not; west is not
			// mentioned and not written; no alerts.
			{name: "resumed", in: resumed(occ("north", "n1"), free("north", "n3"), occ("south", "s1"), occ("south", "s2")),
				want: []string{
					shown("sign-north", 2), emitted("north", 2, 1, 3),
					shown("sign-south", 0), emitted("south", 0, 2, 2),
				}},
			{name: "south frees up after the restart", in: records(free("south", "s1")),
				want: []string{shown("sign-south", 1), emitted("south", 1, 1, 2), freeAgain("sign-south", "south")}},
			{name: "west again", in: records(free("west", "w2")),
				want: []string{shown("sign-west", 4), emitted("west", 4, 0, 4)}},
			{name: "resumed, unchanged", in: resumed(occ("north", "n1"), free("south", "s1"), occ("south", "s2"), free("west", "w2")),
				want: []string{
					shown("sign-north", 2), emitted("north", 2, 1, 3),
					shown("sign-south", 1), emitted("south", 1, 1, 2),
					shown("sign-west", 4), emitted("west", 4, 0, 4),
				}},
		})
	})

	// The gateway's first call to a new plugin process is a resume too.
	t.Run("first call", func(t *testing.T) {
		r := configure(t, cfg, nil)
		run(t, r, []step{
			{name: "resumed with nothing", in: resumed()},
			{name: "resumed, south full", in: resumed(occ("south", "s1"), occ("south", "s2")),
				want: []string{shown("sign-south", 0), emitted("south", 0, 2, 2)}},
			{name: "south still full, written already", in: records(occ("south", "s2"))},
		})
	})
}

func TestOverCapacity(t *testing.T) {
	var logs bytes.Buffer
	r := configure(t, `{"zones": {"north": {"sign": "sign-north", "capacity": 2}, "south": {"sign": "sign-south", "capacity": 1}}}`,
		slog.New(slog.NewTextHandler(&logs, nil)))
	run(t, r, []step{
		{name: "three cars on two bays", in: records(occ("north", "n1"), occ("north", "n2"), occ("north", "n3")),
			want: []string{shown("sign-north", 0), emitted("north", 0, 3, 2), full("sign-north", "north", 2)}},
		{name: "four", in: records(occ("north", "n4"))},
		{name: "back to two", in: records(free("north", "n3"), free("north", "n4"))},
		{name: "over again", in: records(occ("north", "n5"))},
		{name: "one", in: records(free("north", "n5"), free("north", "n1")),
			want: []string{shown("sign-north", 1), emitted("north", 1, 1, 2), freeAgain("sign-north", "north")}},
	})
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "zone=north capacity=2 occupied=3") {
		t.Errorf("logged %d warnings, want 1 naming the zone:\n%s", n, logs.String())
	}
	logs.Reset()
	run(t, r, []step{{name: "south over", in: records(occ("south", "s1"), occ("south", "s2")),
		want: []string{shown("sign-south", 0), emitted("south", 0, 2, 1), full("sign-south", "south", 1)}}})
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "zone=south") {
		t.Errorf("logged %d warnings, want 1 for south:\n%s", n, logs.String())
	}
}

// FuzzEvaluate feeds arbitrary bay records, in arbitrary calls, and checks
// every write against a simple model: a bay is occupied in the zone of its
// last counted record when that record says occupied.
func FuzzEvaluate(f *testing.F) {
	f.Add("north", "n1", "", []byte{0x81, 0x05, 0x43, 0x00, 0xff})
	f.Add("south", "s1", "p2", []byte{0x11, 0x91, 0x22, 0xa2, 0x33, 0xb3, 0x44, 0x04})
	f.Add("", "", "", []byte{0xc0, 0x40, 0x7f, 0xff, 0x3c})
	f.Add("kiss and ride", "B-7", "p1", []byte("\x80\x80\x80\x00\x00\x00\x81\x01"))
	const cfg = `{"zones": {
		"north": {"sign": "sign-north", "capacity": 3},
		"south": {"sign": "sign-south", "capacity": 1, "lot": "p1"},
		"kiss and ride": {"sign": "sign-kr", "capacity": 2}
	}}`
	capacity := map[string]int{"north": 3, "south": 1, "kiss and ride": 2}
	signs := map[string]string{"sign-north": "north", "sign-south": "south", "sign-kr": "kiss and ride"}
	f.Fuzz(func(t *testing.T, zone, bayID, lot string, ops []byte) {
		r := configure(t, cfg, nil)
		zones := []string{"north", "south", zone, "east"}
		bays := []string{"b1", "b2", bayID, ""}
		lots := []string{"p1", "p2", lot, ""}
		type key struct{ lot, bay, device string }
		type state struct {
			zone     string
			occupied bool
			last     payload.Record // replayed on a resume
		}
		model := map[key]state{}
		modelFree := func(z string) int {
			n := 0
			for _, s := range model {
				if s.zone == z && s.occupied {
					n++
				}
			}
			return max(capacity[z]-n, 0)
		}
		lastShown := map[string]int{}
		var in sdk.Input
		flush := func() {
			acts, err := r.Evaluate(context.Background(), in)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			written := map[string]bool{}
			for _, a := range acts {
				switch a.Kind {
				case sdk.ActionWrite:
					z, ok := signs[a.Device]
					if !ok || a.Point != "free" || a.Value.Type() != payload.TypeInt {
						t.Fatalf("write %s.%s=%v: not a configured sign's free count", a.Device, a.Point, a.Value)
					}
					v := int(a.Value.Int())
					if v < 0 || v > capacity[z] {
						t.Fatalf("write %s=%d: out of 0..%d", a.Device, v, capacity[z])
					}
					if written[z] {
						t.Fatalf("zone %s written twice in one call: %v", z, show(acts))
					}
					written[z] = true
					if want := modelFree(z); v != want {
						t.Fatalf("write %s=%d, the model says %d", a.Device, v, want)
					}
					if old, ok := lastShown[z]; ok && old == v && !in.Resumed {
						t.Fatalf("write %s=%d again without a resume", a.Device, v)
					}
					lastShown[z] = v
				case sdk.ActionAlert:
					if in.Resumed {
						t.Fatalf("alert on a resume: %v", show(acts))
					}
				case sdk.ActionEmit:
					z := a.Record.Tags["zone"]
					fr, oc, cp := a.Record.Fields["free"].Int(), a.Record.Fields["occupied"].Int(), a.Record.Fields["capacity"].Int()
					if !written[z] || int(fr) != lastShown[z] || int(cp) != capacity[z] || fr != max(cp-oc, 0) {
						t.Fatalf("emit %v after writes %v", a.Record, lastShown)
					}
				default:
					t.Fatalf("unexpected action %+v", a)
				}
			}
			// Every zone whose count differs from its sign is written.
			for z := range capacity {
				if old, ok := lastShown[z]; ok && old != modelFree(z) {
					t.Fatalf("zone %s shows %d, the model says %d: %v", z, old, modelFree(z), show(acts))
				}
			}
			in = sdk.Input{}
		}
		for _, op := range ops {
			switch {
			case op == 0xff: // a resume with the model's bays, as the gateway replays them
				flush()
				in.Resumed = true
				clear(lastShown)
				for _, s := range model {
					in.Records = append(in.Records, s.last)
				}
				flush()
				continue
			case op&0x80 != 0:
				flush()
			}
			z, b, l, o := zones[op&3], bays[op>>2&3], lots[op>>4&3], op&0x40 != 0
			rec := bayRec(l, z, b, o)
			if b == "" {
				delete(rec.Tags, "bay")
				rec.Tags["device"] = "puck-" + l
			}
			in.Records = append(in.Records, rec)
			if _, ok := capacity[z]; ok && (z != "south" || l == "p1") {
				k := key{lot: l, bay: b}
				if b == "" {
					k = key{device: "puck-" + l}
				}
				model[k] = state{zone: z, occupied: o, last: rec}
			}
		}
		flush()
	})
}
