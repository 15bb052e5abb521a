package influxw

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

func TestAppendLine(t *testing.T) {
	ts := time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC)
	cases := []struct {
		name string
		rec  payload.Record
		want string
	}{
		{
			"typed fields and sorted tags",
			payload.Record{Measurement: "parking_bay", Tags: map[string]string{"zone": "z1", "lot": "a", "device": "bay-17", "bay": "17"},
				Fields: map[string]payload.Value{"occupied": payload.Bool(true), "distance_cm": payload.Float(212.5)}, Time: ts},
			`parking_bay,bay=17,device=bay-17,gateway=gw-1,lot=a,site=s1,zone=z1 distance_cm=212.5,occupied=true 1795593600123456789`,
		},
		{
			"integers get i, whole floats stay floats",
			payload.Record{Measurement: "m", Fields: map[string]payload.Value{"n": payload.Int(-42), "f": payload.Float(12), "e": payload.Float(1e21)}, Time: ts},
			`m,gateway=gw-1,site=s1 e=1e+21,f=12,n=-42i 1795593600123456789`,
		},
		{
			"escaping",
			payload.Record{Measurement: "alert", Tags: map[string]string{"rule": "a b,c=d", "severity": "x\\y"},
				Fields: map[string]payload.Value{"message": payload.String(`say "hi" \ bye` + "\nline2")}, Time: ts},
			"alert,gateway=gw-1,rule=a\\ b\\,c\\=d,severity=x\\y,site=s1 message=\"say \\\"hi\\\" \\\\ bye\nline2\" 1795593600123456789",
		},
	}
	var k Keys
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := CheckRecord(&c.rec); err != nil {
				t.Fatal(err)
			}
			got := string(AppendLine(nil, &k, "s1", "gw-1", &c.rec))
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestCheckRecordRefuses(t *testing.T) {
	for _, r := range []payload.Record{
		{Measurement: "m", Tags: map[string]string{"a": "x\ny"}, Fields: map[string]payload.Value{"f": payload.Int(1)}},
		{Measurement: "m", Tags: map[string]string{"a": `x\`}, Fields: map[string]payload.Value{"f": payload.Int(1)}},
		{Measurement: "m", Fields: map[string]payload.Value{"f": payload.Float(math.NaN())}},
	} {
		if err := CheckRecord(&r); !errors.Is(err, ErrUnwritable) {
			t.Errorf("%v: err = %v, want ErrUnwritable", r, err)
		}
	}
}

func BenchmarkAppendLine(b *testing.B) {
	r := payload.Record{Measurement: "parking_bay", Tags: map[string]string{"zone": "z1", "lot": "a", "device": "bay-17", "bay": "17"},
		Fields: map[string]payload.Value{"occupied": payload.Bool(true), "distance_cm": payload.Float(212.5)}, Time: time.Now()}
	var k Keys
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendLine(buf[:0], &k, "s1", "gw-1", &r)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
