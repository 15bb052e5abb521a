package modbus

import (
	"context"
	"testing"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/firmware-config/profiles"
	"github.com/luling-edge/luling/payload"
)

// BenchmarkDecodeUltrasonic decodes one poll of the ultrasonic profile
// into a reused map: the per-device work of every poll besides the bus.
func BenchmarkDecodeUltrasonic(b *testing.B) {
	all, err := BuiltinProfiles()
	if err != nil {
		b.Fatal(err)
	}
	p := all["ultrasonic-bay"]
	words := []uint16{0x0001, 142, 2, 150, 0xFF9C, 17}
	dst := make(map[string]payload.Value, len(p.Fields))
	var issues []Issue
	b.ReportAllocs()
	for b.Loop() {
		issues = p.DecodeBlock(0, words, dst, issues[:0])
	}
	if len(dst) != 4 || len(issues) != 0 {
		b.Fatalf("decoded %v, issues %v", dst, issues)
	}
}

// BenchmarkPollUltrasonic is one whole Poll against an in-memory unit:
// request, frame-length callbacks, reply check, decoding and the record.
func BenchmarkPollUltrasonic(b *testing.B) {
	bank := newBank(17, 6)
	copy(bank.holding, []uint16{0x0001, 142, 2, 150, 0xFF9C, 17})
	d, err := New(drivers.Spec{ID: "bay-17", Unit: 17, Profile: "ultrasonic-bay", Tags: map[string]string{"bay": "17"}}, drivers.Env{Bus: bank})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		bank.requests = bank.requests[:0]
		if _, err := d.Poll(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadProfile parses and validates the ultrasonic profile (done
// once at start, for the built-in profiles and those of the profiles_dir).
func BenchmarkLoadProfile(b *testing.B) {
	src, err := profiles.FS.ReadFile("ultrasonic-bay.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadProfile("ultrasonic-bay.yaml", src); err != nil {
			b.Fatal(err)
		}
	}
}
