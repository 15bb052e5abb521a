package web

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeResults(t *testing.T) {
	res, err := decodeResults([]byte(`{"results":[{"statement_id":0,"series":[{"name":"parking_lot","tags":{"lot":"l1"},"columns":["time","free","ok"],"values":[[1700000000000,12,true]]}]},{"statement_id":1,"error":"field not found"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[1].Error != "field not found" {
		t.Fatalf("%+v", res)
	}
	s := res[0].Series[0]
	if f, ok := s.Float(0, "free"); !ok || f != 12 {
		t.Errorf("free %v %v", f, ok)
	}
	if b, ok := s.Bool(0, "ok"); !ok || !b {
		t.Errorf("ok %v %v", b, ok)
	}
	if _, ok := s.Float(0, "missing"); ok {
		t.Error("missing column read")
	}
	if s.Time(0).UnixMilli() != 1700000000000 {
		t.Errorf("time %v", s.Time(0))
	}
	if _, err := decodeResults([]byte(`{"error":"database not found: x"}`)); err == nil || !strings.Contains(err.Error(), "database not found") {
		t.Errorf("whole-query error: %v", err)
	}
	if _, err := decodeResults([]byte(`{"results":[{"series":[{"columns":["time","a"],"values":[[1]]}]}]}`)); err == nil || !strings.Contains(err.Error(), "1 values for 2 columns") {
		t.Errorf("short row: %v", err)
	}
	if _, err := decodeResults([]byte(`<html>`)); err == nil || !strings.Contains(err.Error(), "not InfluxDB's JSON") {
		t.Errorf("html: %v", err)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{"lot-a": `'lot-a'`, `it's`: `'it\'s'`, `a\'`: `'a\\\''`} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func FuzzDecodeResults(f *testing.F) {
	f.Add([]byte(`{"results":[{"series":[{"name":"m","columns":["time","v"],"values":[[1,2.5]]}]}]}`))
	f.Add([]byte(`{"error":"x"}`))
	f.Add([]byte(`{"results":[{"series":[{"columns":["time"],"values":[[1,2]]}]}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := decodeResults(b)
		if err != nil {
			return
		}
		for _, r := range res {
			for _, s := range r.Series {
				for row := range s.Values {
					// Every accessor is safe on whatever decoded.
					for _, c := range s.Columns {
						s.Float(row, c)
						s.Bool(row, c)
						_ = s.String(row, c)
					}
					s.Time(row)
				}
			}
		}
		if _, err := json.Marshal(res); err != nil {
			t.Fatal(err)
		}
	})
}
